"""MLflow set-up: where runs go, and finding the run that produced a given model file.

By default runs go to a SQLite store inside the repository (``mlruns/``, ignored by git), so no
server is needed. ``MLFLOW_TRACKING_URI`` points everything at a shared server instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlparse

import mlflow
from mlflow.entities import Run

LOCAL_STORE = Path("mlruns")
MODEL_MD5_TAG = "lineage.model_md5"


def tracking_uri() -> str:
    """The tracking URI in force: the environment's, else the local SQLite store."""
    configured = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if configured:
        return configured
    return f"sqlite:///{(LOCAL_STORE / 'mlflow.db').resolve()}"


def _sqlite_database(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, or None for any other store."""
    parsed = urlparse(uri)
    if parsed.scheme != "sqlite" or not parsed.path:
        return None
    return Path(unquote(parsed.path))


def use_experiment(name: str) -> str:
    """Point MLflow at the tracking store and the named experiment; return the experiment id.

    A SQLite store keeps its artifacts beside the database, not in the working directory.
    """
    uri = tracking_uri()
    database = _sqlite_database(uri)
    artifact_root = None
    if database is not None:
        database.parent.mkdir(parents=True, exist_ok=True)
        artifact_root = (database.parent / "artifacts").resolve().as_uri()
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.get_experiment_by_name(name)
    experiment_id = (
        experiment.experiment_id
        if experiment is not None
        else mlflow.create_experiment(name, artifact_location=artifact_root)
    )
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def run_for_model(experiment_id: str, model_md5: str) -> Run | None:
    """The newest run that trained the model file with this MD5, if this store has one."""
    runs = mlflow.search_runs(
        experiment_ids=[experiment_id],
        filter_string=f"tags.`{MODEL_MD5_TAG}` = '{model_md5}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
        output_format="list",
    )
    return runs[0] if runs else None
