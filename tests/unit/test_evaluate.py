from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from credit_risk.config import Params
from credit_risk.errors import DataError
from credit_risk.evaluate import evaluate
from credit_risk.fairness import band_labels, group_report, groups_of
from credit_risk.quality import classification_metrics, expected_calibration_error
from credit_risk.train import model_info

METRICS = {
    "roc_auc",
    "accuracy",
    "f1",
    "precision",
    "recall",
    "log_loss",
    "brier",
    "calibration_error",
}


def test_perfect_scores_give_perfect_metrics() -> None:
    labels = pd.Series([0, 0, 1, 1])
    metrics = classification_metrics(labels, pd.Series([0.1, 0.2, 0.8, 0.9]), threshold=0.5)
    assert set(metrics) == METRICS
    assert metrics["roc_auc"] == metrics["accuracy"] == metrics["f1"] == 1.0
    assert metrics["brier"] == pytest.approx(0.025)


def test_calibration_error_is_the_weighted_gap_per_bin() -> None:
    # Bin [0.2, 0.3): mean score 0.25, one in four positive: calibrated, no error.
    calibrated = pd.Series([0.25] * 4)
    assert expected_calibration_error(pd.Series([1, 0, 0, 0]), calibrated) == pytest.approx(0.0)
    # Half the rows say 0.9 and are all negative (gap 0.9); the other half are exact.
    labels = pd.Series([0, 0, 1, 0, 0, 0])
    scores = pd.Series([0.9, 0.9, 1 / 3, 1 / 3, 1 / 3, 0.9])
    assert expected_calibration_error(labels, scores) == pytest.approx(0.45)
    # A score of exactly 1.0 falls in the top bin, not outside the bins.
    assert expected_calibration_error(pd.Series([1]), pd.Series([1.0])) == pytest.approx(0.0)


def test_threshold_moves_decisions_not_ranking() -> None:
    labels = pd.Series([0, 0, 1, 1])
    scores = pd.Series([0.1, 0.6, 0.7, 0.9])
    low, high = (classification_metrics(labels, scores, t) for t in (0.5, 0.65))
    assert low["roc_auc"] == high["roc_auc"] == 1.0
    assert low["precision"] < high["precision"] == 1.0


def test_single_outcome_is_a_clear_error() -> None:
    with pytest.raises(DataError, match="only one outcome"):
        classification_metrics(pd.Series([1, 1]), pd.Series([0.2, 0.9]), 0.5)


def test_whole_number_bands() -> None:
    assert band_labels([25, 35]) == ["<25", "25-34", "35+"]
    frame = pd.DataFrame({"years": [18, 24, 25, 34, 35, 90]})
    groups = groups_of(frame, "years", [25, 35])
    assert groups.name == "years_band"
    assert groups.tolist() == ["<25", "<25", "25-34", "25-34", "35+", "35+"]


def test_fractional_bands_include_their_lower_edge() -> None:
    assert band_labels([2.5, 4]) == ["<2.5", "2.5 to <4", "4+"]
    groups = groups_of(pd.DataFrame({"x": [2.4, 2.5, 3.99, 4.0]}), "x", [2.5, 4])
    assert groups.tolist() == ["<2.5", "2.5 to <4", "2.5 to <4", "4+"]
    # Whole-number edges on a fractional column: 53.5 is not in a band called "36-53".
    groups = groups_of(pd.DataFrame({"age": [35.5, 53.5, 54.0]}), "age", [36, 54])
    assert groups.tolist() == ["<36", "36 to <54", "54+"]


def test_group_report_measures_the_gap() -> None:
    groups = pd.Series(["a"] * 4 + ["b"] * 4, name="g")
    labels = pd.Series([0, 0, 1, 1, 0, 0, 1, 1])
    scores = pd.Series([0.1, 0.2, 0.8, 0.9, 0.9, 0.8, 0.2, 0.1])  # b is ranked backwards
    decisions = (scores >= 0.5).astype(int)
    report = group_report(labels, scores, decisions, groups)
    assert report["groups"]["a"]["roc_auc"] == 1.0
    assert report["groups"]["b"]["roc_auc"] == 0.0
    assert report["largest_gap"]["roc_auc"] == 1.0
    assert report["groups"]["a"]["rows"] == 4 and report["groups"]["b"]["base_rate"] == 0.5


def test_group_with_one_outcome_has_no_auc() -> None:
    groups = pd.Series(["a", "a", "b", "b"], name="g")
    labels = pd.Series([0, 1, 1, 1])
    scores = pd.Series([0.2, 0.7, 0.6, 0.9])
    report = group_report(labels, scores, (scores >= 0.5).astype(int), groups)
    assert report["groups"]["b"]["roc_auc"] is None
    assert report["largest_gap"]["roc_auc"] == 0.0


def test_evaluate_covers_every_output(trained, source_split, params: Params) -> None:
    _, test = source_split
    info = model_info(params, rows=750, train_md5="x")
    results = evaluate(trained, info, test, params)
    assert set(results["metrics"]) == METRICS
    protected = params.evaluate.protected_attributes
    names = {column if edges is None else f"{column}_band" for column, edges in protected.items()}
    assert set(results["fairness"]) == names
    for column, edges in protected.items():
        report = results["fairness"][column if edges is None else f"{column}_band"]
        assert sum(g["rows"] for g in report["groups"].values()) == len(test)
        if edges is None:
            assert set(report["groups"]) == set(test[column].astype(str))
    importance = results["importance"]
    assert set(importance["feature"]) == set(info["features"])
    assert importance["importance_mean"].is_monotonic_decreasing
    curves = results["curves"]
    assert set(curves) == {"roc", "precision_recall", "calibration", "confusion"}
    assert len(curves["confusion"]) == len(test)
    assert np.all(np.diff(curves["roc"]["fpr"]) >= 0)
