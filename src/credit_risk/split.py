"""Stage split: a seeded train/test split, stratified on the outcome."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from credit_risk.config import Split, load_params
from credit_risk.errors import DataError
from credit_risk.files import write_with
from credit_risk.schema import positive_labels
from credit_risk.stage import run

log = logging.getLogger(__name__)


def split(frame: pd.DataFrame, config: Split) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split rows into train and test sets with the same share of bad risks in each."""
    labels = positive_labels(frame)
    if labels.value_counts().min() < 2:
        raise DataError("each outcome needs at least two rows to stratify the split")
    test_rows = math.ceil(len(frame) * config.test_size)
    if min(test_rows, len(frame) - test_rows) < labels.nunique():
        raise DataError(
            f"split.test_size {config.test_size} leaves {test_rows} of {len(frame)} rows for "
            "testing: both parts need a row of each outcome"
        )
    train, test = train_test_split(
        frame, test_size=config.test_size, random_state=config.seed, stratify=labels
    )
    return train.reset_index(drop=True), test.reset_index(drop=True)


def write_parquet(frame: pd.DataFrame, target: Path) -> None:
    write_with(target, lambda tmp: frame.to_parquet(tmp, index=False))


def main() -> None:
    params = load_params()
    paths = params.paths
    frame = pd.read_parquet(paths.validated)
    train, test = split(frame, params.split)
    write_parquet(train, paths.train)
    write_parquet(test, paths.test)
    log.info("%d rows: %d for training, %d held out", len(frame), len(train), len(test))


if __name__ == "__main__":
    run("split", main)
