from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from credit_risk.config import Params
from credit_risk.model import model_features
from credit_risk.serving.explain import ShapleyExplainer
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


def test_linear_model_matches_the_closed_form(explainer, trained, source_split, params) -> None:
    """For logistic regression, a feature's Shapley value is its terms' w * (x - mean x)."""
    row = source_split[1][model_features(params.train)].iloc[[3]]
    explanation = explainer.explain(row)
    preprocess = trained.named_steps["preprocess"]
    weights = trained.named_steps["classifier"].coef_[0]
    x = preprocess.transform(row)[0]
    mean = preprocess.transform(explainer.background).mean(axis=0)
    names = preprocess.get_feature_names_out()
    for feature, value in explanation.contributions.items():
        mask = np.array([n == feature or n.startswith(f"{feature}_") for n in names])
        assert value == pytest.approx(float(weights[mask] @ (x[mask] - mean[mask])), abs=1e-9)


def test_a_tree_model_is_explained_too(source_split, params: Params) -> None:
    train, test = source_split
    forest = params.model_copy(
        update={"train": params.train.model_copy(update={"model": "hist_gradient_boosting"})}
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
    constant = explainer.background.assign(job=row["job"].iloc[0])
    local = ShapleyExplainer(explainer.pipeline, constant, explainer.features)
    assert local.explain(row).contributions["job"] == pytest.approx(0.0, abs=1e-12)


def test_limits_are_clear_errors(trained, params: Params) -> None:
    with pytest.raises(ValueError, match="background sample is empty"):
        ShapleyExplainer(trained, pd.DataFrame(columns=["age"]), ["age"])
    with pytest.raises(ValueError, match="at most 12 features"):
        ShapleyExplainer(
            trained, pd.DataFrame({f"f{i}": [1] for i in range(13)}), [f"f{i}" for i in range(13)]
        )
