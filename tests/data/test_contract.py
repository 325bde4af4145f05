"""Data tests: the contract accepts good data and rejects each kind of corruption by name.

Columns, values and row counts come from the contract (`roles`) and the data, so these tests
hold for any adopted data set.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from credit_risk.errors import ConfigError, DataError
from credit_risk.schema import (
    CONTRACT_FILE,
    column_specs,
    contract,
    data_schema,
    example_record,
    feature_columns,
    load_contract,
)
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


def rows_of(path: Path) -> int:
    return len(pd.read_csv(path, dtype=str))


def test_source_data_satisfies_the_contract(source: pd.DataFrame) -> None:
    assert list(source.columns) == list(column_specs())
    for name, spec in column_specs().items():
        if spec.python_type in (int, float, bool):
            assert source[name].dtype.kind == {int: "i", float: "f", bool: "b"}[spec.python_type]


def test_synthetic_rows_satisfy_the_contract(source: pd.DataFrame) -> None:
    data_schema().validate(generate(source, 5000, seed=11), lazy=True)


def test_the_example_record_satisfies_the_contract(roles) -> None:
    rows = [{**example_record(), roles.target: v} for v in (roles.positive, roles.negative)] * 50
    data_schema().validate(pd.DataFrame(rows), lazy=True)


def test_valid_file_writes_typed_table_and_report(source_csv: Path, tmp_path: Path) -> None:
    report = validate_file(source_csv, tmp_path / "v.parquet", tmp_path / "r.json", 5)
    assert report.valid and report.rows == rows_of(source_csv)
    typed = pd.read_parquet(tmp_path / "v.parquet")
    assert list(typed.columns) == list(column_specs())
    assert json.loads((tmp_path / "r.json").read_text())["problems"] == []


def corruptions(roles) -> list[tuple[str, str, str]]:
    """(column, value, the check that must name it) for each kind of bad value."""
    cases = []
    numeric = roles.bounded_numeric()
    cases.append((numeric, "abc", "not a number"))
    cases.append((numeric, str(roles.too_large(numeric)), "less_than_or_equal_to("))
    cases.append((numeric, "", "not_nullable"))
    integer = roles.features("numeric", int)
    if integer:
        cases.append((integer[0], "12.5", "not a whole number"))
    category = roles.first("categorical")
    cases.append((category, str(roles.unknown_category(category)), "isin("))
    cases.append((category, "", "not_nullable"))
    booleans = roles.features("categorical", bool)
    if booleans:
        cases.append((booleans[0], "maybe", "not true or false"))
    return cases


def test_each_corruption_is_named(source_csv: Path, tmp_path: Path, roles) -> None:
    for number, (column, value, check) in enumerate(corruptions(roles)):
        path = tmp_path / f"case{number}.csv"
        path.write_bytes(source_csv.read_bytes())
        corrupt(path, column, 7, value)
        message, report = problems_for(path, tmp_path)
        assert f"column '{column}': {check}" in message, (column, value, message)
        shown = f"line 7: {value!r}" if value else "line 7: None"
        assert shown in message, message
        assert report["valid"] is False
        assert [(p["column"], p["count"]) for p in report["problems"]] == [(column, 1)], report


def test_all_problems_are_reported_at_once(source_csv: Path, tmp_path: Path, roles) -> None:
    numeric, category = roles.bounded_numeric(), roles.first("categorical")
    corrupt(source_csv, numeric, 3, "abc")
    corrupt(source_csv, category, 4, "")
    corrupt(source_csv, roles.target, 5, "")
    message, report = problems_for(source_csv, tmp_path)
    assert "3 problems" in message
    assert {p["column"] for p in report["problems"]} == {numeric, category, roles.target}
    assert all(p["check"] == "not_nullable" or p["column"] == numeric for p in report["problems"])


def test_missing_and_unexpected_columns(source_csv: Path, tmp_path: Path) -> None:
    dropped = feature_columns()[-1]
    frame = pd.read_csv(source_csv, dtype=str).drop(columns=[dropped])
    frame["not in the contract"] = "1"
    frame.to_csv(source_csv, index=False)
    message, report = problems_for(source_csv, tmp_path)
    assert f"column '{dropped}': required column is missing" in message
    assert "column 'not in the contract': unexpected column" in message
    assert len(report["problems"]) == 2


def test_header_only_file_is_too_small(source_csv: Path, tmp_path: Path) -> None:
    source_csv.write_text(",".join(column_specs()) + "\n")
    message, _ = problems_for(source_csv, tmp_path)
    assert f"fewer than {contract().min_rows} rows" in message


def test_single_outcome_is_rejected(source_csv: Path, tmp_path: Path, roles) -> None:
    frame = pd.read_csv(source_csv, dtype=str)
    frame[roles.target] = frame[roles.target].iloc[0]
    frame.to_csv(source_csv, index=False)
    message, report = problems_for(source_csv, tmp_path)
    assert "both outcomes" in message
    assert [p["column"] for p in report["problems"]] == ["(table)"]


@pytest.mark.parametrize(
    ("content", "named"),
    [
        (b"", "the file is empty"),
        (b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x00binary", "not UTF-8 text"),
        (b"\n\n\n", "no columns found"),
    ],
)
def test_unreadable_files_are_named(tmp_path: Path, content: bytes, named: str) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes(content)
    message, report = problems_for(path, tmp_path)
    assert named in message and str(path) in message
    assert report["valid"] is False


def test_failed_validation_keeps_the_previous_table(
    source_csv: Path, tmp_path: Path, roles
) -> None:
    validated = tmp_path / "validated.parquet"
    validated.write_bytes(b"previous table")
    corrupt(source_csv, roles.bounded_numeric(), 3, "abc")
    with pytest.raises(DataError):
        validate_file(source_csv, validated, tmp_path / "r.json", 5)
    assert validated.read_bytes() == b"previous table"


def test_examples_are_capped(source_csv: Path, roles) -> None:
    numeric = roles.bounded_numeric()
    frame = pd.read_csv(source_csv, dtype=str)
    frame[numeric] = str(roles.too_large(numeric))
    frame.to_csv(source_csv, index=False)
    typed, problems = validate(read_csv(source_csv), max_examples=3)
    assert typed is None
    assert problems[0].count == len(frame) and len(problems[0].examples) == 3


def test_feature_columns_exclude_the_target(roles) -> None:
    assert roles.target not in feature_columns()
    assert set(feature_columns()) | {roles.target} == set(column_specs())


def test_line_numbers_survive_blank_lines(source_csv: Path, tmp_path: Path, roles) -> None:
    numeric = roles.bounded_numeric()
    frame = pd.read_csv(source_csv, dtype=str, keep_default_na=False)
    frame.loc[2, numeric] = str(roles.too_large(numeric))  # CSV line 4, line 5 after the insert
    frame.to_csv(source_csv, index=False)
    lines = source_csv.read_text().splitlines()
    lines.insert(3, "")  # a blank line 4
    source_csv.write_text("\n".join(lines) + "\n")
    message, _ = problems_for(source_csv, tmp_path)
    assert f"column '{numeric}': less_than_or_equal_to(" in message
    assert f"line 5: '{roles.too_large(numeric)}'" in message
    assert "line 4: None" in message  # the blank line itself is a row of missing values


# --- the contract file itself -----------------------------------------------------------------
def contract_with(tmp_path: Path, change) -> Path:
    document = yaml.safe_load(CONTRACT_FILE.read_text())
    change(document)
    path = tmp_path / "contract.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def test_the_shipped_contract_loads() -> None:
    assert load_contract() == contract()


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda d: d.update(colums=d.pop("columns")), "colums: unknown key"),
        (lambda d: d["target"].update(column="nowhere"), "'nowhere' is not under columns"),
        (lambda d: d["target"].update(positive="neither"), "target.positive 'neither'"),
        (lambda d: d["example"].pop(next(iter(d["example"]))), "example: must give every"),
        (lambda d: d["example"].update(surprise=1), "not features ['surprise']"),
        (lambda d: d.update(entity="Two Words"), "entity"),
        (
            lambda d: d["decisions"].update(
                below_threshold=d["decisions"]["at_or_above_threshold"]
            ),
            "the two decisions must differ",
        ),
        (
            lambda d: d.update(raises_probability=[{"feature": "x", "from": 1, "to": 2}]),
            "'x' is not a feature",
        ),
    ],
)
def test_bad_contract_names_the_key(tmp_path: Path, change, named: str) -> None:
    path = contract_with(tmp_path, change)
    with pytest.raises(ConfigError) as error:
        load_contract(path)
    assert named in str(error.value) and str(path) in str(error.value)


def test_yaml_booleans_in_a_text_column_get_a_hint(tmp_path: Path, roles) -> None:
    text = roles.features("categorical", str)
    if not text:
        pytest.skip("no text column")

    def unquoted_yes(document: dict) -> None:
        document["columns"][text[0]]["allowed"].append(True)  # what `yes` reads as

    with pytest.raises(ConfigError, match="quote words such as 'yes'"):
        load_contract(contract_with(tmp_path, unquoted_yes))
