"""Benchmark `make monitor`: run time and peak memory on 1,000,000 logged predictions, against
100,000 in the same run (the baseline), and where the time goes.

Each log is written in the service's on-disk format (JSON Lines, by the log's own writer) from
synthetic rows scored by the pipeline's model, with outcomes for 10% of them; then the job runs
as `make monitor` runs it, in a throw-away folder holding params.yaml, the reference rows, the
evaluation's metrics and the model's info. Prints a table and writes
benchmarks/results/monitor.json.

    python benchmarks/monitor.py [--sizes 100000 1000000] [--outcomes 0.1]
"""

from __future__ import annotations

import argparse
import json
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--outcomes", type=float, default=0.1)
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
        for rows in args.sizes:
            folder = Path(tmp) / f"log-{rows}"
            start = time.perf_counter()
            simulate(
                params, folder, rows, seed=rows % 1000, outcomes=args.outcomes,
                model=model, source=source, end=datetime.now(UTC),
            )  # fmt: skip
            written = time.perf_counter() - start
            size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 1e6
            run = measure(place, sys.executable, "-m", "credit_risk.monitoring.job", "--log",
                          str(folder))  # fmt: skip
            parts = phases(folder, reference)
            ratio = f", {run.seconds / baseline.seconds:.1f}x the baseline" if baseline else ""
            print(
                f"\n{rows:,} logged predictions ({size:,.0f} MB of JSON Lines, written in "
                f"{written:.0f} s): `make monitor` {run.seconds:.1f} s, peak {run.peak_mb:,.0f} "
                f"MB{ratio}; {rows / run.seconds:,.0f} rows/s"
            )
            print("  in-process parts: " + ", ".join(f"{k} {v:.1f} s" for k, v in parts.items()))
            baseline = baseline or run
            results[str(rows)] = {
                "job": asdict(run),
                "log_mb": round(size, 1),
                "parts_seconds": parts,
                "ratio_to_baseline": round(run.seconds / baseline.seconds, 2),
            }
            shutil.rmtree(folder)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nfigures written to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
