"""The numpy fast path: equal to the pipeline, checked at load, and never trusted blindly."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, MinMaxScaler

from credit_risk.config import Params
from credit_risk.model import model_features
from credit_risk.schema import positive_labels
from credit_risk.serving.encoder import RowEncoder
from credit_risk.serving.scorer import PARITY_TOLERANCE, Scorer
from credit_risk.train import explain_background, model_info


def test_encoder_matches_the_pipeline(source_split, each_model) -> None:
    _, test = source_split
    chosen, pipeline = each_model
    encoder, _ = RowEncoder.from_pipeline(pipeline)
    assert encoder is not None
    features = model_features(chosen.train)
    expected = pipeline.named_steps["preprocess"].transform(test[features])
    np.testing.assert_array_equal(encoder.encode(test[features].to_dict("records")), expected)


def test_unknown_category_is_a_clear_error(trained, source_split, params: Params, roles) -> None:
    encoder, _ = RowEncoder.from_pipeline(trained)
    assert encoder is not None
    category = next(c for c in roles.features("categorical") if c in model_features(params.train))
    unknown = roles.unknown_category(category)
    row = source_split[1].iloc[0].to_dict() | {category: unknown}
    with pytest.raises(ValueError, match=f"{category}: unknown category {unknown!r}"):
        encoder.encode([row])


def scorer_for(pipeline: Pipeline, features: list[str], source_split, params: Params) -> Scorer:
    train, _ = source_split
    info = model_info(params, len(train), "x") | {"features": features}
    return Scorer(pipeline, info, explain_background(train, params)[features])


def assert_falls_back(
    pipeline: Pipeline, features: list[str], source_split, params: Params, caplog, reason: str
) -> None:
    """The scorer refuses the fast path, says why, and scores exactly as the pipeline does."""
    with caplog.at_level(logging.WARNING, logger="bentoml.credit_risk"):
        scorer = scorer_for(pipeline, features, source_split, params)
    assert scorer.encoder is None and reason in caplog.text
    rows = source_split[1][features].head(20)
    np.testing.assert_allclose(
        scorer.score(rows.to_dict("records")), pipeline.predict_proba(rows)[:, 1], atol=1e-12
    )


def fitted(steps: list, source_split, features: list[str]) -> Pipeline:
    train, _ = source_split
    return Pipeline(steps).fit(train[features], positive_labels(train))


def test_other_preprocessing_falls_back_to_the_pipeline(
    source_split, params: Params, roles, caplog: pytest.LogCaptureFixture
) -> None:
    numeric = [name for name in roles.features("numeric") if name in model_features(params.train)]
    if not numeric:
        pytest.skip("no numeric feature")
    pipeline = fitted(
        [("preprocess", ColumnTransformer([("numeric", MinMaxScaler(), numeric)])),
         ("classifier", LogisticRegression())],
        source_split, numeric,
    )  # fmt: skip
    assert_falls_back(pipeline, numeric, source_split, params, caplog, "MinMaxScaler")


def test_an_extra_step_falls_back_and_still_scores_right(
    trained, source_split, params: Params, caplog: pytest.LogCaptureFixture
) -> None:
    features = model_features(params.train)
    doubled = Pipeline(
        [("preprocess", trained.named_steps["preprocess"]),
         ("double", FunctionTransformer(lambda x: 2 * x)),
         ("classifier", trained.named_steps["classifier"])]
    )  # fmt: skip
    assert_falls_back(doubled, features, source_split, params, caplog, "'double'")


def test_a_fast_path_that_disagrees_is_not_used(
    trained, source_split, params: Params, monkeypatch, caplog: pytest.LogCaptureFixture
) -> None:
    features = model_features(params.train)
    original = RowEncoder.encode
    monkeypatch.setattr(RowEncoder, "encode", lambda self, rows: original(self, rows) + 0.01)
    assert_falls_back(trained, features, source_split, params, caplog, "differs from the pipeline")


def test_every_model_type_keeps_the_checked_fast_path(source_split, each_model) -> None:
    """The parity check passes for every model type the pipeline trains, and the fast path then
    scores the held-out rows as the pipeline does, within the stated tolerance."""
    chosen, pipeline = each_model
    features = model_features(chosen.train)
    scorer = scorer_for(pipeline, features, source_split, chosen)
    assert scorer.encoder is not None
    rows = source_split[1][features]
    np.testing.assert_allclose(
        scorer.score(rows.to_dict("records")),
        pipeline.predict_proba(rows)[:, scorer.positive],
        rtol=0,
        atol=PARITY_TOLERANCE,
    )
