"""Explaining one score: each feature's additive contribution to the log-odds of bad risk.

Method: interventional Shapley values. The features outside a coalition are taken from a fixed
background sample of training rows, so the contributions add up exactly to (log-odds of this
record) - (mean log-odds of the background). Up to MAX_EXACT_FEATURES features every coalition
is evaluated (2^n coalitions x the background rows, in one vectorised prediction). Beyond that,
the values are estimated from a fixed, seeded set of feature orderings (each ordering adds the
features one by one; a feature's contribution is the change it makes), which still adds up
exactly, is deterministic, and costs orderings x (n + 1) coalitions. It works for any model type
the pipeline trains and needs no extra dependency. (SHAP's library computes the same quantity
but brings numba and llvmlite into the service image.)
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
SAMPLED_ORDERINGS = 64  # half of them the reverse of the other half (antithetic pairs)
ORDERING_SEED = 0
EPSILON = 1e-12
EXACT = "exact interventional Shapley values of the log-odds"
SAMPLED = (
    f"interventional Shapley values of the log-odds, estimated from {SAMPLED_ORDERINGS} "
    "feature orderings (contributions still add up exactly)"
)


@dataclass(frozen=True)
class Explanation:
    baseline_log_odds: float
    log_odds: float
    contributions: dict[str, float]  # feature -> contribution to the log-odds
    method: str


def _log_odds(probability: np.ndarray) -> np.ndarray:
    clipped = np.clip(probability, EPSILON, 1 - EPSILON)
    return np.log(clipped / (1 - clipped))


class ShapleyExplainer:
    """Shapley values of a fitted pipeline's log-odds, against a background sample."""

    def __init__(self, pipeline: Pipeline, background: pd.DataFrame, features: list[str]) -> None:
        if background.empty:
            raise ValueError("the explanation background sample is empty")
        self.pipeline = pipeline
        self.features = list(features)
        self.background = background[self.features].reset_index(drop=True)
        self.positive = positive_column(pipeline)
        n = len(self.features)
        self.exact = n <= MAX_EXACT_FEATURES
        if not self.exact:
            rng = np.random.default_rng(ORDERING_SEED)
            half = [rng.permutation(n) for _ in range(SAMPLED_ORDERINGS // 2)]
            self.orderings = np.array(half + [ordering[::-1] for ordering in half])
            return
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

    def _coalition_values(self, applicant: pd.DataFrame, coalitions: np.ndarray) -> np.ndarray:
        """Mean log-odds over the background for each coalition (its features from applicant)."""
        rows, b = len(coalitions), len(self.background)
        grid = pd.concat([self.background] * rows, ignore_index=True)
        chosen = np.repeat(coalitions, b, axis=0)
        for j, feature in enumerate(self.features):
            grid.loc[chosen[:, j], feature] = applicant[feature].iloc[0]
        probability = self.pipeline.predict_proba(grid)[:, self.positive]
        return _log_odds(probability).reshape(rows, b).mean(axis=1)

    def explain(self, applicant: pd.DataFrame) -> Explanation:
        """Contributions for the single row in ``applicant``."""
        if not self.exact:
            return self._sampled(applicant)
        values = self._coalition_values(applicant, self.coalitions)
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
        return Explanation(float(empty), float(full), contributions, EXACT)

    def _sampled(self, applicant: pd.DataFrame) -> Explanation:
        """Average marginal contributions over the fixed orderings."""
        n = len(self.features)
        # Ordering k's i-th coalition holds its first i features: (n + 1) per ordering.
        steps = np.arange(n + 1)[:, None] > np.arange(n)[None, :]  # row i: first i positions
        coalitions = np.zeros((len(self.orderings), n + 1, n), dtype=bool)
        for k, ordering in enumerate(self.orderings):
            coalitions[k][:, ordering] = steps
        values = self._coalition_values(applicant, coalitions.reshape(-1, n))
        values = values.reshape(len(self.orderings), n + 1)
        gains = np.diff(values, axis=1)  # gains[k, i]: adding ordering k's i-th feature
        totals = np.zeros(n)
        for k, ordering in enumerate(self.orderings):
            totals[ordering] += gains[k]
        contributions = totals / len(self.orderings)
        named = {feature: float(contributions[j]) for j, feature in enumerate(self.features)}
        return Explanation(float(values[0, 0]), float(values[0, -1]), named, SAMPLED)
