"""The model: a scikit-learn Pipeline of preprocessing and classifier, built from params."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.base import ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from credit_risk.config import Train
from credit_risk.schema import POSITIVE_CLASS, column_specs, feature_columns

MODEL_FILE, INFO_FILE, BACKGROUND_FILE = "model.joblib", "model.json", "background.parquet"


@dataclass(frozen=True)
class ModelFiles:
    """The three files a trained model is: the pipeline, its info (features, threshold) and
    the explanation background; in models/, a BentoML model, or a registry version's run."""

    model: Path
    info: Path
    background: Path

    @classmethod
    def in_folder(cls, folder: Path) -> ModelFiles:
        return cls(folder / MODEL_FILE, folder / INFO_FILE, folder / BACKGROUND_FILE)

    def all(self) -> tuple[Path, Path, Path]:
        return (self.model, self.info, self.background)


def model_features(config: Train) -> list[str]:
    """The contract's features that the model uses (all but the dropped ones)."""
    return [name for name in feature_columns() if name not in config.drop_features]


def _classifier(config: Train) -> ClassifierMixin:
    """The chosen estimator, wrapped in its probability calibration unless that is ``none``."""
    params: dict[str, Any] = config.model_params()
    estimator: type[ClassifierMixin] = config.chosen().estimator
    classifier = estimator(random_state=config.seed, **params)
    calibration = config.calibration
    if calibration.method == "none":
        return classifier
    # ensemble=False: one model fitted on all rows, mapped by a calibrator fitted on the
    # out-of-fold predictions; scores keep the model's ranking and explanations stay about it.
    folds = StratifiedKFold(n_splits=calibration.folds, shuffle=True, random_state=config.seed)
    calibrated: ClassifierMixin = CalibratedClassifierCV(
        classifier, method=calibration.method, cv=folds, ensemble=False
    )
    return calibrated


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
