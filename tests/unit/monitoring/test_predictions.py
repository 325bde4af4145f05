"""The prediction log: what is written is read back, by day and model version; a torn last line
is skipped and corruption elsewhere named; retention; outcomes all or nothing."""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from credit_risk.config import Params
from credit_risk.errors import DataError
from credit_risk.monitoring.predictions import (
    DAY,
    OUTCOMES,
    DuplicateOutcomeError,
    InvalidOutcomeError,
    Outcome,
    PredictionWriter,
    UnknownRequestError,
    delete_expired,
    index_of,
    log_folder,
    logged_features,
    parse_outcomes,
    prediction_files,
    read_outcomes,
    read_predictions,
    record_outcomes,
)
from credit_risk.schema import contract, example_record, feature_columns, outcome_names

VERSION = "credit-risk:0123abcd"
NOON = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def records(count: int) -> list[dict[str, Any]]:
    return [dict(example_record()) for _ in range(count)]


def decide(probabilities: list[float]) -> list[str]:
    words = contract().decisions
    return [
        words.at_or_above_threshold if p >= 0.5 else words.below_threshold for p in probabilities
    ]


@pytest.fixture
def writer(tmp_path: Path) -> PredictionWriter:
    return PredictionWriter(tmp_path / "log", feature_columns())


def write(
    writer: PredictionWriter, request_id: str, count: int = 1, at: datetime = NOON, **kw: Any
) -> None:
    probabilities = [round(0.1 + 0.8 * i / max(count, 1), 3) for i in range(count)]
    endpoint = kw.pop("endpoint", "score" if count == 1 else "score_batch")
    version = kw.pop("version", VERSION)
    writer.write(request_id, endpoint, version, records(count), probabilities,
                 decide(probabilities), now=at)  # fmt: skip


def test_round_trip_keeps_every_field_typed(writer: PredictionWriter) -> None:
    write(writer, "one")
    write(writer, "batch", count=4)
    frame = read_predictions(writer.folder)
    assert list(frame.columns) == [
        "request_id", "row", "time", "model_version", "endpoint",
        *feature_columns(), "probability", "decision",
    ]  # fmt: skip
    assert len(frame) == 5
    assert frame["request_id"].tolist() == ["one"] + ["batch"] * 4
    assert frame["row"].tolist() == [0, 0, 1, 2, 3]
    assert str(frame["time"].dt.tz) == "UTC" and (frame["time"] == NOON).all()
    assert frame["probability"].dtype == "float64"
    example = example_record()
    for name in feature_columns():
        assert frame[name].tolist() == [example[name]] * 5
    # pandas reads a file as it is, too (the README says so)
    (path,) = prediction_files(writer.folder)
    assert len(pd.read_json(path, lines=True)) == 5


def test_partitions_by_day_and_model_version(writer: PredictionWriter) -> None:
    write(writer, "a", at=NOON)
    write(writer, "b", at=NOON + timedelta(days=1))
    write(writer, "c", at=NOON + timedelta(days=1), version="credit-risk:ffff0000")
    folders = sorted(p.relative_to(writer.folder).parent.as_posix() for p in
                     prediction_files(writer.folder))  # fmt: skip
    assert folders == [
        "day=2026-03-10/model_version=credit-risk_0123abcd",
        "day=2026-03-11/model_version=credit-risk_0123abcd",
        "day=2026-03-11/model_version=credit-risk_ffff0000",
    ]
    next_day = read_predictions(writer.folder, since=date(2026, 3, 11))
    assert sorted(next_day["request_id"]) == ["b", "c"]
    first_day = read_predictions(writer.folder, until=date(2026, 3, 11))
    assert first_day["request_id"].tolist() == ["a"]
    one_version = read_predictions(writer.folder, model_version="credit-risk:ffff0000")
    assert one_version["request_id"].tolist() == ["c"]
    within = read_predictions(writer.folder, since=NOON - timedelta(minutes=1),
                              until=NOON + timedelta(minutes=1))  # fmt: skip
    assert within["request_id"].tolist() == ["a"]


def test_reads_only_the_days_in_range(writer: PredictionWriter) -> None:
    write(writer, "old", at=NOON - timedelta(days=3))
    write(writer, "new", at=NOON)
    (old,) = prediction_files(writer.folder, last=(NOON - timedelta(days=2)).date())
    old.write_text("corrupt, but outside the range\n{}\n")
    assert read_predictions(writer.folder, since=NOON.date())["request_id"].tolist() == ["new"]


def test_a_torn_last_line_is_skipped(writer: PredictionWriter) -> None:
    write(writer, "whole", count=3)
    (path,) = prediction_files(writer.folder)
    with path.open("a") as handle:
        handle.write('{"request_id": "torn", "row": 0, "time": "2026-03')
    frame = read_predictions(writer.folder)
    assert frame["request_id"].tolist() == ["whole"] * 3


def test_corruption_elsewhere_names_file_and_line(writer: PredictionWriter) -> None:
    write(writer, "a", count=3)
    (path,) = prediction_files(writer.folder)
    lines = path.read_text().splitlines()
    lines[1] = lines[1][:20]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"{path}:2: not a JSON line"):
        read_predictions(writer.folder)
    path.write_text('{"request_id": "x"}\n')
    with pytest.raises(DataError, match=rf"{path}:1: a prediction line without"):
        read_predictions(writer.folder)


def test_each_process_appends_to_its_own_file(tmp_path: Path) -> None:
    first = PredictionWriter(tmp_path, feature_columns())
    second = PredictionWriter(tmp_path, feature_columns())
    write(first, "from-first")
    write(second, "from-second")
    assert first.writer_id != second.writer_id and str(os.getpid()) in first.writer_id
    assert len(prediction_files(tmp_path)) == 2
    assert sorted(read_predictions(tmp_path)["request_id"]) == ["from-first", "from-second"]


def test_threads_never_interleave_lines(writer: PredictionWriter) -> None:
    def burst(name: str) -> None:
        for n in range(50):
            write(writer, f"{name}-{n}", count=20)

    threads = [threading.Thread(target=burst, args=(f"t{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    frame = read_predictions(writer.folder)
    assert len(frame) == 4 * 50 * 20
    assert (frame.groupby("request_id")["row"].apply(list) == [list(range(20))] * 200).all()


def test_protected_attributes_are_left_out_unless_kept(params: Params) -> None:
    protected = list(params.evaluate.protected_attributes)
    if not protected:
        pytest.skip("no protected attributes in params")
    none_kept = logged_features(protected, [])
    assert not set(protected) & set(none_kept)
    assert set(none_kept) | set(protected) == set(feature_columns())
    assert logged_features(protected, protected) == feature_columns()
    kept = set(logged_features(protected, params.serve.prediction_log.keep_attributes))
    assert kept & set(protected) == set(params.serve.prediction_log.keep_attributes)


def test_the_writer_writes_only_its_columns(tmp_path: Path, params: Params) -> None:
    protected = list(params.evaluate.protected_attributes)
    if not protected:
        pytest.skip("no protected attributes in params")
    writer = PredictionWriter(tmp_path, logged_features(protected, []))
    write(writer, "r")
    (path,) = prediction_files(tmp_path)
    line = json.loads(path.read_text())
    assert not set(protected) & set(line)
    assert not set(protected) & set(read_predictions(tmp_path).columns)


def test_the_environment_names_the_folder(monkeypatch: pytest.MonkeyPatch, params: Params) -> None:
    settings = params.serve.prediction_log
    monkeypatch.delenv("CREDIT_RISK_PREDICTION_LOG", raising=False)
    assert log_folder(settings) == settings.folder
    monkeypatch.setenv("CREDIT_RISK_PREDICTION_LOG", "/srv/staging/predictions")
    assert log_folder(settings) == Path("/srv/staging/predictions")


def test_retention_deletes_old_days_only(writer: PredictionWriter) -> None:
    for age in (0, 1, 2, 5):
        write(writer, f"age-{age}", at=NOON - timedelta(days=age))
    record_outcomes(writer.folder, [Outcome("age-5", outcome_names()[0])], 30,
                    now=NOON - timedelta(days=5))  # fmt: skip
    gone = delete_expired(writer.folder, retention_days=2, today=NOON.date())
    assert sorted(p.name for p in gone) == [f"{DAY}2026-03-05", f"{DAY}2026-03-05"]
    assert sorted(read_predictions(writer.folder)["request_id"]) == ["age-0", "age-1", "age-2"]
    assert read_outcomes(writer.folder).empty
    assert (writer.folder / OUTCOMES).is_dir()


def test_a_new_day_applies_retention(tmp_path: Path) -> None:
    writer = PredictionWriter(tmp_path, feature_columns(), retention_days=1)
    write(writer, "old", at=NOON - timedelta(days=3))
    write(writer, "today", at=NOON)
    assert read_predictions(tmp_path)["request_id"].tolist() == ["today"]


# --- outcomes ----------------------------------------------------------------------------------


@pytest.fixture
def logged(writer: PredictionWriter) -> Path:
    write(writer, "single")
    write(writer, "batch", count=3)
    return writer.folder


def test_outcomes_round_trip(logged: Path) -> None:
    bad, good = outcome_names()[1], outcome_names()[0]
    stored = record_outcomes(
        logged, [Outcome("single", bad), Outcome("batch", good, row=2)], 30, now=NOON
    )
    assert stored == 2
    frame = read_outcomes(logged)
    assert list(frame.columns) == ["request_id", "row", "outcome", "received_at"]
    assert frame[["request_id", "row", "outcome"]].values.tolist() == [
        ["single", 0, bad],
        ["batch", 2, good],
    ]
    assert (frame["received_at"] == NOON).all()


def stored_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    ("second", "error"),
    [
        ([Outcome("batch", "?", row=0)], InvalidOutcomeError),
        ([Outcome("batch", "W", row=1), Outcome("nobody", "W")], UnknownRequestError),
        ([Outcome("batch", "W", row=1), Outcome("batch", "W", row=9)], UnknownRequestError),
        ([Outcome("batch", "W", row=1), Outcome("single", "W")], DuplicateOutcomeError),
        ([Outcome("batch", "W", row=1), Outcome("batch", "W", row=1)], DuplicateOutcomeError),
    ],
)
def test_a_refused_submission_stores_nothing(
    logged: Path, second: list[Outcome], error: type[Exception]
) -> None:
    word = outcome_names()[1]
    record_outcomes(logged, [Outcome("single", word)], 30, now=NOON)
    before = stored_bytes(logged)
    named = [Outcome(o.request_id, word if o.outcome == "W" else o.outcome, o.row) for o in second]
    with pytest.raises(error) as refused:
        record_outcomes(logged, named, 30, now=NOON)
    assert stored_bytes(logged) == before
    if error is UnknownRequestError:
        assert "nobody" in str(refused.value) or "row 9" in str(refused.value)
    assert read_outcomes(logged)["request_id"].tolist() == ["single"]


def test_scores_older_than_the_limit_are_unknown(logged: Path) -> None:
    later = NOON + timedelta(days=10)
    with pytest.raises(UnknownRequestError, match="last 5 days"):
        record_outcomes(logged, [Outcome("single", outcome_names()[0])], 5, now=later)
    assert record_outcomes(logged, [Outcome("single", outcome_names()[0])], 10, now=later) == 1


def test_a_torn_outcome_line_loses_only_that_submission(logged: Path) -> None:
    word = outcome_names()[0]
    record_outcomes(logged, [Outcome("single", word)], 30, now=NOON)
    (path,) = (logged / OUTCOMES).rglob("*.jsonl")
    with path.open("a") as handle:
        handle.write('{"received_at": "2026-03-10T12:00:00+00:00", "outcomes": [{"requ')
    assert read_outcomes(logged)["request_id"].tolist() == ["single"]


def test_parse_outcomes_names_the_bad_field() -> None:
    word = outcome_names()[0]
    assert parse_outcomes([{"request_id": "a", "outcome": word}]) == [Outcome("a", word, 0)]
    assert parse_outcomes([{"request_id": "a", "outcome": word, "row": 2}])[0].row == 2
    for items, field in [
        ([{"outcome": word}], "outcomes.0.request_id"),
        ([{"request_id": "a", "outcome": word}, {"request_id": "b"}], "outcomes.1.outcome"),
        ([{"request_id": "a", "outcome": "maybe"}], "outcomes.0.outcome"),
        ([{"request_id": "a", "outcome": word, "row": -1}], "outcomes.0.row"),
        ([{"request_id": "a", "outcome": word, "row": True}], "outcomes.0.row"),
        ([{"request_id": "a", "outcome": word, "extra": 1}], "outcomes.0: unknown fields"),
        ([], "outcomes"),
        (["a"], "outcomes.0"),
    ]:
        with pytest.raises(InvalidOutcomeError, match=field.replace(".", r"\.")):
            parse_outcomes(items)


def test_concurrent_submissions_of_one_score_store_one(logged: Path) -> None:
    word = outcome_names()[0]
    results: list[str] = []

    def submit() -> None:
        try:
            record_outcomes(logged, [Outcome("single", word)], 30, now=NOON)
            results.append("stored")
        except DuplicateOutcomeError:
            results.append("duplicate")

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["duplicate"] * 7 + ["stored"]
    assert len(read_outcomes(logged)) == 1


def test_empty_log_reads_as_empty_frames(tmp_path: Path) -> None:
    assert read_predictions(tmp_path / "none").empty
    assert read_outcomes(tmp_path / "none").empty


def test_each_line_is_exactly_the_json_of_its_record(tmp_path: Path) -> None:
    """The writer builds lines from pieces for speed; they must be what json.dumps would write,
    whatever the row's keys and order (the outcome lookup reads the lines' starts)."""
    features = feature_columns()
    example = example_record()
    shuffled = {name: example[name] for name in reversed(features)}
    extra = {**example, "not-logged": 1}
    for logged in (features, features[1:]):
        writer = PredictionWriter(tmp_path / str(len(logged)), logged)
        for row in (example, shuffled, extra):
            lines = writer.lines('id-"1"', "score", VERSION, NOON, [row, row], [0.25, 1e-7],
                                 ["a", "b"]).decode().splitlines()  # fmt: skip
            for index, (line, probability, decision) in enumerate(
                zip(lines, [0.25, 1e-7], ["a", "b"], strict=True)
            ):
                record = {
                    "request_id": 'id-"1"', "row": index,
                    "time": NOON.isoformat(timespec="microseconds"),
                    "model_version": VERSION, "endpoint": "score",
                    **{name: row.get(name) for name in logged},
                    "probability": probability, "decision": decision,
                }  # fmt: skip
                assert line == json.dumps(record)


def test_outcomes_find_ids_that_json_escapes(writer: PredictionWriter) -> None:
    write(writer, 'odd "id" \\ é')
    assert record_outcomes(writer.folder, [Outcome('odd "id" \\ é', outcome_names()[0])], 30,
                           now=NOON) == 1  # fmt: skip


def test_days_that_are_over_are_indexed_and_searched_through_the_index(
    writer: PredictionWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An outcome may come a year after its score: the days it searches get an index on the
    first search, and later searches read the index, not the records; a day's file that grows
    after its index was built is searched whole again."""
    for day in range(5):
        for request in range(20):
            write(writer, f"d{day}-r{request}", count=3, at=NOON - timedelta(days=day))
    writer.close()
    folder, word = writer.folder, outcome_names()[0]
    with pytest.raises(UnknownRequestError):
        record_outcomes(folder, [Outcome("no-such-id", word)], 30, now=NOON)
    files = prediction_files(folder)
    indexes = [index_of(path) for path in files]
    assert all(index.is_file() for index in indexes)  # NOON's day is long over: all indexed

    reads: list[Path] = []
    real = Path.read_bytes

    def counted(path: Path) -> bytes:
        reads.append(path)
        return real(path)

    monkeypatch.setattr(Path, "read_bytes", counted)
    with pytest.raises(UnknownRequestError):
        record_outcomes(folder, [Outcome("still-no-such-id", word)], 30, now=NOON)
    assert [path for path in reads if path.suffix == ".jsonl"] == []  # indexes only
    oldest = "d4-r7"
    assert record_outcomes(folder, [Outcome(oldest, word, 2)], 30, now=NOON) == 1
    assert [path.parent.parent.name for path in reads if path.suffix == ".jsonl"] == [
        f"{DAY}{(NOON - timedelta(days=4)).date()}"
    ]  # only the file that holds it, to confirm
    # A record written into a finished day after its index was built is still found.
    write(writer, "late", at=NOON - timedelta(days=2))
    writer.close()
    assert record_outcomes(folder, [Outcome("late", word)], 30, now=NOON) == 1
    # The reader never takes an index for a log file.
    assert len(read_predictions(folder)) == 5 * 20 * 3 + 1
