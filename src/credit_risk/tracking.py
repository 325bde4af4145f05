"""MLflow set-up: where runs go, and finding the run that produced a given model file.

By default runs go to a SQLite store inside the repository (``mlruns/``, ignored by git), so no
server is needed. ``MLFLOW_TRACKING_URI`` points everything at a shared server instead.

DVC runs queued experiments (``dvc exp run --queue``, ``dvc queue start -j N``) in temporary
copies of the repository that it deletes afterwards; it tells each stage the real project's root
in ``DVC_ROOT``, so the default store is resolved there and the runs outlive the copies.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlparse

import mlflow
from mlflow.entities import Run

from credit_risk.errors import CreditRiskError

LOCAL_STORE = Path("mlruns")
MODEL_MD5_TAG = "lineage.model_md5"  # the pipeline file's hash, as dvc.lock records it
MODEL_FILES_TAG = "lineage.model_files"  # lineage.model_fingerprint of the three model files
MODEL_ARTIFACTS = "serving"  # the run's folder holding the three model files, byte for byte
PROJECT_ROOT_VARIABLE = "DVC_ROOT"  # set by DVC for every stage it runs, queued ones included


def tracking_uri() -> str:
    """The tracking URI in force: the environment's, else the project's local SQLite store."""
    configured = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if configured:
        return configured
    root = Path(os.environ.get(PROJECT_ROOT_VARIABLE) or ".")
    return f"sqlite:///{(root / LOCAL_STORE / 'mlflow.db').resolve()}"


def _sqlite_database(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, or None for any other store."""
    parsed = urlparse(uri)
    if parsed.scheme != "sqlite" or not parsed.path:
        return None
    return Path(unquote(parsed.path))


def use_experiment(name: str) -> str:
    """Point MLflow at the tracking store and the named experiment; return the experiment id.

    A SQLite store keeps its artifacts beside the database, not in the working directory.
    Parallel stages (queued experiments) may meet a store that does not exist yet: creating
    its tables and the experiment happens under a file lock, so only one of them does it.
    """
    uri = tracking_uri()
    database = _sqlite_database(uri)
    artifact_root = None
    guard: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
    if database is not None:
        database.parent.mkdir(parents=True, exist_ok=True)
        artifact_root = (database.parent / "artifacts").resolve().as_uri()
        guard = _exclusive(database.with_name(f"{database.name}.lock"))
    mlflow.set_tracking_uri(uri)
    with guard:
        experiment = mlflow.get_experiment_by_name(name)
        experiment_id = (
            experiment.experiment_id
            if experiment is not None
            else mlflow.create_experiment(name, artifact_location=artifact_root)
        )
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


@contextlib.contextmanager
def _exclusive(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_file`` (other processes wait for it)."""
    with lock_file.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def runs_for_model(experiment_id: str, fingerprint: str) -> list[Run]:
    """Every finished run that trained the model with this fingerprint, the first to start
    first. A run that failed (or was killed) part-way may lack the model's files: it is
    nobody's lineage, and the next training logs a complete run."""
    runs = mlflow.search_runs(
        experiment_ids=[experiment_id],
        filter_string=(
            f"tags.`{MODEL_FILES_TAG}` = '{fingerprint}' and attributes.status = 'FINISHED'"
        ),
        max_results=50,
        output_format="list",
    )
    return sorted(runs, key=lambda run: (run.info.start_time, run.info.run_id))


def run_for_model(experiment_id: str, fingerprint: str) -> Run | None:
    """The run that trained the model with this fingerprint, if this store has one.

    `train` keeps one run per distinct model, so more than one is an inconsistency (runs copied
    between stores, or logged by an older version): refused, naming the runs, not guessed.
    """
    runs = runs_for_model(experiment_id, fingerprint)
    if len(runs) > 1:
        listed = ", ".join(
            f"{run.info.run_id} (commit {run.data.tags.get('lineage.git_commit', '?')[:12]})"
            for run in runs
        )
        raise CreditRiskError(
            f"{len(runs)} MLflow runs claim the model {fingerprint[:16]}: {listed}; "
            "delete all but one (`mlflow runs delete --run-id ...`) so its lineage is unambiguous"
        )
    return runs[0] if runs else None
