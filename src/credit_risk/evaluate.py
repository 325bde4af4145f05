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
import pandas as pd
from sklearn.inspection import permutation_importance
from sklearn.pipeline import Pipeline

from credit_risk import plots
from credit_risk.config import Evaluate, Params, load_params
from credit_risk.files import write_json
from credit_risk.lineage import model_fingerprint
from credit_risk.quality import measure
from credit_risk.schema import positive_labels
from credit_risk.stage import run
from credit_risk.tracking import MODEL_FILES_TAG, run_for_model, use_experiment

log = logging.getLogger(__name__)


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
    measured = measure(pipeline, info, frame, params.evaluate.protected_attributes)
    return {
        "metrics": measured.metrics,
        "fairness": measured.fairness,
        "importance": feature_importance(pipeline, frame, info["features"], params.evaluate),
        "curves": plots.curves(measured.labels, measured.scores, measured.decisions),
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
