"""Store outcomes of logged scores from a file, the batch twin of the service's POST /outcomes.

    python -m credit_risk.monitoring.outcomes FILE.csv      # columns request_id, outcome[, row]
    python -m credit_risk.monitoring.outcomes FILE.jsonl    # {"request_id", "outcome"[, "row"]}
    python -m credit_risk.monitoring.outcomes --prune       # apply the retention setting now

The log is the folder CREDIT_RISK_PREDICTION_LOG names, else ``serve.prediction_log.folder``
of ./params.yaml (or the file CREDIT_RISK_PARAMS names). The whole file is stored or none of
it; an error names the line and field, the unknown score or the duplicate.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from pathlib import Path
from typing import Any

from credit_risk.config import load_params
from credit_risk.errors import ConfigError, DataError
from credit_risk.monitoring.predictions import (
    delete_expired,
    log_folder,
    parse_outcomes,
    record_outcomes,
)
from credit_risk.stage import run

PARAMS_VARIABLE = "CREDIT_RISK_PARAMS"


def read_items(path: Path) -> list[dict[str, Any]]:
    """The file's outcomes as JSON-like objects (CSV cells are text: row becomes a number)."""
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        items: list[dict[str, Any]] = []
        for line, row in enumerate(rows, start=2):
            item: dict[str, Any] = {k: v for k, v in row.items() if v not in ("", None)}
            if "row" in item:
                if not str(item["row"]).isdigit():
                    raise DataError(f"{path}:{line}: row {item['row']!r} is not a whole number")
                item["row"] = int(item["row"])
            items.append(item)
        return items
    if path.suffix in {".jsonl", ".ndjson"}:
        items = []
        for line, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if text.strip():
                try:
                    items.append(json.loads(text))
                except ValueError as problem:
                    raise DataError(f"{path}:{line}: not JSON ({problem})") from None
        return items
    raise ConfigError(f"{path}: give a .csv or .jsonl file of request_id, outcome[, row]")


def store_file(path: Path, folder: Path, max_age_days: int) -> int:
    """Store the file's outcomes in the log at ``folder``, all or none; how many were stored."""
    return record_outcomes(folder, parse_outcomes(read_items(path)), max_age_days)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", type=Path, help="outcomes: .csv or .jsonl")
    parser.add_argument("--prune", action="store_true", help="delete days past retention")
    args = parser.parse_args()
    settings = load_params(Path(os.environ.get(PARAMS_VARIABLE, "params.yaml"))).serve
    folder = log_folder(settings.prediction_log)
    if args.prune:
        gone = delete_expired(folder, settings.prediction_log.retention_days)
        print(f"deleted {len(gone)} day partitions from {folder}")
        return
    if args.file is None:
        parser.error("name a file of outcomes (or --prune)")
    stored = store_file(args.file, folder, settings.prediction_log.max_outcome_age_days)
    print(f"stored {stored} outcomes in {folder}")


if __name__ == "__main__":
    run("outcomes", main)
