"""Model behaviour: minimum quality, invariance to what must not matter, expected directions.

The quality floor is `gate.min_roc_auc` in params.yaml; the expected directions are the
contract's `raises_probability` list. Both are the example's domain knowledge, kept where a
user who adopts other data edits them; nothing here names a column.
"""

from __future__ import annotations

import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from credit_risk.config import Params
from credit_risk.model import model_features, predict_positive
from credit_risk.schema import column_specs, contract, positive_labels


def scores(pipeline, frame: pd.DataFrame, params: Params) -> pd.Series:
    return predict_positive(pipeline, frame[model_features(params.train)])


def test_minimum_quality_on_held_out_rows(trained, source_split, params: Params) -> None:
    _, test = source_split
    auc = roc_auc_score(positive_labels(test), scores(trained, test, params))
    assert auc >= params.gate.min_roc_auc


def test_dropped_features_do_not_change_any_score(trained, source_split, params: Params) -> None:
    """Features kept out of the model (protected attributes): changing them changes nothing."""
    _, test = source_split
    if not params.train.drop_features:
        pytest.skip("train.drop_features is empty")
    for name in params.train.drop_features:
        spec = column_specs()[name]
        if spec.allowed is not None:
            values = list(spec.allowed)
            changed = test[name].map(lambda v, vs=values: vs[(vs.index(v) + 1) % len(vs)])
        else:
            changed = test[name].sample(frac=1.0, random_state=0).to_numpy()
        moved = test.assign(**{name: changed})
        assert (moved[name] != test[name]).any(), name
        pd.testing.assert_series_equal(
            predict_positive(trained, moved), predict_positive(trained, test)
        )


def test_row_order_does_not_change_scores(trained, source_split, params: Params) -> None:
    _, test = source_split
    shuffled = test.sample(frac=1.0, random_state=0)
    pd.testing.assert_series_equal(
        scores(trained, shuffled, params).sort_index(), scores(trained, test, params)
    )


@pytest.mark.parametrize(
    "direction",
    contract().raises_probability,
    ids=lambda d: f"{d.feature}:{d.from_}->{d.to}",
)
def test_expected_directions_hold(trained, source_split, params: Params, direction) -> None:
    """The same rows, changed in one way that domain knowledge says raises the probability."""
    if direction.feature not in model_features(params.train):
        pytest.skip(f"{direction.feature} is not a model input")
    _, test = source_split
    low = scores(trained, test.assign(**{direction.feature: direction.from_}), params)
    high = scores(trained, test.assign(**{direction.feature: direction.to}), params)
    assert high.mean() > low.mean()
    assert (high > low).mean() >= 0.9
