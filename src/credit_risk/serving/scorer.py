"""Scoring with a trained model: the part of the service that knows nothing about HTTP.

A ``Scorer`` is built from the three files the train stage writes (the pipeline, its info and
the explanation background), wherever they are: ``models/`` or a BentoML model directory.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any, cast

import joblib
import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from credit_risk.model import (
    BACKGROUND_FILE,
    INFO_FILE,
    MODEL_FILE,
    ModelFiles,
    positive_column,
)
from credit_risk.schema import contract
from credit_risk.serving.encoder import RowEncoder
from credit_risk.serving.explain import Explanation, ShapleyExplainer

log = logging.getLogger("bentoml.credit_risk")
# The fast path must reproduce the pipeline's probabilities to this absolute difference on the
# reference rows, or scoring goes through the pipeline itself. Both compute the same floating
# point operations in the same order, so a correct encoder agrees to the last bit or so.
PARITY_TOLERANCE = 1e-9
__all__ = ["BACKGROUND_FILE", "INFO_FILE", "MODEL_FILE", "ModelFiles", "Scorer"]


class Scorer:
    """Probability of the positive outcome, the decision, and explanations, for valid records."""

    def __init__(self, pipeline: Pipeline, info: dict[str, Any], background: pd.DataFrame) -> None:
        self.pipeline = pipeline
        self.features: list[str] = list(info["features"])
        self.threshold = float(info["decision_threshold"])
        self.positive = positive_column(pipeline)
        decisions = contract().decisions
        self.positive_decision = decisions.at_or_above_threshold
        self.negative_decision = decisions.below_threshold
        self.explainer = ShapleyExplainer(pipeline, background, self.features)
        self.classifier = pipeline.steps[-1][1]
        self.encoder = self._checked_encoder(background)

    def _checked_encoder(self, reference: pd.DataFrame) -> RowEncoder | None:
        """The numpy fast path, if it reproduces the pipeline on the reference rows."""
        encoder, reason = RowEncoder.from_pipeline(self.pipeline)
        if encoder is not None:
            rows = cast(list[dict[str, Any]], reference[self.features].to_dict("records"))
            try:
                fast = self.classifier.predict_proba(encoder.encode(rows))[:, self.positive]
                gap = float(np.max(np.abs(fast - self.probabilities(self.frame(rows)))))
            except (ValueError, KeyError, TypeError) as problem:
                encoder, reason = None, f"the fast path failed on the reference rows: {problem}"
            else:
                if not gap <= PARITY_TOLERANCE:
                    encoder = None
                    reason = f"the fast path differs from the pipeline by {gap:.3g} (> "
                    reason += f"{PARITY_TOLERANCE:g}) on the reference rows"
        if encoder is None:
            log.warning(json.dumps({"event": "scoring_through_pipeline", "reason": reason}))
        return encoder

    @classmethod
    def load(cls, files: ModelFiles) -> Scorer:
        info = json.loads(files.info.read_text(encoding="utf-8"))
        return cls(joblib.load(files.model), info, pd.read_parquet(files.background))

    def frame(self, records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
        """The model's input table for already-validated records."""
        return pd.DataFrame.from_records(list(records), columns=self.features)

    def probabilities(self, frame: pd.DataFrame) -> np.ndarray:
        return self.pipeline.predict_proba(frame[self.features])[:, self.positive]

    def score(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Probability of the positive outcome per record: the checked fast path, if any."""
        if self.encoder is None:
            return self.probabilities(self.frame(records))
        return self.classifier.predict_proba(self.encoder.encode(records))[:, self.positive]

    def decisions(self, probabilities: np.ndarray) -> list[str]:
        above, below = self.positive_decision, self.negative_decision
        return [above if p >= self.threshold else below for p in probabilities]

    def explain(self, record: dict[str, Any]) -> Explanation:
        return self.explainer.explain(self.frame([record]))
