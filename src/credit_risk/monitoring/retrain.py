"""`make retrain-data`: the outcomes received since the last retraining become training rows.

    python -m credit_risk.monitoring.retrain [--log DIR | --env NAME] [--since WHEN] [--until WHEN]

The window is one of outcome arrival: every outcome received from --since (default: the end of
the last window the current training source holds, or the first outcome) until --until
(default: now), joined to the prediction it names (logged up to
``serve.prediction_log.max_outcome_age_days`` earlier: a loan's outcome comes long after its
score). Those labelled predictions are written in the data contract's raw format (the columns
of the training rows in their order, the target in the contract's values) and appended to the
training rows as ingest reads them now (``ingest.file``, byte for byte; for a synthetic source,
``paths.raw``, ingest's last output) as one new file,
``monitor.retrain.folder``/training-until-<window end>.csv.gz; params.yaml's ingest is pointed
at it (``source: file``), comments kept. `make repro` then retrains on the old rows plus the
fresh ones.

Beside the data, ``<name>.json`` records where the rows came from (the base's md5 and rows,
the window, outcomes by label, model versions, the log) and every window added so far: a
window that overlaps one of them is refused, so no outcome is learned twice. In a DVC
repository the data file is `dvc add`-ed: git keeps the pointer and the record, the DVC remote
the rows (they are personal data).

Nothing is written (and params.yaml is untouched) when: fewer than ``monitor.retrain.min_rows``
outcomes arrived in the window (exit code 3: nothing is wrong, there is nothing to learn from
yet; a workflow tells this from a failure, exit code 1); the window overlaps one already added;
the log does not keep a column the contract needs (``serve.prediction_log.keep_attributes``);
or the rows together break the data contract (listed, as the validate stage would).
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import logging
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, cast

import pandas as pd

from credit_risk.config import DEFAULT_PARAMS, Params, load_params
from credit_risk.errors import ConfigError, DataError
from credit_risk.files import md5, write_json, write_with
from credit_risk.monitoring.job import add_window_arguments, chosen_log
from credit_risk.monitoring.performance import labelled
from credit_risk.monitoring.predictions import read_outcomes, read_predictions
from credit_risk.schema import POSITIVE_CLASS, column_specs, contract, target_column
from credit_risk.stage import run
from credit_risk.validate import read_csv, validate
from credit_risk.yamlfile import round_trip_yaml

log = logging.getLogger(__name__)

PREFIX = "training-until-"
NOTHING_TO_DO = 3  # the exit code when too few outcomes arrived in the window


class TooFewOutcomesError(DataError):
    """Too few outcomes arrived in the window to retrain on: nothing is written."""


@dataclass(frozen=True)
class FreshRows:
    """A window's labelled predictions in the raw data's format, and what they came from."""

    rows: pd.DataFrame  # the training rows' columns, in their order, as the CSV will hold them
    outcomes: dict[str, int]  # rows per outcome, in the contract's words
    model_versions: dict[str, int]


def _interval(window: dict[str, str]) -> tuple[datetime, datetime]:
    return datetime.fromisoformat(window["since"]), datetime.fromisoformat(window["until"])


def _window(since: datetime, until: datetime) -> dict[str, str]:
    return {"since": since.isoformat(), "until": until.isoformat()}


def record_of(data_file: Path) -> Path:
    """The record kept beside a data file this command wrote (name.csv.gz -> name.json)."""
    return data_file.with_name(data_file.name.removesuffix(".gz").removesuffix(".csv") + ".json")


def windows_added(source: Path) -> list[dict[str, str]]:
    """The windows whose rows the training source ``source`` already holds (none for a source
    this command did not write)."""
    record = record_of(source)
    if not record.is_file():
        return []
    found: list[dict[str, str]] = json.loads(record.read_text(encoding="utf-8"))["windows"]
    return found


def outcome_window(
    since: datetime | None, until: datetime | None, added: list[dict[str, str]]
) -> tuple[datetime | None, datetime]:
    """The window of outcome arrival: by default from the end of the last window added (or the
    beginning) to now. One that overlaps a window added before is refused."""
    end = until or datetime.now(UTC)
    last = max((_interval(earlier)[1] for earlier in added), default=None)
    start = since if since is not None else last
    if start is not None and start >= end:
        why = (
            "--since must be before --until"
            if since is not None
            else "the training source holds the outcomes up to its start already"
        )
        raise DataError(f"the window {start.isoformat()} to {end.isoformat()} is empty: {why}")
    for earlier in added:
        first, final = _interval(earlier)
        if (start is None or start < final) and first < end:
            raise DataError(
                f"outcomes received from {start.isoformat() if start else 'the first'} to "
                f"{end.isoformat()} overlap a window the training source already holds "
                f"({first.isoformat()} to {final.isoformat()}): they would be learned twice; "
                "leave --since out (it then starts where the last window ended)"
            )
    return start, end


def base_rows_file(params: Params) -> Path:
    """The training rows as ingest reads them now: its source file, or for a synthetic source
    its last output (paths.raw)."""
    base = params.ingest.file if params.ingest.source == "file" else params.paths.raw
    if not base.is_file():
        raise DataError(
            f"{base}: the rows the model learned from are not here "
            f"({'ingest.file' if params.ingest.source == 'file' else 'paths.raw'}); "
            "run `dvc pull` (or `make repro`) first"
        )
    return base


def _open(path: Path) -> BinaryIO:
    """A CSV file's bytes, decompressed when it is gzip-compressed (.gz), as ingest reads it."""
    if path.suffix == ".gz":
        return cast(BinaryIO, gzip.open(path, "rb"))
    return cast(BinaryIO, path.open("rb"))


def raw_header(base: Path) -> list[str]:
    """The column names of the training rows, in their order (the first line)."""
    with _open(base) as handle:
        return list(pd.read_csv(handle, nrows=0, dtype=str).columns)


def fresh_rows(
    predictions: pd.DataFrame, outcomes: pd.DataFrame, header: Sequence[str], params: Params
) -> FreshRows:
    """The predictions that have one of ``outcomes``, as rows of the raw data (``header``)."""
    joined = labelled(predictions, outcomes) if len(predictions) and len(outcomes) else None
    if joined is None or joined.empty:
        return FreshRows(pd.DataFrame(columns=list(header)), {}, {})
    target = target_column()
    specs = column_specs()
    missing = [name for name in header if name != target and name not in joined.columns]
    if missing:
        raise ConfigError(
            f"the prediction log does not keep {missing}, which the training data needs: add "
            "them to serve.prediction_log.keep_attributes (params.yaml) and log a new window"
        )
    positive = contract().target.positive
    negative = [value for value in specs[target].allowed or () if value != positive]
    if len(negative) != 1:
        raise ConfigError(
            f"contract: the target {target!r} needs exactly two allowed values to write "
            f"outcomes back as data (allowed: {specs[target].allowed})"
        )
    rows = pd.DataFrame(index=joined.index)
    for name in header:
        if name == target:
            values = joined["label"].map(
                {POSITIVE_CLASS: positive, 1 - POSITIVE_CLASS: negative[0]}
            )
        else:
            values = joined[name]
            kind = specs[name].python_type if name in specs else str
            if kind is int:
                values = values.astype("int64")
            elif kind is bool:
                values = values.map({True: "true", False: "false"})
        rows[name] = values
    order = joined.sort_values(["time", "request_id", "row"]).index  # as they were scored
    versions = joined["model_version"].value_counts()
    return FreshRows(
        rows.loc[order].reset_index(drop=True),
        {str(k): int(v) for k, v in joined["outcome"].value_counts().sort_index().items()},
        {str(k): int(v) for k, v in versions.sort_index().items()},
    )


def _csv_body(rows: pd.DataFrame) -> bytes:
    """The rows as CSV lines without the header (the base file's header already names them)."""
    buffer = io.StringIO()
    rows.to_csv(buffer, index=False, header=False, lineterminator="\n")
    return buffer.getvalue().encode("utf-8")


def write_source(base: Path, fresh: pd.DataFrame, target: Path) -> None:
    """``base``'s bytes (decompressed), then ``fresh``'s rows, gzip-compressed into ``target``
    (gzip's timestamp left out, so the same rows give the same bytes)."""

    def write(tmp: Path) -> None:
        with tmp.open("wb") as sink, gzip.GzipFile(fileobj=sink, mode="wb", mtime=0) as out:
            last = b"\n"
            with _open(base) as source:
                while chunk := source.read(1 << 20):
                    out.write(chunk)
                    last = chunk[-1:]
            if last != b"\n":
                out.write(b"\n")
            out.write(_csv_body(fresh))

    write_with(target, write)


def check_contract(base: Path, fresh: pd.DataFrame, max_examples: int) -> int:
    """The old and fresh rows together must satisfy the data contract, as validate will ask;
    return how many rows ``base`` holds."""
    old = read_csv(base)
    text = pd.read_csv(io.BytesIO(_csv_body(fresh)), names=list(fresh.columns), dtype=str)
    both = pd.concat([old, text], ignore_index=True)
    typed, problems = validate(both, max_examples)
    if typed is None:
        listing = "\n".join(f"  - {problem.describe()}" for problem in problems)
        raise DataError(
            f"the logged rows with their outcomes, appended to {base}, break the data contract "
            f"(line numbers count from {base}'s first row):\n{listing}"
        )
    return len(old)


def point_ingest_at(params_file: Path, data_file: Path) -> None:
    """params.yaml's ingest reads ``data_file`` (source: file); its comments are kept."""
    yaml_io = round_trip_yaml()
    document = yaml_io.load(params_file.read_text(encoding="utf-8"))
    document["ingest"]["source"] = "file"
    document["ingest"]["file"] = data_file.as_posix()
    buffer = io.StringIO()
    yaml_io.dump(document, buffer)
    write_with(params_file, lambda tmp: tmp.write_text(buffer.getvalue(), encoding="utf-8"))


def track(data_file: Path) -> bool:
    """`dvc add` the file in a DVC repository (git then keeps only its pointer); False when this
    is not one."""
    if not Path(".dvc").is_dir():
        log.warning("not a DVC repository: %s is not tracked by DVC", data_file)
        return False
    command = [sys.executable, "-m", "dvc", "add", str(data_file)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise DataError(f"dvc add {data_file} failed: {done.stderr.strip() or done.stdout}")
    return True


def retrain_data(
    params: Params,
    folder: Path,
    since: datetime | None,
    until: datetime | None,
    log_name: str,
    params_file: Path = DEFAULT_PARAMS,
) -> dict[str, Any]:
    """Write the next training source from the outcomes received in the window; return its
    record."""
    settings = params.monitor.retrain
    source = params.ingest.file if params.ingest.source == "file" else None
    added = windows_added(source) if source is not None else []
    start, end = outcome_window(since, until, added)
    outcomes = read_outcomes(folder)
    received = outcomes["received_at"]
    chosen = outcomes[(received < end) & (received >= start if start is not None else True)]
    oldest = (start or (chosen["received_at"].min() if len(chosen) else end)) - timedelta(
        days=params.serve.prediction_log.max_outcome_age_days + 1
    )
    predictions = read_predictions(folder, oldest, end) if len(chosen) else outcomes.iloc[:0]
    base = base_rows_file(params)
    fresh = fresh_rows(predictions, chosen, raw_header(base), params)
    count = len(fresh.rows)
    if count < settings.min_rows:
        raise TooFewOutcomesError(
            f"only {count} outcomes of logged predictions arrived in the window "
            f"(monitor.retrain.min_rows: {settings.min_rows}): nothing to retrain on yet"
        )
    base_rows = check_contract(base, fresh.rows, params.validate_.max_examples)
    first = start or chosen["received_at"].min().to_pydatetime()
    target = settings.folder / f"{PREFIX}{end.strftime('%Y%m%dT%H%M%SZ')}.csv.gz"
    if target.exists():
        raise DataError(f"{target} exists already: a source for this window end was written")
    window = _window(first, end)
    record = {
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "data": target.as_posix(),
        "base": {
            "file": base.as_posix(),
            "md5": md5(base),
            "rows": base_rows,
            "ingest": params.ingest.model_dump(mode="json"),
        },
        "fresh": {
            "rows": count,
            "received": window,
            "outcomes": fresh.outcomes,
            "model_versions": fresh.model_versions,
            "log": log_name,
        },
        "rows": base_rows + count,
        "windows": [*added, window],
    }
    write_source(base, fresh.rows, target)
    write_json(record_of(target), record)
    record["tracked_by_dvc"] = track(target)
    point_ingest_at(params_file, target)
    return record


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m credit_risk.monitoring.retrain",
        description="Append the predictions whose outcomes arrived in the window (by default since "
        "the last retraining) to the training rows, as the next training source that "
        "params.yaml's ingest reads.",
    )
    add_window_arguments(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = _arguments(argv)
    params = load_params()
    folder, log_name = chosen_log(args, params)
    try:
        record = retrain_data(params, folder, args.since, args.until, log_name)
    except TooFewOutcomesError as exc:
        log.warning("%s", exc)
        sys.exit(NOTHING_TO_DO)
    fresh = record["fresh"]
    log.info(
        "%s: %d rows (%d learned from before + %d labelled predictions whose outcomes arrived "
        "from %s to %s: %s); params.yaml's ingest reads it now: run `make repro`",
        record["data"],
        record["rows"],
        record["base"]["rows"],
        fresh["rows"],
        fresh["received"]["since"],
        fresh["received"]["until"],
        ", ".join(f"{n} {word}" for word, n in fresh["outcomes"].items()),
    )


if __name__ == "__main__":
    run("retrain-data", main)
