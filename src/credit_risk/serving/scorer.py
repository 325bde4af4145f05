"""Scoring with a trained model: the part of the service that knows nothing about HTTP.

A ``Scorer`` is built from the three files the train stage writes (the pipeline, its info and
the explanation background), wherever they are: ``models/`` or a BentoML model directory.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import joblib
import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from credit_risk.model import positive_column
from credit_risk.serving.encoder import RowEncoder
from credit_risk.serving.explain import Explanation, ShapleyExplainer

Decision = Literal["approve", "decline"]
MODEL_FILE, INFO_FILE, BACKGROUND_FILE = "model.joblib", "model.json", "background.parquet"


@dataclass(frozen=True)
class ModelFiles:
    model: Path
    info: Path
    background: Path

    @classmethod
    def in_folder(cls, folder: Path) -> ModelFiles:
        return cls(folder / MODEL_FILE, folder / INFO_FILE, folder / BACKGROUND_FILE)


class Scorer:
    """Probability of bad risk, the decision, and explanations, for validated applicants."""

    def __init__(self, pipeline: Pipeline, info: dict[str, Any], background: pd.DataFrame) -> None:
        self.pipeline = pipeline
        self.features: list[str] = list(info["features"])
        self.threshold = float(info["decision_threshold"])
        self.positive = positive_column(pipeline)
        self.explainer = ShapleyExplainer(pipeline, background, self.features)
        self.encoder = RowEncoder.from_pipeline(pipeline)
        self.classifier = pipeline.steps[-1][1]

    @classmethod
    def load(cls, files: ModelFiles) -> Scorer:
        info = json.loads(files.info.read_text(encoding="utf-8"))
        return cls(joblib.load(files.model), info, pd.read_parquet(files.background))

    def frame(self, applicants: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
        """The model's input table for already-validated applicants."""
        return pd.DataFrame.from_records(list(applicants), columns=self.features)

    def probabilities(self, frame: pd.DataFrame) -> np.ndarray:
        return self.pipeline.predict_proba(frame[self.features])[:, self.positive]

    def score(self, applicants: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Probability of bad risk per applicant: the numpy encoder when the pipeline allows it."""
        if self.encoder is None:
            return self.probabilities(self.frame(applicants))
        return self.classifier.predict_proba(self.encoder.encode(applicants))[:, self.positive]

    def decisions(self, probabilities: np.ndarray) -> list[Decision]:
        return ["decline" if p >= self.threshold else "approve" for p in probabilities]

    def explain(self, applicant: dict[str, Any]) -> Explanation:
        return self.explainer.explain(self.frame([applicant]))
