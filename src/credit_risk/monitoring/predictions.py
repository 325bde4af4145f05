"""The prediction log: its one definition, its writer and its readers.

Every record the service scores is one line of JSON (JSON Lines) in a folder tree::

    <folder>/day=YYYY-MM-DD/model_version=<version, ':' as '_'>/<writer id>.jsonl
    <folder>/outcomes/day=YYYY-MM-DD/outcomes.jsonl

A prediction line holds, in this order: ``request_id`` (the service's X-Request-ID), ``row``
(the record's place in its request: 0 for /score and /explain), ``time`` (ISO 8601, UTC),
``model_version``, ``endpoint``, the contract's feature columns as the request gave them (a
protected attribute only if ``serve.prediction_log.keep_attributes`` lists it), ``probability``
(of the contract's positive outcome) and ``decision``. ``pd.read_json(file, lines=True)`` reads
a file as it is; `read_predictions` reads a range of days, typed.

Durability: each process appends to a file of its own (its writer id is unique to the process,
so no two processes ever share a file and no lock is needed), with one ``write`` per request
straight to the operating system before the service answers. A process killed at any moment
loses at most the requests it had not answered; the page cache outlives the process. Only a
power loss or a kernel crash can lose answered requests, unless ``fsync`` is on: then every
request also waits for the disk (a few milliseconds on an SSD, more on a network disk).
A kill in the middle of a write leaves a torn last line, which the reader skips; a bad line
anywhere else is corruption, and reading stops with an error naming the file and line.

Outcomes (what really happened, known later) are appended one submission per line, under a
lock shared by every process using the folder, after checking every item: a submission is
stored whole or not at all. Each names a logged score by ``request_id`` and ``row``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import math
import os
import re
import secrets
import shutil
import socket
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import pandas as pd

from credit_risk.config import PredictionLog
from credit_risk.errors import CreditRiskError, DataError
from credit_risk.files import atomic_path
from credit_risk.schema import PANDAS_DTYPES, contract, feature_columns, outcome_names

LOG_VARIABLE = "CREDIT_RISK_PREDICTION_LOG"  # the folder, for one deploy environment
DAY = "day="
VERSION = "model_version="
SUFFIX = ".jsonl"
OUTCOMES = "outcomes"
OUTCOMES_FILE = "outcomes.jsonl"
LOCK_FILE = ".lock"
# The keys of a prediction line before its features, and after them.
HEAD = ("request_id", "row", "time", "model_version", "endpoint")
TAIL = ("probability", "decision")
OUTCOME_COLUMNS = ("request_id", "row", "outcome", "received_at")
# How a prediction line starts (json.dumps with the default separators, keys in HEAD order):
# the outcome lookup finds request ids with this, without parsing whole lines.
FEW_IDS = 32  # up to this many ids still to find, search for each; more: read every line start
INDEX_SUFFIX = ".ids"  # beside each log file of a day that is over: see find_scored
LINE_START = re.compile(rb'^\{"request_id": "((?:[^"\\]|\\.)*)", "row": (\d+),', re.MULTILINE)


def log_folder(settings: PredictionLog) -> Path:
    """The log's folder: CREDIT_RISK_PREDICTION_LOG if set (each deploy environment has its
    own), else ``serve.prediction_log.folder``."""
    return Path(os.environ.get(LOG_VARIABLE) or settings.folder)


def version_folder(model_version: str) -> str:
    """The partition folder of a model version (':' is not safe in every file system)."""
    return f"{VERSION}{model_version.replace(':', '_')}"


def logged_features(protected: Iterable[str], keep: Iterable[str]) -> list[str]:
    """The feature columns a prediction line holds: all but the protected ones not kept."""
    left_out = set(protected) - set(keep)
    return [name for name in feature_columns() if name not in left_out]


def new_writer_id() -> str:
    """Unique to this process: host, pid, and a random part (pids are reused)."""
    host = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname())[:40] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(4)}"


def _utc(moment: datetime | date | str | None) -> datetime | None:
    """A time as an aware UTC datetime; naive times and dates are taken as UTC."""
    if moment is None:
        return None
    stamp = pd.Timestamp(moment)
    stamp = stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp.tz_convert(UTC)
    return stamp.to_pydatetime()


def day_of(folder: PurePath) -> date | None:
    """The day a partition folder (day=YYYY-MM-DD) holds; None for any other name."""
    if not folder.name.startswith(DAY):
        return None
    try:
        return date.fromisoformat(folder.name.removeprefix(DAY))
    except ValueError:
        return None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


# --- writing -----------------------------------------------------------------------------------


class PredictionWriter:
    """Appends a process's scored records to its own files; safe to share between threads."""

    def __init__(
        self,
        folder: Path,
        features: Sequence[str],
        fsync: bool = False,
        retention_days: int | None = None,
        writer_id: str | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.features = list(features)
        self.fsync = fsync
        self.retention_days = retention_days
        self.writer_id = writer_id or new_writer_id()
        self._lock = threading.Lock()
        self._files: dict[tuple[str, str], int] = {}
        self._day = ""

    def write(
        self,
        request_id: str,
        endpoint: str,
        model_version: str,
        rows: Sequence[Mapping[str, Any]],
        probabilities: Sequence[float] | np.ndarray,
        decisions: Sequence[str],
        now: datetime | None = None,
    ) -> None:
        """Append one line per record, and return once the operating system has them all."""
        moment = (now or datetime.now(UTC)).astimezone(UTC)
        data = self.lines(request_id, endpoint, model_version, moment, rows, probabilities,
                          decisions)  # fmt: skip
        day = moment.date().isoformat()
        with self._lock:
            fd = self._file(day, model_version)
            _write_all(fd, data)
            if self.fsync:
                os.fsync(fd)

    def lines(
        self,
        request_id: str,
        endpoint: str,
        model_version: str,
        moment: datetime,
        rows: Sequence[Mapping[str, Any]],
        probabilities: Sequence[float] | np.ndarray,
        decisions: Sequence[str],
    ) -> bytes:
        """The records as JSON lines: each exactly ``json.dumps`` of the record's dict (keys in
        HEAD, features, TAIL order), built from pieces, since a batch's per-row dicts and
        encoder calls would cost more than scoring it."""
        dumps = json.dumps
        start = f'{{"request_id": {dumps(request_id)}, "row": '
        middle = (
            f', "time": "{moment.isoformat(timespec="microseconds")}", '
            f'"model_version": {dumps(model_version)}, "endpoint": {dumps(endpoint)}, '
        )
        features, lines = self.features, []
        for index, (row, probability, decision) in enumerate(
            zip(rows, probabilities, decisions, strict=True)
        ):
            # A row with exactly the logged features, in order (the service's, usually), is
            # encoded as it is; any other is cut down to them first.
            given = row if list(row) == features else {name: row.get(name) for name in features}
            value = float(probability)
            if not math.isfinite(value):
                raise ValueError(f"probability {value} is not a number in [0, 1]")
            lines.append(
                f"{start}{index}{middle}{dumps(given, allow_nan=False)[1:-1]}, "
                f'"probability": {value!r}, "decision": {dumps(decision)}}}'
            )
        return ("\n".join(lines) + "\n").encode()

    def _file(self, day: str, model_version: str) -> int:
        key = (day, model_version)
        fd = self._files.get(key)
        if fd is not None:
            return fd
        if day != self._day:  # a new day: yesterday's files are done with
            for old in [k for k in self._files if k[0] != day]:
                os.close(self._files.pop(old))
            self._day = day
            if self.retention_days is not None:
                delete_expired(self.folder, self.retention_days, date.fromisoformat(day))
        partition = self.folder / f"{DAY}{day}" / version_folder(model_version)
        partition.mkdir(parents=True, exist_ok=True)
        path = partition / f"{self.writer_id}{SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if self.fsync:  # the new file's name must survive a power loss as well
            _fsync_folder(partition)
        self._files[key] = fd
        return fd

    def close(self) -> None:
        with self._lock:
            for fd in self._files.values():
                os.close(fd)
            self._files.clear()


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- reading -----------------------------------------------------------------------------------


def _lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) of each line; a torn last line (no newline, not JSON) is skipped."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:  # deleted by retention while being read
        return
    lines = data.split(b"\n")
    torn = lines.pop()  # after the last newline: b"" unless the last write was cut short
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except ValueError as problem:
            raise DataError(f"{path}:{number}: not a JSON line ({problem})") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}:{number}: not a JSON object")
        yield number, record
    if torn:
        with contextlib.suppress(ValueError):
            record = json.loads(torn)
            if isinstance(record, dict):  # cut just before its newline: whole
                yield len(lines) + 1, record


def _days(folder: Path, first: date | None, last: date | None) -> list[Path]:
    """The day partitions in [first, last], oldest first."""
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        day = day_of(path)
        if day is None or (first and day < first) or (last and day > last):
            continue
        found.append((day, path))
    return [path for _, path in sorted(found)]


def prediction_files(
    folder: Path, first: date | None = None, last: date | None = None, model_version: str = ""
) -> list[Path]:
    """The log's files for the days in [first, last] (and one model version, if given)."""
    wanted = version_folder(model_version) if model_version else None
    files = []
    for day in _days(Path(folder), first, last):
        for version in sorted(day.iterdir()):
            if version.name.startswith(VERSION) and (wanted is None or version.name == wanted):
                files.extend(sorted(version.glob(f"*{SUFFIX}")))
    return files


def read_predictions(
    folder: Path,
    since: datetime | date | str | None = None,
    until: datetime | date | str | None = None,
    model_version: str | None = None,
) -> pd.DataFrame:
    """The logged predictions with ``since <= time < until`` (UTC; naive times are UTC), of one
    model version if given, one row per scored record, oldest day first.

    Only the day partitions in range are read. Columns: request_id, row, time (datetime, UTC),
    model_version, endpoint, the logged features (typed as the contract says, where every value
    is present), probability, decision. Raises DataError naming the file and line of a corrupt
    line (a torn last line of a file is skipped: a write cut short by a kill).
    """
    start, end = _utc(since), _utc(until)
    last_day = None
    if end is not None:  # `until` is exclusive: midnight belongs to the day before
        last_day = (end - timedelta(microseconds=1)).date()
    files = prediction_files(
        Path(folder), start.date() if start else None, last_day, model_version or ""
    )
    frames = [_read_file(path) for path in files]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return _typed(frame, start, end)


def _read_file(path: Path) -> pd.DataFrame:
    """One file's records: pandas' JSON Lines reader, and where it fails or a line lacks a key,
    line by line, to name the line (and to skip a torn last one)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:  # deleted by retention while being read
        return pd.DataFrame()
    whole = data[: data.rfind(b"\n") + 1]  # without a torn last line
    if whole == data and whole:
        try:
            frame = pd.read_json(io.BytesIO(whole), lines=True, dtype=False, precise_float=True)
        except ValueError:
            frame = None
        if frame is not None and all(
            key in frame.columns and frame[key].notna().all() for key in (*HEAD, *TAIL)
        ):
            return frame
    records = []
    for number, record in _lines(path):
        missing = [key for key in (*HEAD, *TAIL) if record.get(key) is None]
        if missing:
            raise DataError(f"{path}:{number}: a prediction line without {missing}")
        records.append(record)
    return pd.DataFrame.from_records(records)


def _typed(frame: pd.DataFrame, start: datetime | None, end: datetime | None) -> pd.DataFrame:
    if frame.empty:
        frame = pd.DataFrame(columns=[*HEAD, *TAIL])
    features = [name for name in feature_columns() if name in frame.columns]
    frame = frame[[*HEAD, *features, *TAIL]].copy()
    frame["time"] = pd.to_datetime(frame["time"], utc=True, format="ISO8601")
    frame["row"] = frame["row"].astype("int64")
    frame["probability"] = frame["probability"].astype("float64")
    for name in ("request_id", "model_version", "endpoint", "decision"):
        frame[name] = frame[name].astype(str) if len(frame) else frame[name].astype(object)
    rules = contract().columns
    for name in features:
        if len(frame) and frame[name].notna().all():
            dtype: Any = PANDAS_DTYPES[rules[name].type]
            frame[name] = frame[name].astype(dtype)
    if start is not None:
        frame = frame[frame["time"] >= start]
    if end is not None:
        frame = frame[frame["time"] < end]
    return frame.reset_index(drop=True)


# --- retention ---------------------------------------------------------------------------------


def delete_expired(folder: Path, retention_days: int, today: date | None = None) -> list[Path]:
    """Delete the day partitions (predictions and outcomes) older than ``retention_days``;
    return what was deleted. Safe to run from several processes at once."""
    oldest = (today or datetime.now(UTC).date()) - timedelta(days=retention_days)
    folder = Path(folder)
    gone = []
    for base in (folder, folder / OUTCOMES):
        for path in _days(base, None, oldest - timedelta(days=1)):
            shutil.rmtree(path, ignore_errors=True)
            gone.append(path)
    return gone


# --- outcomes ----------------------------------------------------------------------------------


class OutcomeError(CreditRiskError):
    """A submission of outcomes refused as a whole; ``status`` is the HTTP status it means."""

    status = 422


class InvalidOutcomeError(OutcomeError):
    status = 422


class UnknownRequestError(OutcomeError):
    status = 404


class DuplicateOutcomeError(OutcomeError):
    status = 409


@dataclass(frozen=True)
class Outcome:
    request_id: str
    outcome: str  # the contract's word for the positive or the negative outcome
    row: int = 0  # the record's place in a /score_batch request


OUTCOME_FIELDS = {"request_id", "outcome", "row"}


def parse_outcomes(items: object) -> list[Outcome]:
    """Outcomes from decoded JSON (a list of objects); InvalidOutcomeError names the bad field."""
    words = sorted(outcome_names().values())
    if not isinstance(items, list) or not items:
        raise InvalidOutcomeError("outcomes: a non-empty list of {request_id, outcome[, row]}")
    parsed = []
    for index, item in enumerate(items):
        where = f"outcomes.{index}"
        if not isinstance(item, dict):
            raise InvalidOutcomeError(f"{where}: an object {{request_id, outcome[, row]}}")
        extra = sorted(set(item) - OUTCOME_FIELDS)
        if extra:
            raise InvalidOutcomeError(f"{where}: unknown fields {extra}")
        request_id, outcome, row = item.get("request_id"), item.get("outcome"), item.get("row", 0)
        if not isinstance(request_id, str) or not request_id:
            raise InvalidOutcomeError(f"{where}.request_id: required, a non-empty string")
        if outcome not in words:
            raise InvalidOutcomeError(f"{where}.outcome: required, one of {words}")
        if type(row) is not int or row < 0:
            raise InvalidOutcomeError(f"{where}.row: an integer >= 0 (the place in a batch)")
        parsed.append(Outcome(request_id, str(outcome), row))
    return parsed


@contextlib.contextmanager
def _outcomes_locked(folder: Path) -> Iterator[Path]:
    """The outcomes folder, locked against every other process that uses it."""
    base = Path(folder) / OUTCOMES
    base.mkdir(parents=True, exist_ok=True)
    with (base / LOCK_FILE).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield base
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _key_hash(request_id: str, row: int) -> int:
    """A (request_id, row) pair as 64 bits, for the files' indexes."""
    digest = hashlib.blake2b(f"{request_id}\x00{row}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _keys_in(data: bytes) -> Iterator[tuple[str, int]]:
    """The (request_id, row) of every line of a log file's bytes (read from each line's start)."""
    for match in LINE_START.finditer(data):
        quoted = match[1]
        rid = json.loads(b'"' + quoted + b'"') if b"\\" in quoted else quoted.decode()
        yield rid, int(match[2])


def index_of(path: Path) -> Path:
    """The index kept beside a log file: its keys' hashes, sorted (``.ids``, never read as log)."""
    return path.with_suffix(INDEX_SUFFIX)


def _load_index(path: Path, size: int) -> np.ndarray | None:
    """The file's index, if one was built when the file had ``size`` bytes (else None)."""
    try:
        stored = np.fromfile(index_of(path), dtype="<u8")
    except (FileNotFoundError, ValueError):
        return None
    if len(stored) == 0 or int(stored[0]) != size:
        return None
    return stored[1:]


def _in_index(index: np.ndarray, hashes: Mapping[tuple[str, int], int]) -> set[tuple[str, int]]:
    """The keys whose hash the index holds (a match may be another key's hash: confirm it)."""
    if len(index) == 0:
        return set()
    keys = list(hashes)
    probes = np.array([hashes[key] for key in keys], dtype="<u8")
    places = np.searchsorted(index, probes).clip(max=len(index) - 1)
    return {key for key, hit in zip(keys, index[places] == probes, strict=True) if hit}


def _write_index(path: Path, data: bytes) -> None:
    """Index a file whose day is over: its size, then its keys' hashes sorted. Written whole or
    not at all; a log file that grows after (a write that began before midnight) makes its
    index stale, and the size says so."""
    hashes = np.fromiter((_key_hash(*key) for key in _keys_in(data)), dtype="<u8")
    stored = np.concatenate([np.array([len(data) - 1], dtype="<u8"), np.sort(hashes)])
    # An index is an optimisation: failing to write one (a read-only log) is never a failure.
    with contextlib.suppress(OSError), atomic_path(index_of(path)) as tmp:
        stored.tofile(tmp)


def find_scored(
    folder: Path, keys: Iterable[tuple[str, int]], first: date, last: date
) -> set[tuple[str, int]]:
    """Which (request_id, row) pairs the log holds in the days [first, last], newest day first,
    stopping once all are found.

    A file of a day that is over gets an index on its first search (``.ids``: its size and
    its keys' 64-bit hashes, sorted), so a later search reads 8 bytes per record instead of
    the record, and reads the file itself only to confirm a hash that matches. Today's files
    are still growing and are searched directly: a few ids as bytes (memory speed), many at
    once by reading each line's start."""
    wanted = set(keys)
    found: set[tuple[str, int]] = set()
    needles = {
        key: f'\n{{"request_id": {json.dumps(key[0])}, "row": {key[1]},'.encode() for key in wanted
    }
    hashes = {key: _key_hash(*key) for key in wanted}
    today = datetime.now(UTC).date()
    for path in reversed(prediction_files(Path(folder), first, last)):
        try:
            size = path.stat().st_size
            closed = day_of(path.parent.parent) != today
            index = _load_index(path, size) if closed else None
            if index is not None:
                candidates = _in_index(index, {key: hashes[key] for key in wanted - found})
                if not candidates:
                    continue
            else:
                candidates = wanted - found
            data = b"\n" + path.read_bytes()  # every line, the first included, follows a newline
        except FileNotFoundError:  # deleted by retention while searched
            continue
        if closed and index is None:
            _write_index(path, data)
        if len(candidates) <= FEW_IDS:
            found.update(key for key in candidates if needles[key] in data)
        else:
            found.update(key for key in _keys_in(data) if key in candidates)
        if found == wanted:
            break
    return found


def _outcome_lines(base: Path, first: date | None) -> Iterator[dict[str, Any]]:
    for day in _days(base, first, None):
        for _, record in _lines(day / OUTCOMES_FILE):
            yield record


def record_outcomes(
    folder: Path, outcomes: Sequence[Outcome], max_age_days: int, now: datetime | None = None
) -> int:
    """Store outcomes for logged scores, all or none; return how many were stored.

    Raises UnknownRequestError (no score with that request id and row in the last ``max_age_days``
    days), DuplicateOutcomeError (that score has an outcome already, or the submission names it
    twice) or InvalidOutcomeError. The check and the write hold a lock shared by every process using
    the folder, so two submissions for the same score cannot both succeed.
    """
    if not outcomes:
        raise InvalidOutcomeError("outcomes: a non-empty list of {request_id, outcome[, row]}")
    words = set(outcome_names().values())
    for index, item in enumerate(outcomes):
        if item.outcome not in words:
            raise InvalidOutcomeError(f"outcomes.{index}.outcome: one of {sorted(words)}")
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    first = moment.date() - timedelta(days=max_age_days)
    keys = [(item.request_id, item.row) for item in outcomes]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise DuplicateOutcomeError(f"named twice in this submission: {_named(repeated)}")
    with _outcomes_locked(Path(folder)) as base:
        found = find_scored(Path(folder), keys, first, moment.date())
        unknown = [key for key in keys if key not in found]
        if unknown:
            raise UnknownRequestError(
                f"no logged score for {_named(unknown)} in the last {max_age_days} days"
            )
        wanted = set(keys)
        known = {
            (entry["request_id"], int(entry.get("row", 0)))
            for line in _outcome_lines(base, first)
            for entry in line.get(OUTCOMES, [])
        }
        taken = sorted(wanted & known)
        if taken:
            raise DuplicateOutcomeError(f"already has an outcome: {_named(taken)}")
        line = {
            "received_at": moment.isoformat(timespec="microseconds"),
            OUTCOMES: [
                {"request_id": item.request_id, "row": item.row, "outcome": item.outcome}
                for item in outcomes
            ],
        }
        day = base / f"{DAY}{moment.date().isoformat()}"
        day.mkdir(exist_ok=True)
        # One line, one write: a submission cut short by a kill is a torn last line, skipped.
        fd = os.open(day / OUTCOMES_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            _write_all(fd, (json.dumps(line) + "\n").encode())
            os.fsync(fd)  # acknowledged outcomes are rare and precious: always to the disk
        finally:
            os.close(fd)
    return len(outcomes)


def _named(keys: Sequence[tuple[str, int]], most: int = 5) -> str:
    shown = ", ".join(f"request_id {rid!r} row {row}" for rid, row in keys[:most])
    return shown + (f" and {len(keys) - most} more" if len(keys) > most else "")


def read_outcomes(folder: Path) -> pd.DataFrame:
    """Every stored outcome: request_id, row, outcome (the contract's word), received_at (UTC)."""
    rows = [
        {**entry, "received_at": line["received_at"]}
        for line in _outcome_lines(Path(folder) / OUTCOMES, None)
        for entry in line.get(OUTCOMES, [])
    ]
    frame = pd.DataFrame.from_records(rows, columns=list(OUTCOME_COLUMNS))
    frame["received_at"] = pd.to_datetime(frame["received_at"], utc=True, format="ISO8601")
    frame["row"] = frame["row"].astype("int64")
    return frame
