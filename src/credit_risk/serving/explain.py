"""Explaining one score: each feature's additive contribution to the log-odds of bad risk.

Method: exact interventional Shapley values. Every coalition of features is evaluated, with the
features outside the coalition taken from a fixed background sample of training rows, so the
contributions add up exactly to (log-odds of this applicant) - (mean log-odds of the
background). It works for any model type the pipeline trains, is deterministic, and needs no
extra dependency; with the contract's eight model features it costs 2^8 coalitions x the
background rows in one vectorised prediction. (SHAP's library computes the same quantity but
brings numba and llvmlite into the service image; for a handful of features exact enumeration
is cheaper than its sampling.)
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from math import factorial

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from credit_risk.model import positive_column

MAX_EXACT_FEATURES = 12  # 4,096 coalitions; beyond this exact enumeration gets too slow
EPSILON = 1e-12


@dataclass(frozen=True)
class Explanation:
    baseline_log_odds: float
    log_odds: float
    contributions: dict[str, float]  # feature -> contribution to the log-odds


def _log_odds(probability: np.ndarray) -> np.ndarray:
    clipped = np.clip(probability, EPSILON, 1 - EPSILON)
    return np.log(clipped / (1 - clipped))


class ShapleyExplainer:
    """Exact Shapley values of a fitted pipeline's log-odds, against a background sample."""

    def __init__(self, pipeline: Pipeline, background: pd.DataFrame, features: list[str]) -> None:
        if len(features) > MAX_EXACT_FEATURES:
            raise ValueError(
                f"exact explanations support at most {MAX_EXACT_FEATURES} features, "
                f"the model uses {len(features)}"
            )
        if background.empty:
            raise ValueError("the explanation background sample is empty")
        self.pipeline = pipeline
        self.features = list(features)
        self.background = background[self.features].reset_index(drop=True)
        self.positive = positive_column(pipeline)
        n = len(self.features)
        # Every coalition as a boolean mask over the features, and each one's Shapley weight
        # for "feature j joins coalition S": |S|! (n - |S| - 1)! / n!.
        self.coalitions = np.array(
            [
                [j in subset for j in range(n)]
                for size in range(n + 1)
                for subset in combinations(range(n), size)
            ]
        )
        sizes = self.coalitions.sum(axis=1)
        self.weights = np.array(
            [factorial(s) * factorial(n - s - 1) / factorial(n) if s < n else 0.0 for s in sizes]
        )
        self.index = {tuple(mask): i for i, mask in enumerate(self.coalitions)}

    def _coalition_values(self, applicant: pd.DataFrame) -> np.ndarray:
        """Mean log-odds over the background for each coalition (its features from applicant)."""
        rows, b = len(self.coalitions), len(self.background)
        grid = pd.concat([self.background] * rows, ignore_index=True)
        chosen = np.repeat(self.coalitions, b, axis=0)
        for j, feature in enumerate(self.features):
            grid.loc[chosen[:, j], feature] = applicant[feature].iloc[0]
        probability = self.pipeline.predict_proba(grid)[:, self.positive]
        return _log_odds(probability).reshape(rows, b).mean(axis=1)

    def explain(self, applicant: pd.DataFrame) -> Explanation:
        """Contributions for the single row in ``applicant``."""
        values = self._coalition_values(applicant)
        contributions = {}
        for j, feature in enumerate(self.features):
            without = ~self.coalitions[:, j]
            joined = self.coalitions[without].copy()
            joined[:, j] = True
            with_j = np.array([values[self.index[tuple(mask)]] for mask in joined])
            gain = with_j - values[without]
            contributions[feature] = float(np.dot(self.weights[without], gain))
        full = values[self.index[tuple([True] * len(self.features))]]
        empty = values[self.index[tuple([False] * len(self.features))]]
        return Explanation(float(empty), float(full), contributions)
