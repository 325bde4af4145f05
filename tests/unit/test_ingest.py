from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pytest

from credit_risk.config import Ingest, Synthetic
from credit_risk.errors import DataError
from credit_risk.ingest import copy_source, ingest
from credit_risk.schema import column_specs
from credit_risk.validate import read_csv, validate

ROOT = Path(__file__).resolve().parents[2]


def test_gzip_source_is_copied_byte_for_byte(tmp_path: Path, source_text: str) -> None:
    source = tmp_path / "source.csv.gz"
    source.write_bytes(gzip.compress(source_text.encode()))
    target = tmp_path / "raw" / "credit.csv"
    copy_source(source, target)
    assert target.read_text() == source_text


def test_missing_source_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nowhere\.csv does not exist"):
        copy_source(tmp_path / "nowhere.csv", tmp_path / "raw.csv")


def test_corrupt_gzip_keeps_the_previous_raw_file(tmp_path: Path) -> None:
    source = tmp_path / "broken.csv.gz"
    source.write_bytes(b"\x1f\x8b\x08\x00 definitely not deflate data")
    target = tmp_path / "raw.csv"
    target.write_text("previous run\n")
    with pytest.raises(DataError, match="not a readable gzip file"):
        copy_source(source, target)
    assert target.read_text() == "previous run\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.csv.gz", "raw.csv"]


def test_synthetic_source_resamples_the_configured_file(params, tmp_path: Path, roles) -> None:
    config = Ingest(source="synthetic", file=ROOT / params.ingest.file,
                    synthetic=Synthetic(rows=500, seed=3))  # fmt: skip
    target = tmp_path / "raw.csv"
    ingest(config, target)
    typed, problems = validate(read_csv(target))
    assert typed is not None, problems
    assert len(typed) == 500 and list(typed.columns) == list(column_specs())


def test_synthetic_source_needs_a_valid_file(source_csv: Path, tmp_path: Path, roles) -> None:
    frame = pd.read_csv(source_csv, dtype=str)
    frame[roles.target] = ""
    frame.to_csv(source_csv, index=False)
    config = Ingest(source="synthetic", file=source_csv, synthetic=Synthetic(rows=60, seed=3))
    target = tmp_path / "raw.csv"
    target.write_text("previous run\n")
    with pytest.raises(DataError, match="breaks the data contract, so it cannot be resampled"):
        ingest(config, target)
    assert target.read_text() == "previous run\n"
