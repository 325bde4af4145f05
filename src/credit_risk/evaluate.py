"""Stage evaluate: score the held-out set and write metrics, per-group metrics and plots.

Outputs (paths from params.yaml): the DVC metrics files for overall and per-group quality, the
permutation feature importance, DVC plot data and PNG figures. The numbers are also logged to
the MLflow run that trained this exact model file (found by the file's hash).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import joblib
import mlflow
import numpy as np
import pandas as pd
from sklearn.inspection import permutation_importance
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)
from sklearn.pipeline import Pipeline

from credit_risk import plots
from credit_risk.config import Evaluate, Params, load_params
from credit_risk.errors import DataError
from credit_risk.fairness import group_report, groups_of
from credit_risk.files import write_json
from credit_risk.lineage import model_fingerprint
from credit_risk.model import predict_positive
from credit_risk.schema import positive_labels
from credit_risk.stage import run
from credit_risk.tracking import MODEL_FILES_TAG, run_for_model, use_experiment

log = logging.getLogger(__name__)


def classification_metrics(
    labels: pd.Series, scores: pd.Series, threshold: float
) -> dict[str, float]:
    """Ranking, decision and probability-quality metrics on one set of rows."""
    if labels.nunique() < 2:
        raise DataError("the test data holds only one outcome; ROC AUC is undefined")
    decisions = (scores >= threshold).astype(int)
    values = {
        "roc_auc": roc_auc_score(labels, scores),
        "accuracy": accuracy_score(labels, decisions),
        "f1": f1_score(labels, decisions, zero_division=0),
        "precision": precision_score(labels, decisions, zero_division=0),
        "recall": recall_score(labels, decisions, zero_division=0),
        "log_loss": log_loss(labels, scores, labels=[0, 1]),
        "brier": brier_score_loss(labels, scores),
        "calibration_error": expected_calibration_error(labels, scores),
    }
    return {name: round(float(value), 6) for name, value in values.items()}


def expected_calibration_error(
    labels: pd.Series, scores: pd.Series, bins: int = plots.CALIBRATION_BINS
) -> float:
    """How far the scores are from being probabilities: the gap between the mean score and the
    observed share of the positive outcome in each of ``bins`` equal-width score bins, weighted
    by the bin's share of rows (the bins of the calibration plot)."""
    values = scores.to_numpy(dtype=float)
    outcomes = labels.to_numpy(dtype=float)
    which = np.minimum((values * bins).astype(int), bins - 1)
    error = 0.0
    for number in np.unique(which):
        inside = which == number
        error += inside.mean() * abs(outcomes[inside].mean() - values[inside].mean())
    return float(error)


def feature_importance(
    pipeline: Pipeline, frame: pd.DataFrame, features: list[str], config: Evaluate
) -> pd.DataFrame:
    """Drop in ROC AUC when each input feature is shuffled (on a capped sample of rows)."""
    sample = frame
    if len(frame) > config.importance_max_rows:
        sample = frame.sample(config.importance_max_rows, random_state=config.seed)
    result = permutation_importance(
        pipeline,
        sample[features],
        positive_labels(sample),
        scoring="roc_auc",
        n_repeats=config.importance_repeats,
        random_state=config.seed,
    )
    table = pd.DataFrame(
        {
            "feature": features,
            "importance_mean": result.importances_mean.round(6),
            "importance_std": result.importances_std.round(6),
        }
    )
    return table.sort_values("importance_mean", ascending=False, ignore_index=True)


def evaluate(
    pipeline: Pipeline, info: dict[str, Any], frame: pd.DataFrame, params: Params
) -> dict[str, Any]:
    """Every evaluation result for the held-out ``frame``, ready to be written."""
    features: list[str] = info["features"]
    threshold: float = info["decision_threshold"]
    labels = positive_labels(frame)
    scores = predict_positive(pipeline, frame[features])
    decisions = (scores >= threshold).astype(int)
    fairness = {}
    for column, edges in params.evaluate.protected_attributes.items():
        groups = groups_of(frame, column, edges)
        fairness[str(groups.name)] = group_report(labels, scores, decisions, groups)
    return {
        "metrics": classification_metrics(labels, scores, threshold),
        "fairness": fairness,
        "importance": feature_importance(pipeline, frame, features, params.evaluate),
        "curves": plots.curves(labels, scores, decisions),
    }


def log_to_mlflow(results: dict[str, Any], params: Params, fingerprint: str, figures: Path) -> None:
    """Add the test results to the run that trained this model (or a new one if absent)."""
    experiment_id = use_experiment(params.tracking.experiment)
    trained = run_for_model(experiment_id, fingerprint)
    if trained is None:
        log.warning("no MLflow run in this store trained this model; logging to a new run")
    run_id = trained.info.run_id if trained else None
    # Resuming a run with a run_name would rename it: name only a run started here.
    name = None if run_id else "evaluate"
    with mlflow.start_run(run_id=run_id, experiment_id=experiment_id, run_name=name):
        mlflow.set_tag(MODEL_FILES_TAG, fingerprint)
        mlflow.log_metrics({f"test_{k}": v for k, v in results["metrics"].items()})
        for attribute, report in results["fairness"].items():
            gaps = {
                f"gap_{attribute}_{k}": v for k, v in report["largest_gap"].items() if v is not None
            }
            mlflow.log_metrics(gaps)
        mlflow.log_artifacts(str(figures), artifact_path="figures")
        mlflow.log_dict(results["fairness"], "fairness.json")


def main() -> None:
    params = load_params()
    paths = params.paths
    pipeline = joblib.load(paths.model)
    info = json.loads(paths.model_info.read_text(encoding="utf-8"))
    frame = pd.read_parquet(paths.test)
    results = evaluate(pipeline, info, frame, params)
    write_json(paths.metrics, results["metrics"])
    write_json(paths.fairness, results["fairness"])
    importance = results["importance"]
    write_json(paths.importance, importance.set_index("feature").to_dict(orient="index"))
    plots.write_plot_data(results["curves"], paths.plots)
    plots.write_figures(results["curves"], importance, results["metrics"]["roc_auc"], paths.figures)
    fingerprint = model_fingerprint(paths.model, paths.model_info, paths.background)
    log_to_mlflow(results, params, fingerprint, paths.figures)
    log.info("held-out ROC AUC %.3f on %d rows", results["metrics"]["roc_auc"], len(frame))


if __name__ == "__main__":
    run("evaluate", main)
