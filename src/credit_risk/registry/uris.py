"""Model URIs and aliases: every reference to a registered model is built here.

Aliases, not MLflow's deprecated stages: ``candidate`` marks a version that passed the gate;
each environment's name (``staging``, ``production``) marks the version its file in deploy/
says runs there. "latest" is refused everywhere: it moves with every registration.
"""

from __future__ import annotations

import re

from credit_risk.errors import ConfigError

CANDIDATE = "candidate"  # passed the gate, not yet deployed
PRODUCTION = "production"  # the alias the gate compares against
ALIAS_PATTERN = r"[a-z][a-z0-9-]*"


def model_uri(name: str, alias: str | None = None, version: int | None = None) -> str:
    """``models:/name@alias`` or ``models:/name/version``: exactly one of the two, never latest."""
    if (alias is None) == (version is None):
        raise ConfigError("give exactly one of an alias or a version of the registered model")
    if alias is not None:
        check_alias(alias)
        return f"models:/{name}@{alias}"
    if version is None or version < 1:
        raise ConfigError(f"registry versions start at 1 (got {version})")
    return f"models:/{name}/{version}"


def run_model_uri(run_id: str, artifact: str = "model") -> str:
    """``runs:/<run id>/model``: the model a training run logged (what a version is made from)."""
    if not re.fullmatch(r"[0-9a-f]{32}", run_id):
        raise ConfigError(f"{run_id!r} is not an MLflow run id")
    return f"runs:/{run_id}/{artifact}"


def check_alias(alias: str) -> str:
    """An alias this project may set or read; 'latest' and malformed names are ConfigErrors."""
    if alias.lower() == "latest":
        raise ConfigError("'latest' moves with every registration; name an alias or version")
    if not re.fullmatch(ALIAS_PATTERN, alias):
        raise ConfigError(f"{alias!r} is not an alias (lowercase letters, digits and dashes)")
    return alias
