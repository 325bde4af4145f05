"""Benchmark the pipeline: wall time and peak memory per stage, on the example data and at scale.

Runs in a throw-away copy of the repository (its own DVC cache and MLflow store), so the
working tree is never touched. Prints a table and writes benchmarks/results/pipeline.json.

    python benchmarks/pipeline.py [--sizes 10000 100000 1000000] [--noop-repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("ingest", "validate", "split", "train", "evaluate")
RESULTS = ROOT / "benchmarks" / "results" / "pipeline.json"


@dataclass(frozen=True)
class Measure:
    seconds: float
    peak_mb: float


def measure(cwd: Path, *command: str) -> Measure:
    """Run a command; wall time and the peak resident memory of its largest process."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)  # the copy's own local store
    start = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    output = process.stdout.read() if process.stdout else b""
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{output.decode(errors='replace')}")
    return Measure(round(elapsed, 2), round(usage.ru_maxrss / 1024, 1))


def fresh_copy(into: Path) -> Path:
    """The repository's files as git sees them, committed in a new git repository."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, into / name)
    identity = ["-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
    for command in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "copy"]):
        subprocess.run(["git", *identity, *command], cwd=into, check=True, capture_output=True)
    return into


def run_stages(workspace: Path) -> dict[str, Measure]:
    """Run every stage once, in order, each measured on its own (forced: no cache reuse)."""
    return {
        stage: measure(workspace, "dvc", "repro", "--single-item", "--force", stage)
        for stage in STAGES
    }


def use_synthetic(workspace: Path, rows: int) -> None:
    path = workspace / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params["ingest"]["source"] = "synthetic"
    params["ingest"]["synthetic"]["rows"] = rows
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def print_stages(title: str, stages: dict[str, Measure], baseline: float | None = None) -> None:
    total = sum(m.seconds for m in stages.values())
    peak = max(m.peak_mb for m in stages.values())
    ratio = f"  ({total / baseline:.1f}x the first run)" if baseline else ""
    print(f"\n{title}: {total:.1f} s in all, peak {peak:.0f} MB{ratio}")
    for stage, m in stages.items():
        print(f"  {stage:<9} {m.seconds:7.2f} s  {m.peak_mb:8.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--noop-repeats", type=int, default=5)
    args = parser.parse_args()

    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="credit-risk-bench-") as tmp:
        workspace = fresh_copy(Path(tmp) / "repo")
        startup = [measure(workspace, "dvc", "version").seconds for _ in range(args.noop_repeats)]
        example = run_stages(workspace)
        print_stages("The source data, stage by stage", example)
        forced = measure(workspace, "dvc", "repro", "--force")
        print(f"  full `dvc repro --force`: {forced.seconds:.1f} s (target < 30 s)")
        noop = [measure(workspace, "dvc", "repro").seconds for _ in range(args.noop_repeats)]
        noop_median, startup_median = statistics.median(noop), statistics.median(startup)
        print(
            f"\nNo-op `dvc repro` (nothing changed): median {noop_median:.2f} s of {len(noop)} "
            f"(target < 1.5 s); bare `dvc version` {startup_median:.2f} s, "
            f"ratio {noop_median / startup_median:.1f}x"
        )
        results["example"] = {k: asdict(v) for k, v in example.items()}
        results["full_repro_seconds"] = forced.seconds
        results["noop_repro_seconds"] = noop
        results["dvc_startup_seconds"] = startup

        baseline = None
        scaled: dict[str, object] = {}
        for rows in args.sizes:
            use_synthetic(workspace, rows)
            stages = run_stages(workspace)
            total = sum(m.seconds for m in stages.values())
            print_stages(f"Synthetic, {rows:,} rows", stages, baseline)
            print(f"  {rows / total:,.0f} rows/s end to end")
            baseline = baseline or total
            scaled[str(rows)] = {k: asdict(v) for k, v in stages.items()}
        results["synthetic"] = scaled

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nfigures written to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
