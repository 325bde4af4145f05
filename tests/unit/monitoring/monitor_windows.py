"""Windows of logged predictions for the monitor's tests: synthetic rows scored by the model,
with outcomes, judged by the monitor's core (no files)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from credit_risk.config import CategoricalShift, NumericShift, Params
from credit_risk.monitoring.drift import compare
from credit_risk.monitoring.job import monitor
from credit_risk.monitoring.simulate import Model, scored
from credit_risk.schema import column_specs, outcome_names, positive_labels
from credit_risk.synthetic import Shift, generate

WINDOW = (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 8, tzinfo=UTC))


def logged(
    frame: pd.DataFrame, model: Model, version: str = "drill", prefix: str = "r"
) -> pd.DataFrame:
    """Rows as read back from the prediction log: features, ids, probability, decision, and
    the model version that scored them (request ids start with ``prefix``)."""
    probabilities, decisions = scored(frame, model)
    return frame.assign(
        request_id=[f"{prefix}{number}" for number in range(len(frame))],
        row=0,
        model_version=version,
        probability=probabilities,
        decision=decisions,
    )


def outcomes_of(
    frame: pd.DataFrame, flip: float = 0.0, seed: int = 0, prefix: str = "r"
) -> pd.DataFrame:
    """Every row's true outcome in the contract's words; ``flip`` of them turned over."""
    labels = positive_labels(frame).to_numpy().copy()
    turned = pd.Series(range(len(frame))).sample(frac=flip, random_state=seed).to_numpy()
    labels[turned] = 1 - labels[turned]
    names = outcome_names()
    return pd.DataFrame(
        {
            "request_id": [f"{prefix}{number}" for number in range(len(frame))],
            "row": 0,
            "outcome": [names[int(label)] for label in labels],
        }
    )


@dataclass(frozen=True)
class Judge:
    """The monitor's verdict on a window of rows (scored by the model, outcomes attached)."""

    params: Params
    model: Model
    reference: pd.DataFrame
    baseline: dict[str, float]

    def __call__(
        self, frame: pd.DataFrame, flip: float = 0.0, outcomes: bool = True, seed: int = 0
    ) -> dict[str, Any]:
        known = outcomes_of(frame, flip, seed) if outcomes else None
        threshold = float(self.model.info["decision_threshold"])
        return monitor(
            self.params,
            logged(frame, self.model),
            known,
            self.reference,
            self.baseline,
            threshold,
            WINDOW,
        )


@dataclass(frozen=True)
class Served:
    """The rows one model version scored in a window, and how many of their outcomes are
    known (the first ``outcomes`` rows; None: all), ``flip`` of those turned over."""

    frame: pd.DataFrame
    flip: float = 0.0
    outcomes: int | None = None


def judge_versions(
    judge: Judge,
    served: Mapping[str, Served],
    baseline_version: str | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """The monitor's verdict on one window that several model versions served (the same
    model scores every version's rows: what differs is how their outcomes turned out)."""
    predictions, outcomes = [], []
    for number, (version, part) in enumerate(served.items()):
        prefix = f"v{number}-"
        predictions.append(logged(part.frame, judge.model, version, prefix))
        known = outcomes_of(part.frame, part.flip, seed, prefix)
        outcomes.append(known if part.outcomes is None else known.head(part.outcomes))
    return monitor(
        judge.params,
        pd.concat(predictions, ignore_index=True),
        pd.concat(outcomes, ignore_index=True),
        judge.reference,
        judge.baseline,
        float(judge.model.info["decision_threshold"]),
        WINDOW,
        baseline_version=baseline_version,
    )


def drill_shift(source: pd.DataFrame, numeric: str, categorical: str) -> dict[str, Shift]:
    """Half a standard deviation onto ``numeric``; half the commonest category's rows of
    ``categorical`` given to its rarest (taken from the data, not from the example's names)."""
    spread = float(source[numeric].std())
    step = spread / 2
    if column_specs()[numeric].python_type is int:
        step = max(1.0, round(step))
    shares = source[categorical].astype(str).value_counts(normalize=True)
    weights = {str(name): float(share) for name, share in shares.items()}
    common, rare = str(shares.index[0]), str(shares.index[-1])
    weights[rare] += weights[common] / 2
    weights[common] /= 2
    return {numeric: NumericShift(add=step), categorical: CategoricalShift(weights=weights)}


def moved_with(source: pd.DataFrame, shift: dict[str, Shift], params: Params) -> set[str]:
    """The features a shift really moves beyond their effect threshold, measured between
    100,000 shifted and 100,000 unshifted rows. Reweighting a category's rows also moves the
    features correlated with it (a real drift, which the monitor should report)."""
    plain = generate(source, 100_000, seed=11)
    shifted = generate(source, 100_000, seed=12, shift=shift)
    found = compare(plain, shifted, params.monitor.drift)
    return {f.feature for f in found.features if f.effect >= f.effect_threshold}
