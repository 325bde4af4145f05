"""Model behaviour: minimum quality, invariance to what must not matter, expected directions."""

from __future__ import annotations

import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from credit_risk.config import Params
from credit_risk.model import model_features, predict_bad_risk
from credit_risk.schema import bad_risk

MIN_ROC_AUC = 0.70


def scores(pipeline, frame: pd.DataFrame, params: Params) -> pd.Series:
    return predict_bad_risk(pipeline, frame[model_features(params.train)])


def test_minimum_quality_on_held_out_rows(trained, german_split, params: Params) -> None:
    _, test = german_split
    assert roc_auc_score(bad_risk(test), scores(trained, test, params)) >= MIN_ROC_AUC


def test_sex_does_not_change_any_score(trained, german_split, params: Params) -> None:
    """Sex is a protected attribute: swapping it must leave every score exactly as it was."""
    _, test = german_split
    swapped = test.assign(sex=test["sex"].map({"male": "female", "female": "male"}))
    pd.testing.assert_series_equal(
        predict_bad_risk(trained, swapped), predict_bad_risk(trained, test)
    )


def test_row_order_does_not_change_scores(trained, german_split, params: Params) -> None:
    _, test = german_split
    shuffled = test.sample(frac=1.0, random_state=0)
    pd.testing.assert_series_equal(
        scores(trained, shuffled, params).sort_index(), scores(trained, test, params)
    )


@pytest.mark.parametrize(
    ("column", "safer", "riskier"),
    [
        ("duration", 12, 48),
        ("checking_account", "not_known", "little"),
        ("saving_accounts", "rich", "little"),
    ],
)
def test_riskier_terms_raise_the_score(
    trained, german_split, params: Params, column: str, safer: object, riskier: object
) -> None:
    """The same applicants, changed in one way that lending experience says is riskier."""
    _, test = german_split
    low = scores(trained, test.assign(**{column: safer}), params)
    high = scores(trained, test.assign(**{column: riskier}), params)
    assert high.mean() > low.mean()
    assert (high > low).mean() >= 0.9
