"""A prediction log without a service: synthetic rows scored by a model, written as the service
writes them, with outcomes for a share of them. For drift drills, the benchmark, and trying
`make monitor` on a fresh clone::

    python -m credit_risk.monitoring.simulate --rows 5000 --seed 1 --out /tmp/log \\
        --outcomes 0.3 --shift '{"age": {"add": 8}}'
    make monitor LOG=/tmp/log

Rows come from `credit_risk.synthetic` (resampled from the source data, optionally shifted),
are scored by the pipeline's model (models/), and are written through the log's own writer
(`predictions.PredictionWriter`) as /score_batch requests, spread evenly over the days before
now. Outcomes are the rows' true outcomes (``flip`` turns a share of them over, to drill a
drop in quality), stored through `predictions.record_outcomes`.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from credit_risk.config import Params, load_params
from credit_risk.errors import ConfigError
from credit_risk.model import predict_positive
from credit_risk.monitoring.predictions import (
    Outcome,
    PredictionWriter,
    logged_features,
    record_outcomes,
)
from credit_risk.schema import POSITIVE_CLASS, contract, outcome_names, positive_labels
from credit_risk.stage import run
from credit_risk.synthetic import Shift, generate, load_source, parse_shift

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Model:
    """A fitted pipeline and its info (features, decision threshold)."""

    pipeline: Any
    info: dict[str, Any]

    @classmethod
    def of_pipeline(cls, params: Params) -> Model:
        info = json.loads(params.paths.model_info.read_text(encoding="utf-8"))
        return cls(joblib.load(params.paths.model), info)


def scored(rows: pd.DataFrame, model: Model) -> tuple[np.ndarray, list[str]]:
    """Probabilities and decisions (the contract's words) as the service gives them."""
    probabilities = predict_positive(model.pipeline, rows[model.info["features"]]).to_numpy()
    words = contract().decisions
    threshold = float(model.info["decision_threshold"])
    decisions = np.where(
        probabilities >= threshold, words.at_or_above_threshold, words.below_threshold
    )
    return probabilities, decisions.tolist()


def write_log(
    folder: Path,
    rows: pd.DataFrame,
    model: Model,
    features: list[str],
    end: datetime,
    days: float = 1.0,
    batch: int = 1000,
    model_version: str = "simulated",
    prefix: str = "sim",
) -> pd.DataFrame:
    """Write ``rows`` as /score_batch requests of ``batch`` rows, spread over ``days`` before
    ``end``; return request_id, row and time of each logged row (in ``rows``' order)."""
    probabilities, decisions = scored(rows, model)
    records: list[dict[str, Any]] = rows[features].to_dict("records")  # type: ignore[assignment]
    writer = PredictionWriter(folder, features, writer_id=f"simulated-{model_version}")
    starts = range(0, len(rows), batch)
    step = timedelta(days=days) / max(len(starts), 1)
    keys = []
    try:
        for number, start in enumerate(starts):
            request_id = f"{prefix}-{number:08d}"
            moment = end - timedelta(days=days) + number * step
            stop = min(start + batch, len(rows))
            writer.write(
                request_id,
                "/score_batch",
                model_version,
                records[start:stop],
                probabilities[start:stop],
                decisions[start:stop],
                now=moment,
            )
            keys += [(request_id, row, moment) for row in range(stop - start)]
    finally:
        writer.close()
    return pd.DataFrame(keys, columns=["request_id", "row", "time"])


def write_outcomes(
    folder: Path,
    keys: pd.DataFrame,
    labels: pd.Series,
    share: float,
    flip: float,
    seed: int,
    now: datetime,
) -> int:
    """Store the true outcome of a random ``share`` of the logged rows (``flip`` of them turned
    over); return how many were stored."""
    if share <= 0:
        return 0
    rng = np.random.default_rng(seed)
    chosen = np.flatnonzero(rng.random(len(keys)) < share)
    names = outcome_names()
    values = labels.to_numpy()[chosen]
    turned = rng.random(len(chosen)) < flip
    values = np.where(turned, 1 - values, values)
    request_ids = keys["request_id"].to_numpy()[chosen]
    places = keys["row"].to_numpy()[chosen]
    outcomes = [
        Outcome(str(request_id), names[int(value)], int(place))
        for request_id, place, value in zip(request_ids, places, values, strict=True)
    ]
    if not outcomes:
        return 0
    return record_outcomes(folder, outcomes, max_age_days=3650, now=now)


def simulate(
    params: Params,
    folder: Path,
    rows: int,
    seed: int,
    shift: dict[str, Shift] | None = None,
    outcomes: float = 0.0,
    flip: float = 0.0,
    days: float = 1.0,
    model: Model | None = None,
    source: pd.DataFrame | None = None,
    end: datetime | None = None,
) -> pd.DataFrame:
    """Generate, score and log ``rows`` rows ending ``end`` (default now); return the rows."""
    for name, share in (("outcomes", outcomes), ("flip", flip)):
        if not 0.0 <= share <= 1.0:
            raise ConfigError(f"{name}: a share between 0 and 1 (got {share})")
    if days <= 0:
        raise ConfigError(f"days: more than 0 (got {days})")
    model = model or Model.of_pipeline(params)
    source = source if source is not None else load_source(params.ingest.file)
    end = end or datetime.now(UTC)
    frame = generate(source, rows, seed, shift)
    logged = params.serve.prediction_log
    features = logged_features(params.evaluate.protected_attributes, logged.keep_attributes)
    keys = write_log(folder, frame, model, features, end, days, prefix=f"sim{seed}")
    write_outcomes(folder, keys, positive_labels(frame), outcomes, flip, seed, end)
    return frame


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m credit_risk.monitoring.simulate", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True, help="the log folder to write")
    parser.add_argument("--shift", default="{}", help="as for credit_risk.synthetic")
    parser.add_argument("--outcomes", type=float, default=0.0, help="share with an outcome")
    parser.add_argument("--flip", type=float, default=0.0, help="share of outcomes turned over")
    parser.add_argument("--days", type=float, default=1.0, help="spread over this many days")
    args = parser.parse_args()
    frame = simulate(
        load_params(),
        args.out,
        args.rows,
        args.seed,
        parse_shift(args.shift),
        args.outcomes,
        args.flip,
        args.days,
    )
    share = 100 * float((positive_labels(frame) == POSITIVE_CLASS).mean())
    log.info("logged %d predictions (%.1f%% positive outcome) in %s", len(frame), share, args.out)


if __name__ == "__main__":
    run("simulate", main)
