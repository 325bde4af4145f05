"""`python -m credit_risk.monitoring.outcomes FILE`: a CSV or JSON Lines file of outcomes is
stored whole, or not at all with an error that names the problem."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from credit_risk.errors import DataError
from credit_risk.monitoring.outcomes import store_file
from credit_risk.monitoring.predictions import (
    InvalidOutcomeError,
    PredictionWriter,
    UnknownRequestError,
    read_outcomes,
)
from credit_risk.schema import example_record, feature_columns, outcome_names

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    log = tmp_path / "log"
    writer = PredictionWriter(log, feature_columns())
    writer.write("single", "score", "m:1", [example_record()], [0.2], ["x"])
    writer.write("batch", "score_batch", "m:1", [example_record()] * 2, [0.2, 0.7], ["x", "y"])
    return log


def command(path: Path, folder: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CREDIT_RISK_PREDICTION_LOG": str(folder)}
    return subprocess.run(
        [sys.executable, "-m", "credit_risk.monitoring.outcomes", str(path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_a_csv_file_is_stored(folder: Path, tmp_path: Path) -> None:
    bad, good = outcome_names()[1], outcome_names()[0]
    path = tmp_path / "outcomes.csv"
    path.write_text(f"request_id,row,outcome\nsingle,,{bad}\nbatch,1,{good}\n")
    done = command(path, folder)
    assert done.returncode == 0, done.stderr
    assert "stored 2 outcomes" in done.stdout
    stored = read_outcomes(folder)[["request_id", "row", "outcome"]].values.tolist()
    assert stored == [["single", 0, bad], ["batch", 1, good]]


def test_a_bad_jsonl_file_stores_nothing(folder: Path, tmp_path: Path) -> None:
    word = outcome_names()[0]
    path = tmp_path / "outcomes.jsonl"
    lines = [{"request_id": "single", "outcome": word}, {"request_id": "gone", "outcome": word}]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    with pytest.raises(UnknownRequestError, match="gone"):
        store_file(path, folder, 30)
    path.write_text(json.dumps({"request_id": "single", "outcome": "maybe"}) + "\n")
    with pytest.raises(InvalidOutcomeError, match=r"outcomes\.0\.outcome"):
        store_file(path, folder, 30)
    path.write_text('{"request_id": "single", "outc\n')
    with pytest.raises(DataError, match=rf"{path}:1: not JSON"):
        store_file(path, folder, 30)
    assert read_outcomes(folder).empty
    path.write_text(json.dumps(lines[0]) + "\n")
    assert store_file(path, folder, 30) == 1
