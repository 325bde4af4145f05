"""Synthetic rows for any data contract: seeded resampling of the source data, with shifts.

Rows are drawn whole, with replacement, from the validated source file. Every column keeps its
real distribution, its relations to the other columns and to the outcome, so a model trained on
synthetic rows learns what it would learn from the real ones, and nothing here depends on what
the columns are. (Drawing each column from the contract's types and ranges alone would give an
outcome unrelated to the features: useless for training, scaling runs or drift drills.)

Shifts move the distribution, for drift drills and what-if runs:

- numeric: ``new = old * scale + add``, clipped to the contract's range (rounded for integer
  columns). The outcome stays with its row: a covariate shift.
- categorical: rows are drawn so that the column's categories have the given relative weights.
  Each category's rows keep their own outcomes, so the outcome rate moves as it would.

Command line::

    python -m credit_risk.synthetic --rows 100000 --seed 1 --out /tmp/rows.csv \
        --shift '{"age": {"add": 10}, "housing": {"weights": {"rent": 1}}}'
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import TypeAdapter

from credit_risk.config import (
    MAX_SYNTHETIC_ROWS,
    CategoricalShift,
    NumericShift,
    check_shift,
    load_params,
)
from credit_risk.errors import ConfigError, DataError
from credit_risk.files import write_with
from credit_risk.schema import column_specs, positive_labels
from credit_risk.stage import run
from credit_risk.validate import read_csv, validate
from credit_risk.yamlfile import checked_mapping

log = logging.getLogger("credit_risk.synthetic")

Shift = NumericShift | CategoricalShift


def load_source(path: Path) -> pd.DataFrame:
    """The source file (plain or .gz CSV), typed by the contract; a broken file is a DataError."""
    typed, problems = validate(read_csv(path))
    if typed is None:
        listing = "\n".join(f"  - {p.describe()}" for p in problems)
        raise DataError(f"{path} breaks the data contract, so it cannot be resampled:\n{listing}")
    return typed


def generate(
    source: pd.DataFrame, rows: int, seed: int, shift: Mapping[str, Shift] | None = None
) -> pd.DataFrame:
    """Draw ``rows`` rows from ``source`` (typed by the contract); same seed, same frame."""
    if isinstance(rows, bool) or not isinstance(rows, int | np.integer) or rows < 1:
        raise ConfigError(f"rows must be a whole number >= 1 (got {rows!r})")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        # numpy's seeding rejects negatives with a bare ValueError; say which setting is wrong
        raise ConfigError(f"seed must be a whole number >= 0 (got {seed!r})")
    if source.empty:
        raise DataError("the source has no rows to draw from")
    shift = dict(shift or {})
    try:
        check_shift(shift)
    except ValueError as problem:
        raise ConfigError(str(problem)) from None
    rng = np.random.default_rng(seed)
    weights = _row_weights(source, shift)
    if weights is None:
        picked = rng.integers(0, len(source), size=int(rows))
    else:
        picked = rng.choice(len(source), size=int(rows), replace=True, p=weights)
    frame = source.iloc[picked].reset_index(drop=True)
    specs = column_specs()
    for name, change in shift.items():
        if isinstance(change, NumericShift):
            spec = specs[name]
            moved = np.clip(frame[name] * change.scale + change.add, spec.minimum, spec.maximum)
            frame[name] = np.rint(moved).astype(np.int64) if spec.python_type is int else moved
    return frame


def _row_weights(source: pd.DataFrame, shift: Mapping[str, Shift]) -> np.ndarray | None:
    """Each row's chance of being drawn so that shifted categories get their weights."""
    weights = np.ones(len(source))
    changed = False
    for name, change in shift.items():
        if not isinstance(change, CategoricalShift):
            continue
        values = source[name].astype(str)
        counts = values.value_counts()
        wanted = {category: weight for category, weight in change.weights.items() if weight > 0}
        absent = sorted(set(wanted) - set(counts.index))
        if absent:
            raise ConfigError(f"shift.{name}.weights: no source rows have {absent} to draw from")
        per_row = values.map(lambda v, w=wanted, c=counts: w.get(v, 0.0) / c[v])
        weights *= per_row.to_numpy(dtype=np.float64)
        changed = True
    if not changed:
        return None
    total = weights.sum()
    if total <= 0:
        raise ConfigError("shift: the categorical weights together leave no row to draw")
    return weights / total


# --- Command line -----------------------------------------------------------------------------
# The same type as config.Synthetic's shift field, so CLI and params.yaml accept the same JSON.
_SHIFT_ADAPTER: TypeAdapter[dict[str, Shift]] = TypeAdapter(dict[str, Shift])


def parse_shift(text: str) -> dict[str, Shift]:
    """Parse a --shift JSON object into shift settings; problems are ConfigErrors naming the key."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--shift: not valid JSON: {exc}") from None
    expected = "a JSON object of column: shift"
    return checked_mapping(raw, _SHIFT_ADAPTER.validate_python, "--shift", "shift", expected)


def write_csv(frame: pd.DataFrame, out: Path) -> None:
    """Write ``frame`` as CSV without the index, atomically (gzip if ``out`` ends in .gz)."""

    def write(tmp: Path) -> None:
        if out.suffix != ".gz":
            frame.to_csv(tmp, index=False)
            return
        # No file name or time in the gzip header: the same seed gives the same bytes.
        with (
            tmp.open("wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as zipped,
            io.TextIOWrapper(zipped, encoding="utf-8", newline="") as text,
        ):
            frame.to_csv(text, index=False)

    write_with(out, write)


def _row_count(text: str) -> int:
    try:
        rows = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= rows <= MAX_SYNTHETIC_ROWS:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_SYNTHETIC_ROWS:,}")
    return rows


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m credit_risk.synthetic",
        description="Write seeded synthetic rows, resampled from the source data, as CSV.",
    )
    parser.add_argument("--rows", type=_row_count, required=True, help="number of rows")
    parser.add_argument("--seed", type=int, required=True, help="random seed")
    parser.add_argument("--out", type=Path, required=True, help="CSV file to write (.gz: gzip)")
    parser.add_argument(
        "--source", type=Path, help="CSV to resample (default: ingest.file in params.yaml)"
    )
    parser.add_argument(
        "--shift",
        default="{}",
        help='JSON, e.g. \'{"age": {"add": 10}, "housing": {"weights": {"rent": 1}}}\'',
    )
    return parser.parse_args()


def main() -> None:
    """Generate the requested rows and write them to --out."""
    args = _arguments()
    shift = parse_shift(args.shift)
    source = load_source(args.source or load_params().ingest.file)
    frame = generate(source, args.rows, args.seed, shift)
    write_csv(frame, args.out)
    share = 100 * positive_labels(frame).mean()
    log.info("wrote %d rows (%.1f%% positive outcome) to %s", len(frame), share, args.out)


if __name__ == "__main__":
    run("synthetic", main)
