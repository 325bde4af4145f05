"""Stage validate: check raw data against the data contract and report every problem at once.

On success the typed, validated table is written for the next stage. On failure the stage
writes the report, prints each failing column and check with a few failing values (and their
line numbers in the CSV), and exits non-zero so that nothing downstream runs.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pandera.errors

from credit_risk.config import load_params
from credit_risk.errors import DataError
from credit_risk.files import md5, write_json, write_with
from credit_risk.schema import Contract, column_specs, data_schema
from credit_risk.stage import run

log = logging.getLogger(__name__)

HEADER_LINES = 1  # a CSV row's line number is its position + this + 1


@dataclass(frozen=True)
class Problem:
    """One broken rule: where, which check, how many rows, and a few examples."""

    column: str
    check: str
    count: int
    examples: list[dict[str, Any]]

    def describe(self) -> str:
        shown = ", ".join(
            f"line {e['line']}: {e['value']!r}" if e["line"] is not None else repr(e["value"])
            for e in self.examples
        )
        where = f"column {self.column!r}" if self.column != "(table)" else "the table"
        if not self.count:
            return f"{where}: {self.check}"
        rows = f"{self.count} row{'s' if self.count != 1 else ''}"
        return f"{where}: {self.check} fails for {rows}" + (f", e.g. {shown}" if shown else "")


@dataclass
class ValidationReport:
    source: str
    valid: bool
    rows: int
    md5: str | None
    problems: list[Problem] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_csv(path: Path) -> pd.DataFrame:
    """Read a CSV (plain or .gz) as text: the contract does the typing, so bad values are named."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty (expected a CSV with a header row)")
    try:
        # Blank lines stay rows (all values missing, so reported), keeping line numbers right.
        return pd.read_csv(
            path, dtype=str, keep_default_na=True, encoding="utf-8", skip_blank_lines=False
        )
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: not UTF-8 text (undecodable byte at offset {exc.start}); is it a CSV?"
        ) from None
    except (pd.errors.ParserError, csv.Error) as exc:
        raise DataError(f"{path}: not a readable CSV: {str(exc).strip()}") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: no columns found (expected a CSV with a header row)") from None


def _examples(cases: pd.DataFrame, limit: int) -> list[dict[str, Any]]:
    examples = []
    for _, case in cases.head(limit).iterrows():
        index = case["index"]
        line = int(index) + HEADER_LINES + 1 if pd.notna(index) else None
        value = case["failure_case"]
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # parsed from an integer column's text: show it as written
        examples.append({"line": line, "value": None if pd.isna(value) else str(value)})
    return examples


BOOLEAN_WORDS = {"true": True, "false": False}  # compared after lower-casing


def _parse_booleans(text: pd.Series) -> tuple[pd.Series, pd.Series]:
    """``true``/``false`` in any case to booleans; the mask marks text that is neither."""
    parsed = text.str.strip().str.lower().map(BOOLEAN_WORDS)
    return parsed, text.notna() & parsed.isna()


def parse_values(
    frame: pd.DataFrame, terms: Contract | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Turn the contract's numeric and boolean columns from text into values.

    Values that are not numbers (or not whole numbers where the contract wants integers, or not
    true/false for a boolean) are recorded as failures and blanked, so that the schema's checks
    run on real values and one bad value is reported once, not as a cascade of type errors.
    """
    parsed = frame.copy()
    failures = []
    for name, spec in column_specs(terms).items():
        if name not in parsed.columns or spec.python_type is str:
            continue
        text = parsed[name]
        checks: list[tuple[pd.Series, str]]
        if spec.python_type is bool:
            values, not_boolean = _parse_booleans(text)
            checks = [(not_boolean, "not true or false")]
        else:
            values = pd.to_numeric(text, errors="coerce")
            checks = [(text.notna() & values.isna(), "not a number")]
            if spec.python_type is int:
                checks.append((values.notna() & (values % 1 != 0), "not a whole number"))
        for mask, check in checks:
            if mask.any():
                failures.append(
                    pd.DataFrame(
                        {
                            "column": name,
                            "check": check,
                            "index": text.index[mask],
                            "failure_case": text[mask].to_numpy(),
                        }
                    )
                )
                values = values.mask(mask)
        parsed[name] = values
    columns = ["column", "check", "index", "failure_case"]
    found = pd.concat(failures, ignore_index=True) if failures else pd.DataFrame(columns=columns)
    return parsed, found


def problems_from(failures: pd.DataFrame, max_examples: int) -> list[Problem]:
    """Group failure cases into one Problem per (column, check)."""
    cases = failures.copy()
    cases["column"] = cases["column"].astype(object).where(cases["column"].notna(), "(table)")
    cases["column"] = cases["column"].astype(str)
    cases["check"] = cases["check"].astype(str)
    problems = []
    for (column, check), group in cases.groupby(["column", "check"], sort=True):
        if check == "column_in_schema":
            for name in group["failure_case"].astype(str):
                problems.append(Problem(name, "unexpected column (not in the contract)", 0, []))
            continue
        if check == "column_in_dataframe":
            for name in group["failure_case"].astype(str):
                problems.append(Problem(name, "required column is missing", 0, []))
            continue
        problems.append(
            Problem(str(column), str(check), len(group), _examples(group, max_examples))
        )
    return problems


def _schema_failures(error: pandera.errors.SchemaErrors, already: pd.DataFrame) -> pd.DataFrame:
    """pandera's failure cases, without the echoes of a value that parse_values reported."""
    cases = error.failure_cases[["column", "check", "index", "failure_case"]].copy()
    cases["check"] = cases["check"].astype(str)
    # A column that is not yet all integers fails its dtype coercion too: the real cause is a
    # missing value (reported by not_nullable) or a value parse_values already reported.
    cases = cases[~cases["check"].str.startswith(("dtype(", "coerce_dtype("))]
    reported = set(zip(already["column"], already["index"], strict=True))
    echo = [(c, i) in reported for c, i in zip(cases["column"], cases["index"], strict=True)]
    return cases[~pd.Series(echo, index=cases.index, dtype=bool)]


def validate(
    frame: pd.DataFrame, max_examples: int = 5, terms: Contract | None = None
) -> tuple[pd.DataFrame | None, list[Problem]]:
    """Validate lazily against a contract (the project's by default): the typed frame when
    valid, else every problem found."""
    parsed, failures = parse_values(frame, terms)
    try:
        typed = data_schema(terms).validate(parsed, lazy=True)
    except pandera.errors.SchemaErrors as exc:
        failures = pd.concat([failures, _schema_failures(exc, failures)], ignore_index=True)
        typed = None
    if len(failures):
        return None, problems_from(failures, max_examples)
    return typed, []


def validate_file(
    raw: Path, validated: Path, report_path: Path, max_examples: int
) -> ValidationReport:
    """Validate ``raw``; write the report always and the typed table only when valid."""
    try:
        frame = read_csv(raw)
    except DataError as exc:
        report = ValidationReport(str(raw), False, 0, None, [Problem("(file)", str(exc), 0, [])])
        write_json(report_path, report.to_dict())
        raise
    typed, problems = validate(frame, max_examples)
    report = ValidationReport(str(raw), typed is not None, len(frame), md5(raw), problems)
    write_json(report_path, report.to_dict())
    if typed is None:
        listing = "\n".join(f"  - {p.describe()}" for p in problems)
        raise DataError(
            f"{raw} breaks the data contract ({len(problems)} problem"
            f"{'s' if len(problems) != 1 else ''}; report in {report_path}):\n{listing}"
        )
    write_with(validated, lambda tmp: typed.to_parquet(tmp, index=False))
    log.info("%s: %d rows satisfy the contract", raw, len(typed))
    return report


def main() -> None:
    params = load_params()
    paths = params.paths
    validate_file(
        paths.raw, paths.validated, paths.validation_report, params.validate_.max_examples
    )


if __name__ == "__main__":
    run("validate", main)
