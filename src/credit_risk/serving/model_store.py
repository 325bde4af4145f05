"""Put a trained model into BentoML's model store, from the pipeline or the MLflow registry.

A stored model holds the three files a Scorer needs and, in its metadata, where it came from
(MLflow run, registry version, git commit, data hash). Its version is derived from the content
of all three files, so importing the same model twice gives the same tag, and a changed decision
threshold or background gives a new one.

    python -m credit_risk.serving.model_store --from-pipeline
    python -m credit_risk.serving.model_store --registered-model credit-risk --alias production
    python -m credit_risk.serving.model_store --registered-model credit-risk --version 3

Each prints the tag of the stored model (for example ``credit-risk:0f3a...``).
"""

from __future__ import annotations

import argparse
import json
import shutil
from typing import Any

import bentoml

from credit_risk.config import Params, load_params
from credit_risk.errors import CreditRiskError
from credit_risk.files import md5
from credit_risk.lineage import CONTENT_VERSION_LENGTH, git_commit, model_fingerprint
from credit_risk.model import BACKGROUND_FILE, INFO_FILE, MODEL_FILE, ModelFiles
from credit_risk.registry.client import (
    RegistryError,
    connect,
    get_version,
    model_files,
    version_by_alias,
)
from credit_risk.registry.uris import model_uri
from credit_risk.stage import run
from credit_risk.tracking import run_for_model, use_experiment


def content_version(files: ModelFiles) -> str:
    """16 hex digits that change whenever the model, its settings or its background change."""
    return model_fingerprint(files.model, files.info, files.background)[:CONTENT_VERSION_LENGTH]


def store(name: str, files: ModelFiles, metadata: dict[str, Any]) -> bentoml.Model:
    """Copy the model files into the store under a content-derived tag (idempotent)."""
    for path in (files.model, files.info, files.background):
        if not path.is_file():
            raise CreditRiskError(f"{path} not found (run `make repro` to train the model)")
    tag = bentoml.Tag(name, content_version(files))
    try:
        return bentoml.models.get(tag)
    except bentoml.exceptions.NotFound:
        pass
    try:
        info = json.loads(files.info.read_text(encoding="utf-8"))
    except json.JSONDecodeError as problem:
        raise CreditRiskError(f"{files.info} is not valid JSON: {problem}") from None
    labels = {"source": str(metadata["source"]), "model_type": str(info["model_type"])}
    full = {**metadata, "model_md5": md5(files.model), **_info_metadata(info)}
    with bentoml.models.create(tag, labels=labels, metadata=full) as model:
        for path, target in (
            (files.model, MODEL_FILE),
            (files.info, INFO_FILE),
            (files.background, BACKGROUND_FILE),
        ):
            shutil.copyfile(path, model.path_of(target))
    return bentoml.models.get(tag)


def _info_metadata(info: dict[str, Any]) -> dict[str, Any]:
    keys = ("features", "decision_threshold", "training_data_md5", "model_type")
    return {key: info[key] for key in keys}


def import_from_pipeline(params: Params) -> bentoml.Model:
    """Store the pipeline's current model, with the MLflow run that trained it if known."""
    paths = params.paths
    files = ModelFiles(paths.model, paths.model_info, paths.background)
    # Without the training run, the commit that trained the file is unknown (it may have come
    # from `dvc pull`); the commit checked out at import is recorded as just that.
    metadata: dict[str, Any] = {
        "source": "pipeline",
        "git_commit": "unknown",
        "git_commit_at_import": git_commit(),
    }
    if paths.model.is_file():
        fingerprint = model_fingerprint(files.model, files.info, files.background)
        trained = run_for_model(use_experiment(params.tracking.experiment), fingerprint)
        if trained is not None:
            metadata["mlflow_run_id"] = trained.info.run_id
            metadata["git_commit"] = trained.data.tags.get("lineage.git_commit", "unknown")
    return store(params.serve.model_name, files, metadata)


def import_from_registry(
    params: Params, name: str, alias: str | None, version: int | None
) -> bentoml.Model:
    """Store a registered model version (by alias or number): its run's exact model files."""
    uri = model_uri(name, alias, version)
    client = connect(params.tracking.experiment)
    if alias is not None:
        found = version_by_alias(client, name, alias)
        if found is None:
            raise RegistryError(f"{uri}: no version of {name!r} has the alias {alias!r}")
    else:
        found = get_version(client, name, int(version or 0))
    run_tags = client.get_run(found.run_id).data.tags if found.run_id else {}
    metadata = {
        "source": "registry",
        "registered_model": name,
        "registry_version": int(found.version),
        "registry_uri": model_uri(name, version=int(found.version)),
        "mlflow_run_id": found.run_id,
        "git_commit": run_tags.get("lineage.git_commit", "unknown"),
    }
    with model_files(found) as files:
        tag = bentoml.Tag(params.serve.model_name, content_version(files))
        _forget_unregistered(tag)
        return store(params.serve.model_name, files, metadata)


def _forget_unregistered(tag: bentoml.Tag) -> None:
    """The same files imported from the pipeline carry no registry lineage: store them anew.

    (A bento built earlier keeps its own copy of the model, so it is not affected.)
    """
    try:
        existing = bentoml.models.get(tag)
    except bentoml.exceptions.NotFound:
        return
    if existing.info.metadata.get("source") != "registry":
        bentoml.models.delete(tag)


def main() -> None:
    parser = argparse.ArgumentParser(description="Import a model into BentoML's model store.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--from-pipeline", action="store_true", help="models/ from dvc repro")
    source.add_argument("--registered-model", metavar="NAME", help="an MLflow registered model")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--alias", help="the registry alias to import, e.g. production")
    which.add_argument("--version", type=int, help="the registry version number to import")
    args = parser.parse_args()
    params = load_params()
    if args.from_pipeline:
        if args.alias is not None or args.version is not None:
            parser.error("--alias/--version go with --registered-model")
        model = import_from_pipeline(params)
    else:
        model = import_from_registry(params, args.registered_model, args.alias, args.version)
    print(model.tag)


if __name__ == "__main__":
    run("import-model", main)
