"""The one small interface every deploy target implements, and what it reports back.

A target makes one environment run a release, says what actually answers there, and can stop.
`deploy` must leave the previous release serving when the new one fails (and then raise a
DeployError with the reason); only a release that passed its readiness and smoke checks takes
traffic.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from credit_risk.deploy.environments import Environment, Release
from credit_risk.errors import CreditRiskError

RUNTIME_DIR = Path(".deploy")  # each environment's runtime state (git-ignored): pids, ports, logs


class DeployError(CreditRiskError):
    """A deploy, rollback or status check could not be done; the message says why."""


@dataclass(frozen=True)
class Observed:
    """What a target says runs in an environment, asked just now."""

    running: bool  # something of ours is deployed there
    ready: bool  # it answers /readyz with 200
    bento: str | None  # the bento the target runs
    model_tag: str | None  # the model it reports (X-Model-Version)
    since: datetime | None  # when that release took traffic
    where: str  # e.g. "http://127.0.0.1:8101" or "namespace credit-risk-staging"
    detail: str  # one line for people: replicas ready, the failing check, ...


class Target(Protocol):
    """A place an environment runs: built from the environment's name and file."""

    def deploy(self, release: Release) -> Observed:
        """Make ``release`` take traffic; on failure the previous release keeps serving."""
        ...

    def observe(self) -> Observed:
        """What answers now (never raises for a target that is down: says so instead)."""
        ...

    def stop(self) -> None:
        """Stop serving this environment (idempotent)."""
        ...


def target_for(name: str, environment: Environment, runtime: Path = RUNTIME_DIR) -> Target:
    """The target the environment file names, for environment ``name``."""
    if environment.target == "local":
        from credit_risk.deploy.local import LocalTarget

        return LocalTarget(name, environment.local, runtime / name)
    from credit_risk.deploy.kubernetes import KubernetesTarget

    return KubernetesTarget(name, environment)
