"""The model: a scikit-learn Pipeline of preprocessing and classifier, built from params."""

from __future__ import annotations

from typing import Any

import pandas as pd
from sklearn.base import ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from credit_risk.config import Train
from credit_risk.schema import POSITIVE_CLASS, column_specs, feature_columns


def model_features(config: Train) -> list[str]:
    """The contract's features that the model uses (all but the dropped ones)."""
    return [name for name in feature_columns() if name not in config.drop_features]


def _classifier(config: Train) -> ClassifierMixin:
    params: dict[str, Any] = config.model_params()
    estimator: type[ClassifierMixin] = config.chosen().estimator
    return estimator(random_state=config.seed, **params)


def build_pipeline(config: Train) -> Pipeline:
    """Scale numeric features, one-hot encode categorical ones, then classify.

    The encoder knows every category of the data contract, so a category that happens to be
    absent from the training rows is still a known input at prediction time.
    """
    specs = column_specs()
    features = model_features(config)
    numeric = [name for name in features if specs[name].kind == "numeric"]
    categorical = [name for name in features if specs[name].kind == "categorical"]
    categories = [list(specs[name].allowed or ()) for name in categorical]
    preprocess = ColumnTransformer(
        [
            ("numeric", StandardScaler(), numeric),
            (
                "categorical",
                OneHotEncoder(categories=categories, handle_unknown="error", sparse_output=False),
                categorical,
            ),
        ],
        verbose_feature_names_out=False,
    )
    return Pipeline([("preprocess", preprocess), ("classifier", _classifier(config))])


def positive_column(pipeline: Pipeline) -> int:
    """Which column of predict_proba holds the probability of the contract's positive outcome."""
    return list(pipeline.classes_).index(POSITIVE_CLASS)


def predict_positive(pipeline: Pipeline, frame: pd.DataFrame) -> pd.Series:
    """Probability of the contract's positive outcome for each row of ``frame``."""
    proba = pipeline.predict_proba(frame)[:, positive_column(pipeline)]
    return pd.Series(proba, index=frame.index, name="probability")
