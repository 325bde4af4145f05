"""Drift per feature: the test suits the column's kind, Holm's correction, and a feature drifts
only when the test is significant AND the effect is large (a trivial shift in a big window is
significant, and still not drift)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from credit_risk.monitoring.drift import compare, holm, population_stability_index
from credit_risk.schema import feature_columns
from credit_risk.synthetic import generate


def test_holm_adjusts_step_down_and_keeps_the_order() -> None:
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


def test_psi_is_zero_for_equal_shares_and_grows_with_the_shift() -> None:
    same = population_stability_index(np.array([50, 50]), np.array([100, 100]))
    small = population_stability_index(np.array([50, 50]), np.array([55, 45]))
    large = population_stability_index(np.array([50, 50]), np.array([80, 20]))
    assert same == pytest.approx(0.0)
    assert 0 < small < 0.1 < large


def test_every_logged_contract_feature_is_compared_by_its_kind(source, reference, params, roles):
    window = generate(source, 500, seed=5)
    result = compare(reference, window, params.monitor.drift)
    by_name = {f.feature: f for f in result.features}
    assert set(by_name) == set(feature_columns())
    for name, found in by_name.items():
        numeric = roles.specs[name].kind == "numeric"
        assert found.test == ("kolmogorov_smirnov" if numeric else "chi_square")
        assert found.effect_name == (
            "wasserstein_in_std" if numeric else "population_stability_index"
        )
        assert 0.0 <= found.p_value <= found.p_adjusted <= 1.0
        assert found.current_rows == len(window)
        assert found.reference_rows == len(reference)
        assert math.isfinite(found.effect) and found.effect >= 0
    assert not result.drifted
    assert result.not_logged == []


def test_features_missing_from_the_log_are_named_not_compared(source, reference, params, roles):
    left_out = roles.first("categorical")
    window = generate(source, 300, seed=6).drop(columns=[left_out])
    result = compare(reference, window, params.monitor.drift)
    assert result.not_logged == [left_out]
    assert left_out not in {f.feature for f in result.features}
    window[left_out] = None  # present, but never given a value
    assert compare(reference, window, params.monitor.drift).not_logged == [left_out]


def test_a_trivial_shift_in_a_big_window_is_significant_but_not_drift(source, params, roles):
    """The reason for the effect size: 100,000 rows make a shift of a few hundredths of a
    standard deviation significant; it changes nothing and must not raise the alarm."""
    numeric = roles.first("numeric")
    reference = generate(source, 100_000, seed=7)
    window = generate(source, 100_000, seed=8)
    step = 0.04 * float(reference[numeric].std())
    if roles.specs[numeric].python_type is int:
        step = max(1, round(step))
        if step / float(reference[numeric].std()) >= params.monitor.drift.numeric_effect / 2:
            pytest.skip(f"{numeric}'s unit is too coarse for a trivial whole-number shift")
    window[numeric] = window[numeric] + step
    found = {f.feature: f for f in compare(reference, window, params.monitor.drift).features}
    assert found[numeric].significant, found[numeric]
    assert found[numeric].effect < params.monitor.drift.numeric_effect
    assert not found[numeric].drifted


def test_a_large_shift_in_a_small_window_is_drift(source, reference, params, roles):
    numeric = roles.first("numeric")
    window = generate(source, 300, seed=9)
    window[numeric] = window[numeric] + float(reference[numeric].std())
    result = compare(reference, window, params.monitor.drift)
    assert result.drifted == [numeric]
    assert result.features[0].feature == numeric  # drifted first


def test_an_unseen_category_is_its_own_cell_and_named(source, params, roles):
    categorical = roles.first("categorical")
    rarest = source[categorical].astype(str).value_counts().index[-1]
    reference = source[source[categorical].astype(str) != rarest]
    window = generate(source, 2000, seed=10)
    found = {f.feature: f for f in compare(reference, window, params.monitor.drift).features}
    assert found[categorical].unseen == [rarest]
    assert math.isfinite(found[categorical].effect)
    assert found[categorical].effect > 0


def test_a_value_outside_the_contract_is_unseen_too(source, reference, params, roles):
    categorical = roles.first("categorical")
    window = generate(source, 400, seed=12)
    strange = window[categorical].astype(object)
    strange.iloc[:100] = "no-such-category"
    window[categorical] = strange
    found = {f.feature: f for f in compare(reference, window, params.monitor.drift).features}
    assert "no-such-category" in found[categorical].unseen
    assert found[categorical].drifted


def test_a_constant_reference_column_still_gives_a_finite_effect(params, roles):
    numeric = roles.first("numeric")
    reference = pd.DataFrame({numeric: [5.0] * 300})
    window = pd.DataFrame({numeric: [5.0] * 150 + [6.0] * 150})
    found = compare(reference, window, params.monitor.drift).features[0]
    assert found.effect == pytest.approx(0.5)
    assert found.drifted
