"""Stage train: fit the model pipeline, save it under models/, and log an MLflow run.

The MLflow run holds the params, training metrics, the model (with signature and input
example) and lineage tags: the git commit and the DVC hashes of the training data and of the
saved model file, so that any score can be traced back to the code and data behind it.
"""

from __future__ import annotations

import logging
import warnings
from importlib.metadata import version
from pathlib import Path
from typing import Any

import joblib
import mlflow
import pandas as pd
import sklearn
import skops.io
from mlflow.models import infer_signature
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline

from credit_risk.config import MODEL_TYPES, Params, load_params
from credit_risk.errors import DataError
from credit_risk.files import md5, write_json, write_with
from credit_risk.lineage import lineage_tags, model_fingerprint
from credit_risk.model import build_pipeline, model_features, predict_positive
from credit_risk.schema import positive_labels, positive_outcome
from credit_risk.stage import run
from credit_risk.tracking import (
    MODEL_ARTIFACTS,
    MODEL_FILES_TAG,
    MODEL_MD5_TAG,
    run_for_model,
    runs_for_model,
    use_experiment,
)

log = logging.getLogger(__name__)

INPUT_EXAMPLE_ROWS = 5
SERVING_PACKAGES = ("scikit-learn", "numpy", "pandas", "scipy", "cloudpickle")


def fit(frame: pd.DataFrame, params: Params) -> Pipeline:
    """Fit the configured pipeline on validated training rows."""
    labels = positive_labels(frame)
    if labels.nunique() < 2:
        raise DataError("the training data holds only one outcome; cannot fit a classifier")
    pipeline = build_pipeline(params.train)
    pipeline.fit(frame[model_features(params.train)], labels)
    return pipeline


def model_info(params: Params, rows: int, train_md5: str) -> dict[str, Any]:
    """What travels with the model file: enough to use it correctly and to trace it."""
    return {
        "model_type": params.train.model,
        "hyperparameters": params.train.model_params(),
        "features": model_features(params.train),
        "decision_threshold": params.train.decision_threshold,
        "calibration": params.train.calibration.method,
        "positive_class": positive_outcome(),
        "training_rows": rows,
        "training_data_md5": train_md5,
        "sklearn_version": sklearn.__version__,
    }


def flat_params(params: Params) -> dict[str, Any]:
    """The run's parameters, with dotted keys as in params.yaml."""
    flat: dict[str, Any] = {
        "ingest.source": params.ingest.source,
        "split.test_size": params.split.test_size,
        "split.seed": params.split.seed,
    }
    for key, value in params.train.model_dump(exclude=set(_unused_models(params))).items():
        if isinstance(value, dict):
            flat.update({f"train.{key}.{k}": v for k, v in value.items()})
        else:
            flat[f"train.{key}"] = value
    return flat


def _unused_models(params: Params) -> list[str]:
    return [name for name in MODEL_TYPES if name != params.train.model]


def model_requirements() -> list[str]:
    """Pinned packages needed to load the logged model (given, so MLflow need not infer them)."""
    return [f"{name}=={version(name)}" for name in SERVING_PACKAGES]


def own_types(pipeline: Pipeline) -> list[str]:
    """The classes in this pipeline that skops does not trust by default (the calibration's).

    MLflow saves the model with skops, which refuses to load types outside its default list
    unless named; these are the classes this code built the pipeline from, nothing from outside.
    """
    return list(skops.io.get_untrusted_types(data=skops.io.dumps(pipeline)))


def log_run(pipeline: Pipeline, frame: pd.DataFrame, params: Params, model_path: Path) -> str:
    """Log the training run to MLflow and return its id.

    A model file whose exact bytes a run already tracks (a rerun on the same code, data and
    params, on the same kind of CPU) is not logged twice: that run is its lineage. Two runs
    racing to log the same file (parallel queued experiments) settle it after logging: the one
    that started first stays, the other deletes itself.
    """
    experiment_id = use_experiment(params.tracking.experiment)
    paths = params.paths
    fingerprint = model_fingerprint(model_path, paths.model_info, paths.background)
    tracked = run_for_model(experiment_id, fingerprint)
    if tracked is not None:
        log.info("run %s already tracks this exact model; not logging another", tracked.info.run_id)
        return tracked.info.run_id
    features = frame[model_features(params.train)]
    train_auc = roc_auc_score(positive_labels(frame), predict_positive(pipeline, features))
    example = features.head(INPUT_EXAMPLE_ROWS)
    with warnings.catch_warnings():
        # The hint is about integer columns with missing values; the contract allows none.
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        signature = infer_signature(example, pipeline.predict_proba(example))
    tags = lineage_tags({"train_data": params.paths.train})
    tags[MODEL_MD5_TAG] = md5(model_path)
    tags[MODEL_FILES_TAG] = fingerprint
    with mlflow.start_run(experiment_id=experiment_id, run_name=params.train.model) as active:
        mlflow.set_tags(tags)
        mlflow.log_params(flat_params(params))
        mlflow.log_metrics({"train_roc_auc": float(train_auc), "train_rows": float(len(frame))})
        mlflow.sklearn.log_model(
            pipeline,
            name="model",
            signature=signature,
            input_example=example,
            pyfunc_predict_fn="predict_proba",
            pip_requirements=model_requirements(),
            skops_trusted_types=own_types(pipeline),
        )
        # The three model files, byte for byte, so a registry version is served (and judged)
        # as exactly the model the pipeline trained: the same fingerprint, the same tag.
        for path in (model_path, params.paths.model_info, params.paths.background):
            mlflow.log_artifact(str(path), artifact_path=MODEL_ARTIFACTS)
    first = runs_for_model(experiment_id, fingerprint)[0].info.run_id
    if first != active.info.run_id:
        mlflow.delete_run(active.info.run_id)
        log.info("run %s logged this model file first; this run is deleted", first)
    return first


def explain_background(frame: pd.DataFrame, params: Params) -> pd.DataFrame:
    """A seeded sample of training rows (model features only) to explain scores against."""
    rows = min(params.train.explain_background_rows, len(frame))
    sample = frame.sample(rows, random_state=params.train.seed)
    return sample[model_features(params.train)].reset_index(drop=True)


def main() -> None:
    params = load_params()
    paths = params.paths
    frame = pd.read_parquet(paths.train)
    pipeline = fit(frame, params)
    background = explain_background(frame, params)
    write_with(paths.model, lambda tmp: joblib.dump(pipeline, tmp))
    write_json(paths.model_info, model_info(params, len(frame), md5(paths.train)))
    write_with(paths.background, lambda tmp: background.to_parquet(tmp, index=False))
    run_id = log_run(pipeline, frame, params, paths.model)
    log.info("trained %s on %d rows; MLflow run %s", params.train.model, len(frame), run_id)


if __name__ == "__main__":
    run("train", main)
