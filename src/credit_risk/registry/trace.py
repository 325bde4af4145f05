"""`make trace VERSION=<model_version>`: from a score back to the code, data and params behind it.

    python -m credit_risk.registry.trace credit-risk:9b42bf6070e78040   # a score's model_version
    python -m credit_risk.registry.trace 3                              # a registry version
    python -m credit_risk.registry.trace credit-risk:9b42bf6070e78040 --json

Every score the service returns names its model (``model_version``, also the X-Model-Version
header). This finds the registry version holding that exact model and prints its lineage: the
git commit that trained it, the hashes of its training data and model file, its params, the
gate's verdict, the aliases (environments) pointing at it, and the commands that check out and
reproduce it.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

from credit_risk.config import load_params
from credit_risk.errors import ConfigError
from credit_risk.lineage import CONTENT_VERSION_LENGTH
from credit_risk.registry.client import RegistryError, connect, get_version
from credit_risk.registry.register import CONTENT_VERSION_TAG
from credit_risk.registry.uris import model_uri
from credit_risk.stage import run
from credit_risk.tracking import tracking_uri


def find(client: MlflowClient, name: str, given: str) -> ModelVersion:
    """The version for a served model tag (``name:content``), its content part, or a number."""
    text = given.strip()
    if text.isdigit():
        return get_version(client, name, int(text))
    prefix, _, content = text.rpartition(":")
    if prefix and prefix != name:
        raise ConfigError(f"{text!r} is a model of {prefix!r}; this project registers {name!r}")
    if len(content) != CONTENT_VERSION_LENGTH or not all(c in "0123456789abcdef" for c in content):
        raise ConfigError(
            f"{text!r} is not a model version: give the score's model_version "
            f"({name}:<{CONTENT_VERSION_LENGTH} hex digits>) or a registry version number"
        )
    found = client.search_model_versions(
        f"name = '{name}' and tags.`{CONTENT_VERSION_TAG}` = '{content}'"
    )
    if not found:
        raise RegistryError(
            f"no version of {name!r} in {tracking_uri()} holds the model {name}:{content}"
        )
    first = min(int(version.version) for version in found)
    return get_version(client, name, first)  # searches leave the aliases out


def lineage(version: ModelVersion) -> dict[str, Any]:
    """Everything recorded about a version, with the commands to reproduce it."""
    tags = dict(version.tags or {})
    commit = tags.get("lineage.git_commit", "unknown")
    params = json.loads(tags.get("lineage.params", "{}"))
    return {
        "registered_model": version.name,
        "registry_version": int(version.version),
        "uri": model_uri(version.name, version=int(version.version)),
        "model_version": f"{version.name}:{tags.get(CONTENT_VERSION_TAG, '?')}",
        "aliases": sorted(version.aliases or []),
        "mlflow_run_id": version.run_id,
        "git_commit": commit,
        "git_dirty": tags.get("lineage.git_dirty", "unknown"),
        "training_data_md5": tags.get("lineage.train_data_md5", "unknown"),
        "model_file_md5": tags.get("lineage.model_md5", "unknown"),
        "params": params,
        "gate": {
            "passed": tags.get("gate.passed"),
            "judged_at": tags.get("gate.judged_at"),
            "production_version_then": tags.get("gate.production_version"),
            "rules": json.loads(tags.get("gate.rules", "[]")),
        },
        "reproduce": [f"git checkout {commit}", "dvc pull", "dvc repro"],
        "registry": tracking_uri(),
    }


def describe(found: dict[str, Any]) -> str:
    """The lineage for people."""
    rules = found["gate"]["rules"]
    failing = [rule["name"] for rule in rules if rule["status"] == "fail"]
    gate = "passed" if found["gate"]["passed"] == "true" else f"failed: {failing}"
    train = found["params"].get("train", {})
    lines = [
        f"{found['model_version']} is {found['uri']}"
        f" (aliases: {', '.join(found['aliases']) or 'none'})",
        f"  registry:       {found['registry']}",
        f"  MLflow run:     {found['mlflow_run_id']}",
        f"  code:           git commit {found['git_commit']}"
        + (" (trained with uncommitted changes)" if found["git_dirty"] == "true" else ""),
        f"  training data:  md5 {found['training_data_md5']} (DVC cache, via dvc.lock)",
        f"  model file:     md5 {found['model_file_md5']}",
        f"  model:          {train.get('model', '?')}, threshold {train.get('decision_threshold')}"
        f", calibration {train.get('calibration', {}).get('method', '?')}",
        f"  gate:           {gate} ({found['gate']['judged_at']}, "
        f"against production version {found['gate']['production_version_then']})",
        "  reproduce:      " + " && ".join(found["reproduce"]),
        "  all params:     --json",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="Trace a served model back to its lineage.")
    parser.add_argument("version", help="a score's model_version, or a registry version number")
    parser.add_argument("--json", action="store_true", help="everything, as JSON")
    args = parser.parse_args()
    params = load_params()
    client = connect(params.tracking.experiment)
    found = lineage(find(client, params.serve.model_name, args.version))
    print(json.dumps(found, indent=2) if args.json else describe(found))


if __name__ == "__main__":
    run("trace", main)
