from __future__ import annotations

import numpy as np
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler

from credit_risk.config import Params
from credit_risk.model import model_features
from credit_risk.schema import positive_labels
from credit_risk.serving.encoder import RowEncoder
from credit_risk.serving.scorer import Scorer
from credit_risk.train import explain_background, model_info


def test_encoder_matches_the_pipeline(source_split, each_model) -> None:
    _, test = source_split
    chosen, pipeline = each_model
    encoder = RowEncoder.from_pipeline(pipeline)
    assert encoder is not None
    features = model_features(chosen.train)
    expected = pipeline.named_steps["preprocess"].transform(test[features])
    np.testing.assert_array_equal(encoder.encode(test[features].to_dict("records")), expected)


def test_unknown_category_is_a_clear_error(trained, source_split, params: Params) -> None:
    encoder = RowEncoder.from_pipeline(trained)
    row = source_split[1].drop(columns="risk").iloc[0].to_dict() | {"housing": "castle"}
    with pytest.raises(ValueError, match="housing: unknown category 'castle'"):
        encoder.encode([row])


def test_other_preprocessing_falls_back_to_the_pipeline(source_split, params: Params) -> None:
    train, test = source_split
    numeric = ["age", "duration", "credit_amount"]
    pipeline = Pipeline(
        [
            ("preprocess", ColumnTransformer([("numeric", MinMaxScaler(), numeric)])),
            ("classifier", LogisticRegression()),
        ]
    ).fit(train[numeric], positive_labels(train))
    assert RowEncoder.from_pipeline(pipeline) is None
    info = model_info(params, len(train), "x") | {"features": numeric}
    scorer = Scorer(pipeline, info, explain_background(train, params)[numeric])
    rows = test[numeric].head(10).to_dict("records")
    np.testing.assert_allclose(
        scorer.score(rows), pipeline.predict_proba(test[numeric].head(10))[:, 1]
    )
