"""Live quality: outcomes joined by request id and row, the evaluation's metrics, the checks
against the evaluation, the gate's fairness rule on live groups, and "too few" said so."""

from __future__ import annotations

import pandas as pd
import pytest
from monitor_windows import logged, outcomes_of

from credit_risk.errors import DataError
from credit_risk.monitoring.performance import judge, labelled
from credit_risk.quality import classification_metrics
from credit_risk.schema import outcome_names, positive_labels
from credit_risk.synthetic import generate


def test_outcomes_join_by_request_id_and_row() -> None:
    names = outcome_names()
    predictions = pd.DataFrame(
        {"request_id": ["a", "a", "b"], "row": [0, 1, 0], "probability": [0.9, 0.1, 0.5]}
    )
    outcomes = pd.DataFrame(
        {"request_id": ["a", "b"], "row": [1, 0], "outcome": [names[0], names[1]]}
    )
    joined = labelled(predictions, outcomes)
    assert list(zip(joined["request_id"], joined["row"], joined["label"], strict=True)) == [
        ("a", 1, 0),
        ("b", 0, 1),
    ]


def test_an_outcome_the_contract_does_not_know_is_an_error() -> None:
    predictions = pd.DataFrame({"request_id": ["a"], "row": [0], "probability": [0.5]})
    outcomes = pd.DataFrame({"request_id": ["a"], "row": [0], "outcome": ["maybe"]})
    with pytest.raises(DataError, match="maybe"):
        labelled(predictions, outcomes)


def test_live_metrics_are_the_evaluations_metrics(source, model, baseline, params) -> None:
    frame = generate(source, 600, seed=21)
    rows = labelled(logged(frame, model), outcomes_of(frame))
    threshold = float(model.info["decision_threshold"])
    result = judge(
        rows, baseline, threshold, params.monitor.performance,
        params.evaluate.protected_attributes, params.gate.fairness,
    )  # fmt: skip
    assert result.status == "judged"
    assert result.outcomes == len(frame)
    expected = classification_metrics(positive_labels(frame), rows["probability"], threshold)
    assert result.live == expected
    assert set(result.live) == set(baseline)
    names = {check.name for check in result.checks}
    assert {"performance.max_roc_auc_drop", "performance.max_brier_rise"} <= names
    protected = [c for c in params.evaluate.protected_attributes if c in frame.columns]
    assert len(result.fairness) == len(protected)
    assert not result.failed, result.checks


def test_too_few_outcomes_are_not_judged(source, model, baseline, params) -> None:
    frame = generate(source, params.monitor.performance.min_outcomes - 1, seed=22)
    rows = labelled(logged(frame, model), outcomes_of(frame))
    result = judge(
        rows, baseline, 0.5, params.monitor.performance,
        params.evaluate.protected_attributes, params.gate.fairness,
    )  # fmt: skip
    assert result.status == "too_few_outcomes"
    assert result.checks == [] and result.live is None


def test_a_rise_in_brier_and_a_fairness_gap_fail_their_checks(source, model, params) -> None:
    frame = generate(source, 800, seed=23)
    rows = labelled(logged(frame, model), outcomes_of(frame, flip=0.25))
    perfect = {"roc_auc": 1.0, "brier": 0.0}
    strict = params.monitor.performance.model_copy(
        update={"max_fairness_gap": 0.0001, "min_group_rows": 1}
    )
    result = judge(
        rows, perfect, 0.3, strict, params.evaluate.protected_attributes, params.gate.fairness
    )
    failed = {check.name for check in result.failed}
    assert {"performance.max_roc_auc_drop", "performance.max_brier_rise"} <= failed
    if result.fairness:
        assert "performance.max_fairness_gap" in failed
