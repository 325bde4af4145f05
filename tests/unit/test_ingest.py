from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pytest

from credit_risk.config import Ingest, Synthetic
from credit_risk.errors import DataError
from credit_risk.ingest import copy_source, ingest


def test_gzip_source_is_copied_byte_for_byte(tmp_path: Path, german_text: str) -> None:
    source = tmp_path / "source.csv.gz"
    source.write_bytes(gzip.compress(german_text.encode()))
    target = tmp_path / "raw" / "credit.csv"
    copy_source(source, target)
    assert target.read_text() == german_text


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


def test_synthetic_source_writes_the_configured_rows(tmp_path: Path) -> None:
    config = Ingest(
        source="synthetic", file=Path("unused.csv"), synthetic=Synthetic(rows=500, seed=3)
    )
    target = tmp_path / "raw.csv"
    ingest(config, target)
    frame = pd.read_csv(target)
    assert len(frame) == 500
    assert "risk" in frame.columns
