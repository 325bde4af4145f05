"""What the monitor's tests share: the model as the service runs it, the reference rows, the
evaluation's metrics, and the monitor's verdict on a window of rows (monitor_windows.Judge)."""

from __future__ import annotations

import json

import joblib
import pandas as pd
import pytest
from monitor_windows import Judge

from credit_risk.config import Params
from credit_risk.model import predict_positive
from credit_risk.monitoring.simulate import Model
from credit_risk.quality import classification_metrics
from credit_risk.schema import positive_labels
from credit_risk.serving.scorer import ModelFiles


@pytest.fixture(scope="session")
def model(model_files: ModelFiles) -> Model:
    info = json.loads(model_files.info.read_text(encoding="utf-8"))
    return Model(joblib.load(model_files.model), info)


@pytest.fixture(scope="session")
def reference(source_split: tuple[pd.DataFrame, pd.DataFrame]) -> pd.DataFrame:
    """The rows the model learned from: the monitor's reference."""
    return source_split[0]


@pytest.fixture(scope="session")
def baseline(model: Model, source_split: tuple[pd.DataFrame, pd.DataFrame]) -> dict[str, float]:
    """The evaluation's metrics: the model on the held-out rows."""
    test = source_split[1]
    scores = predict_positive(model.pipeline, test[model.info["features"]])
    return classification_metrics(
        positive_labels(test), scores, float(model.info["decision_threshold"])
    )


@pytest.fixture(scope="session")
def judge(
    params: Params, model: Model, reference: pd.DataFrame, baseline: dict[str, float]
) -> Judge:
    return Judge(params, model, reference, baseline)
