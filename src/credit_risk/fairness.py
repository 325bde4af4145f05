"""Model quality per group of a protected attribute, and the largest gap between groups."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd
from fairlearn.metrics import (
    MetricFrame,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from sklearn.metrics import accuracy_score, brier_score_loss, f1_score, roc_auc_score

Scorer = Callable[..., float]


def _roc_auc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    # A group with a single outcome has no ROC AUC; report it as missing, not as an error.
    return float(roc_auc_score(y_true, y_score)) if len(np.unique(y_true)) == 2 else float("nan")


SCORE_METRICS: dict[str, Scorer] = {"roc_auc": _roc_auc, "brier": brier_score_loss}
DECISION_METRICS: dict[str, Scorer] = {
    "accuracy": accuracy_score,
    "f1": lambda y, p: f1_score(y, p, zero_division=0),
    "true_positive_rate": true_positive_rate,
    "false_positive_rate": false_positive_rate,
    "selection_rate": selection_rate,
}


def band_labels(edges: Sequence[float], whole: bool = True) -> list[str]:
    """Readable names for bands cut at ``edges`` (each band includes its lower edge).

    For a whole-number column with whole-number edges: "<25", "25-34", ..., "65+"; otherwise
    half-open ranges: "<2.5", "2.5 to <4", "4+".
    """
    if whole and all(float(edge).is_integer() for edge in edges):
        ints = [int(edge) for edge in edges]
        middle = [f"{low}-{high - 1}" for low, high in pairwise(ints)]
        return [f"<{ints[0]}", *middle, f"{ints[-1]}+"]
    middle = [f"{low:g} to <{high:g}" for low, high in pairwise(edges)]
    return [f"<{edges[0]:g}", *middle, f"{edges[-1]:g}+"]


def groups_of(frame: pd.DataFrame, column: str, edges: Sequence[float] | None) -> pd.Series:
    """The group of each row: the column's value, or its band when edges are given."""
    if edges is None:
        return frame[column].astype(str).rename(column)
    bins = [-np.inf, *edges, np.inf]
    whole = pd.api.types.is_integer_dtype(frame[column])
    labels = band_labels(edges, whole)
    banded = pd.cut(frame[column], bins=bins, right=False, labels=labels)
    return banded.astype(str).rename(f"{column}_band")


def _clean(value: Any) -> float | None:
    number = float(value)
    return None if np.isnan(number) else round(number, 6)


def group_report(
    labels: pd.Series, scores: pd.Series, decisions: pd.Series, groups: pd.Series
) -> dict[str, Any]:
    """Every metric per group, the group sizes, and each metric's largest gap between groups."""
    by_score = MetricFrame(
        metrics=SCORE_METRICS, y_true=labels, y_pred=scores, sensitive_features=groups
    )
    by_decision = MetricFrame(
        metrics=DECISION_METRICS, y_true=labels, y_pred=decisions, sensitive_features=groups
    )
    table = pd.concat([by_score.by_group, by_decision.by_group], axis=1)
    sizes = groups.value_counts()
    base_rates = labels.groupby(groups).mean()
    report_groups = {
        str(group): {
            "rows": int(sizes[group]),
            "base_rate": _clean(base_rates[group]),
            **{metric: _clean(value) for metric, value in row.items()},
        }
        for group, row in table.iterrows()
    }
    gaps = pd.concat([by_score.difference(), by_decision.difference()])
    return {"groups": report_groups, "largest_gap": {k: _clean(v) for k, v in gaps.items()}}
