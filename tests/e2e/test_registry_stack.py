"""The shared registry stack, started for real: mlflow server, PostgreSQL and moto's S3.

Runs, models and aliases go through the tracking server; the artifacts are looked for in the
bucket itself; a restart keeps the registry and the artifacts, and ``down`` leaves nothing
running.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from sklearn.linear_model import LogisticRegression

from credit_risk.registry import bucket, stack

pytestmark = pytest.mark.slow

ALIAS = "champion"


@pytest.fixture
def point_mlflow(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], MlflowClient]]:
    """Send the test's MLflow calls to a tracking URI; the session's own store comes back after."""
    previous = mlflow.get_tracking_uri()

    def point(uri: str) -> MlflowClient:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        return MlflowClient(uri)

    yield point
    mlflow.set_tracking_uri(previous)


@dataclass(frozen=True)
class Logged:
    run_id: str
    artifact_uri: str
    model_id: str
    version: str
    notes: str
    model: LogisticRegression
    X: np.ndarray

    def predictions_match(self, loaded: Any) -> bool:
        return bool(np.array_equal(loaded.predict(self.X), self.model.predict(self.X)))


def log_and_register(client: MlflowClient, name: str, folder: Path) -> Logged:
    """A run with a parameter, a text artifact and a scikit-learn model, registered as ``name``
    and given the alias ALIAS."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    model = LogisticRegression().fit(X, (X[:, 0] + X[:, 1] > 0).astype(int))
    experiment = client.get_experiment_by_name(name)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(name)
    notes = folder / "notes.txt"
    notes.write_text(f"notes of {name}\n", encoding="utf-8")
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_param("C", model.C)
        mlflow.log_artifact(str(notes))
        # Requirements given, not inferred: inference runs the model in a subprocess (slow).
        info = mlflow.sklearn.log_model(model, name="model", pip_requirements=["scikit-learn"])
    version = mlflow.register_model(info.model_uri, name)
    client.set_registered_model_alias(name, ALIAS, version.version)
    return Logged(
        run.info.run_id,
        run.info.artifact_uri,
        info.model_id,
        version.version,
        notes.read_text(encoding="utf-8"),
        model,
        X,
    )


def bucket_keys(registry: Any) -> list[str]:
    s3 = bucket.client(registry.s3_endpoint)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=registry.bucket)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def test_runs_models_and_aliases_live_on_the_stack(
    registry_stack: Any, point_mlflow: Callable[[str], MlflowClient], tmp_path: Path
) -> None:
    client = point_mlflow(registry_stack.tracking_uri)
    logged = log_and_register(client, "on-the-stack", tmp_path)

    assert client.get_run(logged.run_id).data.params == {"C": str(logged.model.C)}
    # Artifacts are addressed through the server (proxied): clients need no S3 credentials.
    assert logged.artifact_uri.startswith("mlflow-artifacts:")
    assert client.get_model_version_by_alias("on-the-stack", ALIAS).version == logged.version
    assert logged.predictions_match(mlflow.sklearn.load_model(f"models:/on-the-stack@{ALIAS}"))

    keys = bucket_keys(registry_stack)
    notes_key = next(key for key in keys if key.endswith(f"{logged.run_id}/artifacts/notes.txt"))
    s3 = bucket.client(registry_stack.s3_endpoint)
    body = s3.get_object(Bucket=registry_stack.bucket, Key=notes_key)["Body"].read()
    assert body.decode("utf-8") == logged.notes
    assert any(key.endswith(f"{logged.model_id}/artifacts/MLmodel") for key in keys)


def test_a_second_up_is_a_no_op(registry_stack: Any) -> None:
    again = stack.up(registry_stack.state_dir)

    assert again == registry_stack  # the same pids, ports and start time
    _, parts = stack.status(registry_stack.state_dir)
    assert all(part.alive and part.answering for part in parts)


def alive_in_groups(pgids: set[int]) -> list[str]:
    """Processes (zombies aside) in the given process groups, as ``ps`` sees them."""
    listing = subprocess.run(
        ["ps", "-e", "-o", "pid=,pgid=,stat=,args="],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    found = []
    for line in listing.stdout.splitlines():
        pid, pgid, state, *command = line.split(maxsplit=3)
        if int(pgid) in pgids and not state.startswith("Z"):
            found.append(f"{pid} {' '.join(command)}")
    return found


def running_in(folder: Path) -> list[str]:
    """Processes working inside ``folder``: a stack's parts run in its state directory
    (PostgreSQL in its data directory there)."""
    folder, found = folder.resolve(), []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            where = (entry / "cwd").resolve(strict=True)
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if where == folder or folder in where.parents:
            found.append(f"{entry.name} {command}")
    return found


@pytest.fixture
def own_state_dir() -> Iterator[Path]:
    """A state directory for a stack of this test's own (traversable: see registry_stack)."""
    folder = Path(tempfile.mkdtemp(prefix="credit-risk-stack-"))
    folder.chmod(0o755)
    yield folder / "state"
    stack.down(folder / "state", purge=True)
    shutil.rmtree(folder, ignore_errors=True)


def test_down_stops_everything_and_up_brings_the_registry_back(
    own_state_dir: Path, point_mlflow: Callable[[str], MlflowClient], tmp_path: Path
) -> None:
    first = stack.up(own_state_dir)
    logged = log_and_register(point_mlflow(first.tracking_uri), "kept", tmp_path)
    pgids = {part.pid for part in first.parts().values()}
    assert len(alive_in_groups(pgids)) >= 3
    commands = "\n".join(running_in(own_state_dir))
    assert all(part in commands for part in ("postgres -D", "moto.server", "mlflow server"))

    assert stack.down(own_state_dir) is True
    assert alive_in_groups(pgids) == []
    assert running_in(own_state_dir) == []
    assert stack.down(own_state_dir) is False  # nothing left to stop
    with pytest.raises(stack.NotRunningError, match="not running"):
        stack.status(own_state_dir)

    second = stack.up(own_state_dir)
    client = point_mlflow(second.tracking_uri)
    # The registry was kept in PostgreSQL; the model's files came back into the new moto.
    assert client.get_model_version_by_alias("kept", ALIAS).version == logged.version
    assert logged.predictions_match(mlflow.sklearn.load_model(f"models:/kept@{ALIAS}"))
    assert mlflow.artifacts.load_text(f"runs:/{logged.run_id}/notes.txt") == logged.notes


def test_a_part_that_fails_stops_what_was_started(
    own_state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "broken" / "mlflow"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise SystemExit('mlflow broken on purpose')\n")
    monkeypatch.setenv("PYTHONPATH", str(broken.parent))  # only mlflow's server imports it

    with pytest.raises(stack.StackError) as failed:
        stack.up(own_state_dir)

    message = str(failed.value)
    assert "mlflow exited with code 1" in message
    assert "mlflow broken on purpose" in message
    assert str(own_state_dir / "logs" / "mlflow.log") in message
    assert running_in(own_state_dir) == []  # PostgreSQL and moto were stopped
    assert stack.load(own_state_dir) is None
