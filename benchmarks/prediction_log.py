"""Benchmark the prediction log on its own: the writer's cost per request, and what finding a
score for an outcome costs as the log grows (it scans the days back to max_outcome_age_days).

    python benchmarks/prediction_log.py [--days 30] [--records-per-day 100000]

Writes a throw-away log of ``days`` days x ``records-per-day`` records (the contract's example
record, /score_batch-sized requests of 100), then times:
1. PredictionWriter.write for 1, 100 and 1,000 records per request (microseconds per request);
2. record_outcomes for one score logged today (found in the newest day: the usual case); for
   an unknown id (every day searched: the worst case), first on the bare log (every file
   scanned, MB per second; the days that are over get their indexes), then through those
   indexes; and for a score of the oldest day, through them;
3. read_predictions of one day.

Prints a table and writes benchmarks/results/prediction_log.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from credit_risk.files import write_json
from credit_risk.monitoring.predictions import (
    Outcome,
    PredictionWriter,
    UnknownRequestError,
    find_scored,
    prediction_files,
    read_predictions,
    record_outcomes,
)
from credit_risk.schema import contract, example_record, feature_columns, outcome_names

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "prediction_log.json"
VERSION = "credit-risk:0000000000000000"
BATCH = 100


def timed(call: object, repeat: int) -> float:
    """Median seconds of ``repeat`` calls."""
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()  # type: ignore[operator]
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--records-per-day", type=int, default=100_000)
    args = parser.parse_args()
    decision = contract().decisions.below_threshold
    now = datetime.now(UTC)
    results: dict[str, object] = {"days": args.days, "records_per_day": args.records_per_day}
    with tempfile.TemporaryDirectory(prefix="credit-risk-bench-log-") as tmp:
        folder = Path(tmp) / "log"
        writer = PredictionWriter(folder, feature_columns())
        write_us = {}
        for size in (1, 100, 1000):
            rows, probabilities = [example_record()] * size, [0.25] * size
            seconds = timed(
                lambda rows=rows, probabilities=probabilities, size=size: writer.write(
                    "bench", "score_batch", VERSION, rows, probabilities, [decision] * size
                ),
                max(20, 20_000 // size),
            )
            write_us[size] = round(seconds * 1e6, 1)
        results["write_us_per_request"] = write_us
        print(f"write: {write_us} microseconds per request, by records per request", flush=True)
        rows, probabilities = [example_record()] * BATCH, [0.25] * BATCH
        for day in range(args.days):
            moment = now - timedelta(days=day)
            for request in range(args.records_per_day // BATCH):
                writer.write(f"d{day}-r{request}", "score_batch", VERSION, rows, probabilities,
                             [decision] * BATCH, now=moment)  # fmt: skip
        writer.close()
        size_mb = sum(path.stat().st_size for path in prediction_files(folder)) / 1e6
        word = outcome_names()[0]
        found = timed(lambda: record_outcomes(folder, [Outcome("d0-r0", word)], args.days), 1)

        def unknown() -> None:
            try:
                record_outcomes(folder, [Outcome("no-such-id", word)], args.days)
            except UnknownRequestError:
                return
            raise SystemExit("an unknown id was found")

        started = time.perf_counter()
        unknown()  # the first search scans every file, and indexes the days that are over
        missing = time.perf_counter() - started
        indexed = timed(unknown, 3)
        oldest_id = f"d{args.days - 1}-r0"
        first = (now - timedelta(days=args.days)).date()
        oldest = timed(lambda: find_scored(folder, [(oldest_id, 0)], first, now.date()), 3)
        one_day = timed(lambda: read_predictions(folder, since=now.date()), 3)
        results.update(
            log_mb=round(size_mb, 1),
            outcome_found_today_seconds=round(found, 4),
            outcome_unknown_full_scan_seconds=round(missing, 3),
            scan_mb_per_second=round(size_mb / missing, 1),
            outcome_unknown_indexed_seconds=round(indexed, 4),
            outcome_oldest_day_indexed_seconds=round(oldest, 4),
            index_speedup=round(missing / indexed, 1),
            read_one_day_seconds=round(one_day, 3),
        )
    for key, value in results.items():
        print(f"{key}: {value}")
    write_json(RESULTS, results)
    print(f"figures written to {RESULTS.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
