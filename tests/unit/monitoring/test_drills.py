"""Drills: the monitor on windows whose truth is known, drawn from the synthetic source.

(a) no drift: windows from the training distribution rarely raise the alarm (the false alarm
rate is measured and bounded); (b) a shift injected into one numeric and one categorical
feature is found in those two, and in no feature that the shift did not really move
(reweighting a category's rows moves what correlates with it; measured on 100,000 rows);
(c) outcomes turned over for a share of the rows (a model that stopped working) raise the
live-quality alarm.

The null windows are resampled from the whole source, training rows included, so their live
ROC AUC runs a little above the held-out one: the quality false alarm rate measured here is a
lower bound; the drift false alarm rate is not affected.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from monitor_windows import Judge, drill_shift, moved_with

from credit_risk.synthetic import generate

NULL_WINDOWS, WINDOW_ROWS = 50, 500
MAX_FALSE_ALARM_RATE = 0.05


def false_alarms(judge: Judge, source: pd.DataFrame, windows: int) -> dict[str, list[Any]]:
    """Per part of the verdict, the windows that raised the alarm (drifted features; failed
    quality checks) and the reasons of every alarm."""
    found: dict[str, list[Any]] = {"drift": [], "quality": [], "reasons": []}
    for seed in range(windows):
        verdict = judge(generate(source, WINDOW_ROWS, seed=1000 + seed))
        if verdict["drift"]["drifted"]:
            found["drift"].append(verdict["drift"]["drifted"])
        failed = [c["name"] for c in verdict["performance"]["checks"] if c["status"] == "fail"]
        if failed:
            found["quality"].append(failed)
        if verdict["alarm"]:
            found["reasons"].append(verdict["reasons"])
    return found


def test_a_window_from_the_training_distribution_raises_no_alarm(judge, source) -> None:
    verdict = judge(generate(source, WINDOW_ROWS, seed=1))
    assert not verdict["alarm"], verdict["reasons"]
    assert verdict["drift"]["status"] == "judged"
    assert verdict["performance"]["status"] == "judged"


@pytest.mark.slow
def test_false_alarm_rate_without_drift_is_bounded(judge, source) -> None:
    found = false_alarms(judge, source, NULL_WINDOWS)
    rate = len(found["reasons"]) / NULL_WINDOWS
    print(
        f"\nfalse alarm rate: {len(found['reasons'])} of {NULL_WINDOWS} windows of "
        f"{WINDOW_ROWS} rows = {rate:.1%} (bound {MAX_FALSE_ALARM_RATE:.0%}); drift in "
        f"{len(found['drift'])} {found['drift']}, quality in {len(found['quality'])} "
        f"{found['quality']}"
    )
    assert rate <= MAX_FALSE_ALARM_RATE, found["reasons"]


def test_injected_drift_is_found_in_those_features_only(judge, source, roles, params) -> None:
    numeric, categorical = roles.first("numeric"), roles.first("categorical")
    shift = drill_shift(source, numeric, categorical)
    verdict = judge(generate(source, WINDOW_ROWS, seed=2, shift=shift))
    moved = moved_with(source, shift, params)
    found = {f["feature"]: f for f in verdict["drift"]["features"]}
    print(
        "\n"
        + "\n".join(
            f"{f['feature']}: {f['test']} {f['statistic']:.4g}, p (Holm) {f['p_adjusted']:.3g}, "
            f"{f['effect_name']} {f['effect']:.3g}, drifted {f['drifted']}"
            for f in verdict["drift"]["features"]
        )
    )
    print(f"moved beyond the thresholds on 100,000 rows: {sorted(moved)}")
    assert {numeric, categorical} <= set(verdict["drift"]["drifted"]) <= moved
    assert verdict["alarm"]
    assert verdict["drift"]["features"][0]["drifted"]  # drifted features come first
    assert found[numeric]["test"] == "kolmogorov_smirnov"
    assert found[categorical]["test"] == "chi_square"


@pytest.mark.slow
def test_injected_drift_is_found_in_every_window(judge, source, roles, params) -> None:
    numeric, categorical = roles.first("numeric"), roles.first("categorical")
    shift = drill_shift(source, numeric, categorical)
    moved = moved_with(source, shift, params)
    missed, extra = 0, []
    windows = 20
    for seed in range(windows):
        verdict = judge(generate(source, WINDOW_ROWS, seed=2000 + seed, shift=shift))
        drifted = set(verdict["drift"]["drifted"])
        missed += len({numeric, categorical} - drifted)
        extra += sorted(drifted - moved)
    print(
        f"\n{windows} shifted windows: {missed} misses of {numeric} and {categorical}; "
        f"features the shift did not move flagged: {extra} (moved: {sorted(moved)})"
    )
    assert missed == 0
    assert not extra


def test_outcomes_turned_over_raise_the_quality_alarm(judge, source) -> None:
    frame = generate(source, WINDOW_ROWS, seed=3)
    verdict = judge(frame, flip=0.3)
    failed = {c["name"] for c in verdict["performance"]["checks"] if c["status"] == "fail"}
    assert "performance.max_roc_auc_drop" in failed
    assert verdict["alarm"]
    assert not verdict["drift"]["drifted"]  # the inputs did not move: only quality did
    assert any("roc_auc drop" in reason for reason in verdict["reasons"])
