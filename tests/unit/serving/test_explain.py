from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from credit_risk.config import Params
from credit_risk.model import model_features
from credit_risk.serving.explain import MAX_EXACT_FEATURES, ShapleyExplainer
from credit_risk.train import explain_background, fit


@pytest.fixture(scope="module")
def explainer(trained, source_split, params: Params) -> ShapleyExplainer:
    return ShapleyExplainer(
        trained, explain_background(source_split[0], params), model_features(params.train)
    )


def log_odds(pipeline, row: pd.DataFrame) -> float:
    p = pipeline.predict_proba(row)[0, 1]
    return float(np.log(p / (1 - p)))


def test_contributions_add_up_to_the_score(explainer, trained, source_split, params) -> None:
    row = source_split[1][model_features(params.train)].head(1)
    explanation = explainer.explain(row)
    assert explanation.log_odds == pytest.approx(log_odds(trained, row), abs=1e-9)
    total = sum(explanation.contributions.values())
    assert total == pytest.approx(explanation.log_odds - explanation.baseline_log_odds, abs=1e-9)


def test_linear_model_matches_the_closed_form(source_split, params: Params) -> None:
    """For logistic regression, a feature's Shapley value is its terms' w * (x - mean x)."""
    train, test = source_split
    linear = params.model_copy(
        update={
            "train": params.train.model_copy(
                update={
                    "model": "logistic_regression",
                    "calibration": params.train.calibration.model_copy(update={"method": "none"}),
                }
            )
        }
    )
    pipeline = fit(train, linear)
    features = model_features(linear.train)
    explainer = ShapleyExplainer(pipeline, explain_background(train, linear), features)
    row = test[features].iloc[[3]]
    explanation = explainer.explain(row)
    preprocess = pipeline.named_steps["preprocess"]
    weights = pipeline.named_steps["classifier"].coef_[0]
    x = preprocess.transform(row)[0]
    mean = preprocess.transform(explainer.background).mean(axis=0)
    names = preprocess.get_feature_names_out()
    for feature, value in explanation.contributions.items():
        mask = np.array([n == feature or n.startswith(f"{feature}_") for n in names])
        assert value == pytest.approx(float(weights[mask] @ (x[mask] - mean[mask])), abs=1e-9)


def test_a_tree_model_is_explained_too(source_split, params: Params) -> None:
    train, test = source_split
    uncalibrated = params.train.calibration.model_copy(update={"method": "none"})
    forest = params.model_copy(
        update={
            "train": params.train.model_copy(
                update={"model": "hist_gradient_boosting", "calibration": uncalibrated}
            )
        }
    )
    pipeline = fit(train, forest)
    features = model_features(forest.train)
    explanation = ShapleyExplainer(pipeline, explain_background(train, forest), features).explain(
        test[features].head(1)
    )
    total = sum(explanation.contributions.values())
    assert total == pytest.approx(explanation.log_odds - explanation.baseline_log_odds, abs=1e-9)


def test_feature_equal_to_every_background_row_contributes_nothing(explainer, params) -> None:
    row = explainer.background.head(1).copy()
    feature = explainer.features[0]
    constant = explainer.background.assign(**{feature: row[feature].iloc[0]})
    local = ShapleyExplainer(explainer.pipeline, constant, explainer.features)
    assert local.explain(row).contributions[feature] == pytest.approx(0.0, abs=1e-12)


def test_an_empty_background_is_a_clear_error(trained, params: Params) -> None:
    features = model_features(params.train)
    with pytest.raises(ValueError, match="background sample is empty"):
        ShapleyExplainer(trained, pd.DataFrame(columns=features), features)


def wide_model(features: int) -> tuple[Pipeline, pd.DataFrame]:
    """A logistic regression on ``features`` numeric columns (more than exact enumeration takes)."""
    rng = np.random.default_rng(0)
    names = [f"x {i}" for i in range(features)]
    frame = pd.DataFrame(rng.normal(size=(400, features)), columns=names)
    labels = (frame.to_numpy() @ rng.normal(size=features) + rng.normal(size=400) > 0).astype(int)
    pipeline = Pipeline(
        [("preprocess", ColumnTransformer([("numeric", StandardScaler(), names)])),
         ("classifier", LogisticRegression())]
    ).fit(frame, labels)  # fmt: skip
    return pipeline, frame


def test_many_features_are_explained_by_sampling_and_still_add_up() -> None:
    pipeline, frame = wide_model(MAX_EXACT_FEATURES + 8)
    explainer = ShapleyExplainer(pipeline, frame.head(50), list(frame.columns))
    row = frame.iloc[[300]]
    explanation = explainer.explain(row)
    assert "estimated from" in explanation.method
    total = sum(explanation.contributions.values())
    assert explanation.log_odds == pytest.approx(log_odds(pipeline, row), abs=1e-9)
    assert total == pytest.approx(explanation.log_odds - explanation.baseline_log_odds, abs=1e-9)
    # For a linear model every ordering gives the closed form, so the estimate is exact too.
    preprocess, weights = pipeline.named_steps["preprocess"], pipeline[-1].coef_[0]
    expected = weights * (
        preprocess.transform(row)[0] - preprocess.transform(frame.head(50)).mean(0)
    )
    np.testing.assert_allclose(list(explanation.contributions.values()), expected, atol=1e-9)
    assert explainer.explain(row) == explanation  # seeded: the same every time


def test_up_to_the_limit_the_values_are_exact() -> None:
    pipeline, frame = wide_model(MAX_EXACT_FEATURES)
    explanation = ShapleyExplainer(pipeline, frame.head(20), list(frame.columns)).explain(
        frame.iloc[[300]]
    )
    assert explanation.method.startswith("exact")
