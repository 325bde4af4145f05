"""Data tests: the contract accepts good data and rejects each kind of corruption by name."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from credit_risk.errors import DataError
from credit_risk.schema import CreditApplications, column_specs, feature_columns
from credit_risk.synthetic import generate
from credit_risk.validate import read_csv, validate, validate_file


def corrupt(path: Path, column: str, line: int, value: str) -> None:
    """Set ``column`` on CSV line ``line`` (header is line 1) to ``value``."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.loc[line - 2, column] = value
    frame.to_csv(path, index=False)


def problems_for(path: Path, tmp_path: Path) -> tuple[str, dict]:
    report = tmp_path / "report.json"
    with pytest.raises(DataError) as error:
        validate_file(path, tmp_path / "validated.parquet", report, max_examples=5)
    return str(error.value), json.loads(report.read_text())


def test_shipped_data_satisfies_the_contract(german: pd.DataFrame) -> None:
    assert len(german) == 1000
    assert german["risk"].dtype == "int64"


def test_synthetic_data_satisfies_the_contract() -> None:
    CreditApplications.validate(generate(5000, seed=11), lazy=True)


def test_valid_file_writes_typed_table_and_report(german_csv: Path, tmp_path: Path) -> None:
    report = validate_file(german_csv, tmp_path / "v.parquet", tmp_path / "r.json", 5)
    assert report.valid and report.rows == 1000
    typed = pd.read_parquet(tmp_path / "v.parquet")
    assert typed["age"].dtype == "int64"
    assert json.loads((tmp_path / "r.json").read_text())["problems"] == []


@pytest.mark.parametrize(
    ("column", "value", "check", "shown"),
    [
        ("age", "abc", "not a number", "line 7: 'abc'"),
        ("duration", "12.5", "not a whole number", "line 7: '12.5'"),
        ("age", "150", "less_than_or_equal_to(100)", "line 7: '150'"),
        ("credit_amount", "-5", "greater_than_or_equal_to(100)", "line 7: '-5'"),
        ("purpose", "spaceship", "isin(", "line 7: 'spaceship'"),
        ("job", "7", "isin([0, 1, 2, 3])", "line 7: '7'"),
        ("housing", "", "not_nullable", "line 7: None"),
        ("age", "", "not_nullable", "line 7: None"),
    ],
)
def test_each_corruption_is_named(
    german_csv: Path, tmp_path: Path, column: str, value: str, check: str, shown: str
) -> None:
    corrupt(german_csv, column, 7, value)
    message, report = problems_for(german_csv, tmp_path)
    assert f"column '{column}': {check}" in message
    assert shown in message
    assert report["valid"] is False
    assert [(p["column"], p["count"]) for p in report["problems"]] == [(column, 1)]


def test_all_problems_are_reported_at_once(german_csv: Path, tmp_path: Path) -> None:
    corrupt(german_csv, "age", 3, "abc")
    corrupt(german_csv, "purpose", 4, "spaceship")
    corrupt(german_csv, "sex", 5, "")
    message, report = problems_for(german_csv, tmp_path)
    assert "3 problems" in message
    assert {p["column"] for p in report["problems"]} == {"age", "purpose", "sex"}


def test_missing_and_unexpected_columns(german_csv: Path, tmp_path: Path) -> None:
    frame = pd.read_csv(german_csv, dtype=str).drop(columns=["age"])
    frame["income"] = "1"
    frame.to_csv(german_csv, index=False)
    message, _ = problems_for(german_csv, tmp_path)
    assert "column 'age': required column is missing" in message
    assert "column 'income': unexpected column" in message


def test_header_only_file_is_too_small(german_csv: Path, tmp_path: Path) -> None:
    german_csv.write_text(",".join(column_specs()) + "\n")
    message, _ = problems_for(german_csv, tmp_path)
    assert "fewer than 50 rows" in message


def test_single_outcome_is_rejected(german_csv: Path, tmp_path: Path) -> None:
    frame = pd.read_csv(german_csv, dtype=str)
    frame["risk"] = "1"
    frame.to_csv(german_csv, index=False)
    message, _ = problems_for(german_csv, tmp_path)
    assert "both outcomes" in message


@pytest.mark.parametrize(
    ("content", "named"),
    [
        (b"", "the file is empty"),
        (b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x00binary", "not UTF-8 text"),
        (b"\n\n\n", "no columns found"),
    ],
)
def test_unreadable_files_are_named(tmp_path: Path, content: bytes, named: str) -> None:
    path = tmp_path / "credit.csv"
    path.write_bytes(content)
    message, report = problems_for(path, tmp_path)
    assert named in message and str(path) in message
    assert report["valid"] is False


def test_failed_validation_keeps_the_previous_table(german_csv: Path, tmp_path: Path) -> None:
    validated = tmp_path / "validated.parquet"
    validated.write_bytes(b"previous table")
    corrupt(german_csv, "age", 3, "abc")
    with pytest.raises(DataError):
        validate_file(german_csv, validated, tmp_path / "r.json", 5)
    assert validated.read_bytes() == b"previous table"


def test_examples_are_capped(german_csv: Path, tmp_path: Path) -> None:
    frame = pd.read_csv(german_csv, dtype=str)
    frame["age"] = "200"
    frame.to_csv(german_csv, index=False)
    typed, problems = validate(read_csv(german_csv), max_examples=3)
    assert typed is None
    assert problems[0].count == 1000 and len(problems[0].examples) == 3


def test_feature_columns_exclude_the_target() -> None:
    assert "risk" not in feature_columns()
    assert set(feature_columns()) | {"risk"} == set(column_specs())


def test_line_numbers_survive_blank_lines(german_csv: Path, tmp_path: Path) -> None:
    lines = german_csv.read_text().splitlines()
    lines.insert(3, "")  # a blank line 4: the row below it is now line 5
    lines[4] = lines[4].rsplit(",", 1)[0] + ",150"
    german_csv.write_text("\n".join(lines) + "\n")
    message, _ = problems_for(german_csv, tmp_path)
    assert "column 'age': less_than_or_equal_to(100) fails for 1 row, e.g. line 5: '150'" in message
    assert "line 4: None" in message  # the blank line itself is a row of missing values
