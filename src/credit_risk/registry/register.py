"""`make register`: register the pipeline's model, which the gate passed, with its lineage.

    python -m credit_risk.registry.register

The version is created from the MLflow run that trained the model file recorded in dvc.lock,
only after a fresh, passing gate verdict (reports/gate.json) for exactly that model, those rules
and the production model it was compared with. It is tagged with its lineage (git commit, the
training data's and model's hashes, params) and the verdict, and gets the alias ``candidate``.
The same model files always give the same version: registering again changes nothing.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import mlflow
import yaml
from mlflow.entities.model_registry import ModelVersion

from credit_risk.config import Params, load_params
from credit_risk.errors import ConfigError, CreditRiskError
from credit_risk.files import md5
from credit_risk.gate import report
from credit_risk.gate.check import current_state
from credit_risk.lineage import content_version, git_commit
from credit_risk.registry.client import (
    RegistryError,
    connect,
    set_alias,
    version_by_alias,
    versions_for_model,
)
from credit_risk.registry.uris import CANDIDATE, PRODUCTION, model_uri, run_model_uri
from credit_risk.stage import run
from credit_risk.tracking import MODEL_FILES_TAG, MODEL_MD5_TAG, run_for_model, use_experiment

log = logging.getLogger(__name__)
DVC_LOCK = Path("dvc.lock")
CONTENT_VERSION_TAG = "lineage.content_version"  # the served model's version (X-Model-Version)
# Copied from the training run to the version, so the version alone tells its lineage.
RUN_LINEAGE_TAGS = ("lineage.git_commit", "lineage.git_dirty", "lineage.train_data_md5")


def locked_model_md5(params: Params, lock: Path = DVC_LOCK) -> str:
    """The model file's hash as dvc.lock records it (the train stage's output)."""
    try:
        stages = yaml.safe_load(lock.read_text(encoding="utf-8"))["stages"]
        outs = stages["train"]["outs"]
    except FileNotFoundError:
        raise ConfigError(f"{lock}: not found (run `make repro`)") from None
    except (KeyError, TypeError, yaml.YAMLError) as problem:
        raise ConfigError(f"{lock}: no train stage outputs ({problem})") from None
    for out in outs:
        if Path(out["path"]) == params.paths.model:
            return str(out["md5"])
    raise ConfigError(f"{lock}: the train stage has no output {params.paths.model}")


def version_tags(
    run_tags: dict[str, str], verdict: report.Verdict, params: Params
) -> dict[str, str]:
    """Lineage and the gate's verdict, as the version's tags."""
    tags = {key: run_tags[key] for key in RUN_LINEAGE_TAGS if key in run_tags}
    tags.update(
        {
            MODEL_MD5_TAG: run_tags.get(MODEL_MD5_TAG, ""),
            MODEL_FILES_TAG: verdict.model_fingerprint,
            CONTENT_VERSION_TAG: content_version(verdict.model_fingerprint),
            "lineage.params": json.dumps(
                {
                    key: params.model_dump(by_alias=True)[key]
                    for key in ("ingest", "split", "train")
                },
                sort_keys=True,
                default=str,
            ),
            "lineage.registered_from_commit": git_commit(),
            "gate.passed": str(verdict.passed).lower(),
            "gate.judged_at": verdict.judged_at,
            "gate.production_version": str(verdict.production_version or "none"),
            "gate.rules": json.dumps(
                [
                    {k: rule[k] for k in ("name", "value", "limit", "status")}
                    for rule in verdict.rules
                ]
            ),
        }
    )
    return tags


def register(params: Params, lock: Path = DVC_LOCK) -> ModelVersion:
    """Register the gated pipeline model (or find its version) and point ``candidate`` at it."""
    paths = params.paths
    if md5(paths.model) != locked_model_md5(params, lock):
        raise CreditRiskError(
            f"{paths.model} is not the model dvc.lock records; run `dvc repro` (or `dvc checkout`)"
        )
    verdict = report.read(paths.gate_report)
    name = params.serve.model_name
    client = connect(params.tracking.experiment)
    production = version_by_alias(client, name, PRODUCTION)
    now = current_state(params, int(production.version) if production else None)
    stale = report.stale_reasons(verdict, now)
    if stale:
        raise CreditRiskError(
            f"{paths.gate_report} is stale: {'; '.join(stale)}; run `make gate` again"
        )
    if not verdict.passed:
        raise CreditRiskError(
            f"the gate blocked this model ({', '.join(verdict.failed_rules())}); not registered"
        )
    fingerprint = verdict.model_fingerprint
    trained = run_for_model(use_experiment(params.tracking.experiment), fingerprint)
    if trained is None:
        raise RegistryError(
            f"no MLflow run in {now['registry']} trained this model; train it with this "
            "tracking URI (`dvc repro -f train`) so its lineage is recorded there"
        )
    existing = versions_for_model(client, name, fingerprint)
    if existing:
        version = existing[0]
        log.info("%s already holds this model", model_uri(name, version=int(version.version)))
    else:
        tags = version_tags(trained.data.tags, verdict, params)
        version = mlflow.register_model(run_model_uri(trained.info.run_id), name, tags=tags)
        for file in (paths.gate_report, paths.gate_summary):
            client.log_artifact(trained.info.run_id, str(file), artifact_path="gate")
    set_alias(client, name, CANDIDATE, int(version.version))
    return version


def main() -> None:
    params = load_params()
    version = register(params)
    name = params.serve.model_name
    print(model_uri(name, version=int(version.version)))
    log.info("%s points at version %s", model_uri(name, alias=CANDIDATE), version.version)


if __name__ == "__main__":
    run("register", main)
