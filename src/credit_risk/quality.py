"""How good a model's scores are on labelled rows: overall, and per group of each protected
attribute. The evaluate stage reports it; the gate judges a candidate and production by it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

from credit_risk.errors import DataError
from credit_risk.fairness import group_report, groups_of
from credit_risk.model import predict_positive
from credit_risk.plots import CALIBRATION_BINS
from credit_risk.schema import positive_labels

# The metrics of classification_metrics where a smaller value is the better model; for every
# other one (ROC AUC, accuracy, F1, precision, recall) larger is better.
LOWER_IS_BETTER = frozenset({"log_loss", "brier", "calibration_error"})


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
    labels: pd.Series, scores: pd.Series, bins: int = CALIBRATION_BINS
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


@dataclass(frozen=True)
class Quality:
    """The scores and decisions on some rows, and what they are worth."""

    labels: pd.Series
    scores: pd.Series
    decisions: pd.Series
    metrics: dict[str, float]
    fairness: dict[str, Any]  # per protected attribute: each group's metrics and the largest gaps


def measure(
    pipeline: Any, info: dict[str, Any], frame: pd.DataFrame, protected: dict[str, Any]
) -> Quality:
    """Score ``frame`` with a model (its info gives features and threshold) and measure it."""
    features: list[str] = info["features"]
    threshold: float = info["decision_threshold"]
    missing = sorted(set(features) - set(frame.columns))
    if missing:
        raise DataError(f"the model uses columns these rows do not have: {missing}")
    labels = positive_labels(frame)
    scores = predict_positive(pipeline, frame[features])
    decisions = (scores >= threshold).astype(int)
    fairness = {}
    for column, edges in protected.items():
        groups = groups_of(frame, column, edges)
        fairness[str(groups.name)] = group_report(labels, scores, decisions, groups)
    return Quality(
        labels=labels,
        scores=scores,
        decisions=decisions,
        metrics=classification_metrics(labels, scores, threshold),
        fairness=fairness,
    )
