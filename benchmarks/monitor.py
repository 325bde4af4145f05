"""Benchmark `make monitor`: run time and peak memory on 1,000,000 logged predictions, against
100,000 in the same run (the baseline), and where the time goes.

The baseline log is written in the service's on-disk format by the log's own writer, from
synthetic rows scored by the pipeline's model, with outcomes for 10% of them; a larger log is
that one copied as often as needed, each copy's request ids made its own (writing a million
records one by one takes longer than monitoring them). The job then runs as `make monitor`
runs it, in a throw-away folder holding params.yaml, the reference rows, the evaluation's
metrics and the model's info. Prints a table and writes benchmarks/results/monitor.json.

    python benchmarks/monitor.py [--baseline 100000] [--copies 10] [--outcomes 0.1] [--parts]
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import joblib
import pandas as pd

from credit_risk.config import load_params
from credit_risk.monitoring import drift, performance, report
from credit_risk.monitoring.predictions import read_outcomes, read_predictions
from credit_risk.monitoring.simulate import Model, simulate
from credit_risk.synthetic import load_source
from pipeline import Measure, measure

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "monitor.json"


def workspace(into: Path) -> Path:
    """A folder the job can run in: params.yaml and the files it reads, where params say."""
    params = load_params(ROOT / "params.yaml")
    paths = params.paths
    needed = [
        Path("params.yaml"),
        getattr(paths, params.monitor.reference),
        paths.metrics,
        paths.model_info,
    ]
    for name in needed:
        (into / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, into / name)
    return into


def phases(folder: Path, reference: pd.DataFrame) -> dict[str, float]:
    """Seconds per part of the job, in this process: read, drift, quality, reports."""
    params = load_params(ROOT / "params.yaml")
    settings = params.monitor
    took: dict[str, float] = {}
    start = time.perf_counter()
    predictions = read_predictions(folder)
    outcomes = read_outcomes(folder)
    took["read log"] = time.perf_counter() - start
    start = time.perf_counter()
    drift.compare(reference, predictions, settings.drift)
    took["drift"] = time.perf_counter() - start
    start = time.perf_counter()
    rows = performance.labelled(predictions, outcomes)
    performance.judge(
        rows,
        None,
        params.train.decision_threshold,
        settings.performance,
        params.evaluate.protected_attributes,
        params.gate.fairness,
    )
    took["quality"] = time.perf_counter() - start
    start = time.perf_counter()
    verdict = {"drift": {"features": []}}  # charts only: the verdict's text is negligible
    found = drift.compare(reference, predictions, settings.drift)
    verdict["drift"]["features"] = [f.as_dict() for f in found.features]
    report.feature_cards(verdict, reference, predictions)
    took["charts"] = time.perf_counter() - start
    return {name: round(seconds, 2) for name, seconds in took.items()}


def copied(log: Path, into: Path, copies: int) -> None:
    """``copies`` copies of a log's files in one log, request ids prefixed by the copy number."""
    for path in sorted(p for p in log.rglob("*.jsonl")):
        data = path.read_bytes()
        target = into / path.relative_to(log)
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as out:
            for number in range(copies):
                out.write(data.replace(b'"request_id": "', f'"request_id": "c{number}-'.encode()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=int, default=100_000, help="rows of the baseline log")
    parser.add_argument("--copies", type=int, default=10, help="the large log: baseline x copies")
    parser.add_argument("--outcomes", type=float, default=0.1)
    parser.add_argument("--parts", action="store_true", help="also time each part in-process")
    args = parser.parse_args()

    params = load_params(ROOT / "params.yaml")
    info = json.loads((ROOT / params.paths.model_info).read_text(encoding="utf-8"))
    model = Model(joblib.load(ROOT / params.paths.model), info)
    source = load_source(ROOT / params.ingest.file)
    reference = pd.read_parquet(ROOT / getattr(params.paths, params.monitor.reference))
    results: dict[str, object] = {}
    baseline: Measure | None = None
    with tempfile.TemporaryDirectory(prefix="credit-risk-monitor-bench-") as tmp:
        place = workspace(Path(tmp) / "repo")
        small = Path(tmp) / "log-baseline"
        start = time.perf_counter()
        simulate(
            params, small, args.baseline, seed=1, outcomes=args.outcomes,
            model=model, source=source, end=datetime.now(UTC),
        )  # fmt: skip
        print(
            f"baseline log of {args.baseline:,} rows written in {time.perf_counter() - start:.0f} s"
        )
        large = Path(tmp) / "log-large"
        copied(small, large, args.copies)
        for rows, folder in ((args.baseline, small), (args.baseline * args.copies, large)):
            size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 1e6
            # Exit 1 is the alarm, a verdict like any other: only a failure stops the benchmark.
            job = f"{shlex.quote(sys.executable)} -m credit_risk.monitoring.job --log {folder}"
            run = measure(place, "sh", "-c", f"{job} || [ $? -eq 1 ]")
            verdict = json.loads((place / params.monitor.report).read_text(encoding="utf-8"))
            ratio = f", {run.seconds / baseline.seconds:.1f}x the baseline" if baseline else ""
            print(
                f"\n{rows:,} logged predictions ({size:,.0f} MB of JSON Lines): `make monitor` "
                f"{run.seconds:.1f} s, peak {run.peak_mb:,.0f} MB{ratio}; "
                f"{rows / run.seconds:,.0f} rows/s; alarm: {verdict['alarm']}"
            )
            baseline = baseline or run
            results[str(rows)] = {
                "job": asdict(run),
                "log_mb": round(size, 1),
                "ratio_to_baseline": round(run.seconds / baseline.seconds, 2),
                "alarm": verdict["alarm"],
            }
            if args.parts:
                parts = phases(folder, reference)
                print(
                    "  in-process parts: " + ", ".join(f"{k} {v:.1f} s" for k, v in parts.items())
                )
                results[str(rows)]["parts_seconds"] = parts  # type: ignore[index]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nfigures written to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
