"""Each rule on hand-made numbers: the limit is where pass turns to fail."""

from __future__ import annotations

from typing import Any

import pytest

from credit_risk.config import Params
from credit_risk.gate.report import Verdict, markdown, stale_reasons
from credit_risk.gate.rules import absolute_rules, fairness_rules, judge, passed, regression_rules


def metrics(**changes: float) -> dict[str, float]:
    return {"roc_auc": 0.8, "brier": 0.15, "calibration_error": 0.02, **changes}


def report(rows: list[int], rates: list[float | None]) -> dict[str, Any]:
    groups = {
        f"g{i}": {"rows": n, "true_positive_rate": rate}
        for i, (n, rate) in enumerate(zip(rows, rates, strict=True))
    }
    return {"attribute": {"groups": groups, "largest_gap": {}}}


def test_absolute_rules_pass_at_the_limit_and_fail_beyond(params: Params) -> None:
    gate = params.gate
    at_limit = metrics(
        roc_auc=gate.min_roc_auc,
        brier=gate.max_brier,
        calibration_error=gate.max_calibration_error,
    )
    assert {r.status for r in absolute_rules(at_limit, gate)} == {"pass"}
    for key, worse in (
        ("roc_auc", gate.min_roc_auc - 1e-6),
        ("brier", gate.max_brier + 1e-6),
        ("calibration_error", gate.max_calibration_error + 1e-6),
    ):
        results = absolute_rules(metrics(**{key: worse}), gate)
        assert [r.status for r in results].count("fail") == 1


def test_fairness_judges_only_groups_large_enough(params: Params) -> None:
    gate = params.gate.model_copy(
        update={
            "fairness": params.gate.fairness.model_copy(
                update={"metric": "true_positive_rate", "max_gap": 0.2, "min_group_rows": 30}
            )
        }
    )
    # A tiny group with an extreme rate is listed, not judged.
    (result,) = fairness_rules(report([100, 80, 5], [0.7, 0.6, 0.0]), gate)
    assert result.status == "pass" and result.value == pytest.approx(0.1)
    assert "g2" in result.detail and "too small" in result.detail
    (result,) = fairness_rules(report([100, 80], [0.9, 0.6]), gate)
    assert result.status == "fail" and result.value == pytest.approx(0.3)
    assert "g0: 0.900 vs g1: 0.600" in result.detail
    # One group large enough: nothing to compare, which is said, not passed in silence.
    (result,) = fairness_rules(report([100, 10], [0.9, 0.1]), gate)
    assert result.status == "skipped" and result.value is None


def test_regression_is_skipped_without_production_and_judged_with_it(params: Params) -> None:
    gate = params.gate
    assert {r.status for r in regression_rules(metrics(), None, "-", gate)} == {"skipped"}
    drop = gate.no_regression.max_roc_auc_drop
    worse = metrics(roc_auc=0.8 - drop - 0.001)
    results = regression_rules(worse, metrics(), "version 3", gate)
    assert [r.status for r in results] == ["fail", "pass"]
    assert "version 3" in results[0].detail
    better = metrics(roc_auc=0.9, brier=0.15 + gate.no_regression.max_brier_rise + 0.001)
    assert [r.status for r in regression_rules(better, metrics(), "v", gate)] == ["pass", "fail"]


def test_the_verdict_fails_on_any_failed_rule_only(params: Params) -> None:
    candidate = {"metrics": metrics(), "fairness": report([100, 80], [0.7, 0.65])}
    results = judge(candidate, None, "-", params.gate)
    assert passed(results)
    candidate["metrics"] = metrics(roc_auc=0.5)
    assert not passed(judge(candidate, None, "-", params.gate))


def verdict(**changes: Any) -> Verdict:
    base: dict[str, Any] = {
        "passed": True,
        "judged_at": "2026-01-01T00:00:00+00:00",
        "model_fingerprint": "a" * 64,
        "model_type": "logistic_regression",
        "test_data_md5": "b" * 32,
        "rows": 10,
        "gate": {"min_roc_auc": 0.7},
        "registry": "sqlite:///x",
        "model_name": "m",
        "production_version": None,
        "production_fingerprint": None,
        "rules": [],
        "metrics": {"candidate": metrics(), "production": None},
    }
    return Verdict(**{**base, **changes})


def test_a_verdict_is_stale_when_anything_it_judged_moved() -> None:
    judged = verdict()
    now = {key: getattr(judged, key) for key in (
        "model_fingerprint", "test_data_md5", "gate", "registry", "model_name",
        "production_version",
    )}  # fmt: skip
    assert stale_reasons(judged, now) == []
    for key, value in (
        ("model_fingerprint", "c" * 64),
        ("test_data_md5", "d" * 32),
        ("gate", {"min_roc_auc": 0.8}),
        ("production_version", 4),
    ):
        reasons = stale_reasons(judged, {**now, key: value})
        assert len(reasons) == 1, key


def test_the_summary_names_every_rule_and_the_outcome(params: Params) -> None:
    candidate = {"metrics": metrics(roc_auc=0.5), "fairness": report([100, 80], [0.7, 0.65])}
    results = judge(candidate, None, "-", params.gate)
    text = markdown(verdict(passed=False, rules=[r.as_dict() for r in results]))
    assert f"❌ blocks (1 of {len(results)} rules fail)" in text
    for result in results:
        assert f"gate.{result.name}" in text
    assert "No model is in production yet" in text
