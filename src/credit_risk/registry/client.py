"""Talking to the model registry: reachability, finding versions, their files, and aliases.

The registry is MLflow's, wherever the tracking URI points (the local SQLite store by default,
or a shared `mlflow server`). An unreachable server is one clear error within seconds, not
minutes of MLflow's own retries.
"""

from __future__ import annotations

import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from credit_risk.errors import CreditRiskError
from credit_risk.model import ModelFiles
from credit_risk.registry.uris import check_alias, model_uri
from credit_risk.tracking import MODEL_ARTIFACTS, MODEL_FILES_TAG, tracking_uri, use_experiment

REACH_TIMEOUT_SECONDS = 5


class RegistryError(CreditRiskError):
    """The registry cannot be reached or does not hold what was asked for."""


def connect(experiment: str) -> mlflow.MlflowClient:
    """A client on the configured registry, after checking that a server answers at all."""
    _reachable(tracking_uri())
    try:
        use_experiment(experiment)
    except MlflowException as exc:
        raise RegistryError(f"registry {tracking_uri()}: {exc.message}") from None
    return mlflow.MlflowClient()


def _reachable(uri: str) -> None:
    """For an http(s) tracking URI, its /health must answer within a few seconds."""
    if not uri.startswith(("http://", "https://")):
        return
    health = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(health, timeout=REACH_TIMEOUT_SECONDS) as answer:
            if answer.status == 200:
                return
            problem = f"HTTP {answer.status}"
    except urllib.error.HTTPError as exc:
        problem = f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        problem = str(getattr(exc, "reason", exc))
    raise RegistryError(
        f"the registry at {uri} does not answer ({problem}); start it (`make registry-up`) "
        "or point MLFLOW_TRACKING_URI at a running one"
    )


def registered(client: mlflow.MlflowClient, name: str) -> bool:
    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise RegistryError(f"registry {tracking_uri()}: {exc.message}") from None
    return True


def versions_for_model(
    client: mlflow.MlflowClient, name: str, fingerprint: str
) -> list[ModelVersion]:
    """The versions of ``name`` registered from the model with this fingerprint, oldest first."""
    found = client.search_model_versions(
        f"name = '{name}' and tags.`{MODEL_FILES_TAG}` = '{fingerprint}'"
    )
    return sorted(found, key=lambda version: int(version.version))


def version_by_alias(client: mlflow.MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version an alias points at, or None when the model or the alias does not exist."""
    check_alias(alias)
    if not registered(client, name):
        return None
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}:
            return None
        raise RegistryError(f"{model_uri(name, alias=alias)}: {exc.message}") from None


def get_version(client: mlflow.MlflowClient, name: str, version: int) -> ModelVersion:
    """A version by number; an unknown one is a RegistryError naming the versions there are."""
    try:
        return client.get_model_version(name, str(version))
    except MlflowException:
        known = sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
        listed = ", ".join(map(str, known)) or "none"
        raise RegistryError(
            f"{model_uri(name, version=version)} does not exist; versions of {name}: {listed}"
        ) from None


def set_alias(client: mlflow.MlflowClient, name: str, alias: str, version: int) -> None:
    client.set_registered_model_alias(name, check_alias(alias), str(version))


@contextmanager
def model_files(version: ModelVersion) -> Iterator[ModelFiles]:
    """The three model files of a registered version, downloaded from its run (a temp folder)."""
    if not version.run_id:
        uri = model_uri(version.name, version=int(version.version))
        raise RegistryError(f"{uri} was not registered from a run; its lineage is unknown")
    with tempfile.TemporaryDirectory(prefix="registry-model-") as tmp:
        try:
            mlflow.artifacts.download_artifacts(
                run_id=version.run_id, artifact_path=MODEL_ARTIFACTS, dst_path=tmp
            )
        except MlflowException as exc:
            raise RegistryError(
                f"cannot download the model files of run {version.run_id}: {exc.message}"
            ) from None
        files = ModelFiles.in_folder(Path(tmp) / MODEL_ARTIFACTS)
        missing = [path.name for path in files.all() if not path.is_file()]
        if missing:
            raise RegistryError(
                f"run {version.run_id} lacks {missing} under {MODEL_ARTIFACTS}/ "
                f"(logged by an older train stage?); retrain to register it"
            )
        yield files
