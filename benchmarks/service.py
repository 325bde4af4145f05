"""Benchmark the scoring service over HTTP, against in-process scoring and an MLflow server.

In one run, on loopback, with one model (the pipeline's models/model.joblib):

1. cold start of the BentoML service: process start to the first GET /readyz 200 (target
   < 10 s), and to every worker having logged that its model is loaded;
2. POST /score, one applicant per request, at 1, 8 and 32 concurrent clients: requests/s,
   p50/p95/p99 latency and errors (target: p99 < 50 ms at 8 clients);
3. POST /score_batch with 100 and 1,000 applicants per request: rows/s and latency;
4. predict_proba of the same pipeline in this process on 1, 100 and 1,000 rows (the limit);
5. `mlflow models serve` of the MLflow run that logged this model, one row per request, at the
   same concurrency levels (same number of worker processes as the BentoML service);
6. ratios: BentoML /score req/s over MLflow's (target >= 2x), and /score_batch 1,000-row rows/s
   over in-process (target >= 0.5).

Applicants are the held-out rows (data/processed/test.parquet), cycled. Every server runs in its
own process group with an isolated BentoML store, on a free 127.0.0.1 port; its answer for one
row is checked against in-process scoring, it is warmed up before being measured, and it is
stopped when the run ends, also on Ctrl-C. Load comes from wrk when it is installed, else from a
Python client (see _load.py); the output names it and how much CPU it took from the server.
--workers and --threads repeat the BentoML measurements for each combination (default: the
serve section of params.yaml, which is never modified).

    python benchmarks/service.py [--requests 2000] [--workers 1 2 --threads 1 4 8]

Prints tables and writes benchmarks/results/service.json.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from http.client import HTTPConnection, HTTPException
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import joblib
import mlflow
import pandas as pd
import psutil
import yaml
from _load import HEADERS, Load, LoadGenerator, load_generator

from credit_risk.config import Params, load_params
from credit_risk.files import md5, write_json
from credit_risk.schema import TARGET
from credit_risk.tracking import run_for_model, tracking_uri

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "service.json"
SERVICE = "credit_risk.serving.service:CreditRiskService"
BATCH_SIZES = (100, 1000)
IN_PROCESS_ROWS = 100_000  # rows scored per batch size in process (fewer for single rows)
READY_LINE = b'"event": "ready"'  # what each BentoML worker logs once its model is loaded
READY_TIMEOUT, STOP_TIMEOUT, POLL_SECONDS = 120.0, 10.0, 0.05
TARGET_CLIENTS = 8  # the latency target, and the choice of the best configuration, are here
COLD_START_S, P99_MS, VS_MLFLOW, VS_IN_PROCESS = 10.0, 50.0, 2.0, 0.5


@dataclass(frozen=True)
class Bodies:
    """Request bodies, one JSON document each, built from the same applicants."""

    score: list[bytes]
    batches: dict[int, list[bytes]]
    mlflow: list[bytes]


@dataclass(frozen=True)
class Local:
    rows: int  # per predict_proba call
    calls: int
    ms_per_call: float  # median
    rows_per_second: float


@dataclass
class ServerRun:
    label: str
    workers: int
    threads: int | None  # None for MLflow, whose uvicorn workers have no such setting
    readyz_seconds: float = 0.0  # start to the first readiness answer 200
    all_ready_seconds: float = 0.0  # start to every worker having loaded the model
    score: list[Load] = field(default_factory=list)
    batches: dict[int, list[Load]] = field(default_factory=dict)


def note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def applicants(path: Path) -> list[dict[str, Any]]:
    """The held-out rows as the contract's columns (no target), in plain JSON types."""
    frame = pd.read_parquet(path).drop(columns=[TARGET])
    return list(json.loads(frame.to_json(orient="records")))


def batches(rows: Sequence[dict[str, Any]], size: int, count: int) -> list[list[dict[str, Any]]]:
    """``count`` batches of ``size`` rows, each starting where the last ended (rows cycled)."""
    return [
        [rows[(start + i) % len(rows)] for i in range(size)]
        for start in range(0, count * size, size)
    ]


def encode(payload: object) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def request_bodies(rows: Sequence[dict[str, Any]], features: Sequence[str]) -> Bodies:
    # MLflow's signature is the model's features only (not `sex`); BentoML accepts the contract.
    return Bodies(
        score=[encode({"applicant": row}) for row in rows],
        batches={
            size: [encode({"applicants": b}) for b in batches(rows, size, 4)]
            for size in BATCH_SIZES
        },
        mlflow=[encode({"dataframe_records": [{f: row[f] for f in features}]}) for row in rows],
    )


def in_process(
    pipeline: Any, rows: Sequence[dict[str, Any]], features: list[str], calls: int
) -> dict[int, Local]:
    """predict_proba on the same rows, one call at a time, as data frames built in advance."""
    results = {}
    for size in (1, *BATCH_SIZES):
        frames = [
            pd.DataFrame.from_records(batch, columns=features)
            for batch in batches(rows, size, len(rows) if size == 1 else 4)
        ]
        pipeline.predict_proba(frames[0])  # the first call pays for lazy set-up
        count = min(calls, IN_PROCESS_ROWS // size)
        seconds = []
        for frame in itertools.islice(itertools.cycle(frames), count):
            started = time.perf_counter()
            pipeline.predict_proba(frame)
            seconds.append(time.perf_counter() - started)
        results[size] = Local(
            rows=size,
            calls=count,
            ms_per_call=round(sorted(seconds)[count // 2] * 1000, 3),
            rows_per_second=round(size * count / sum(seconds), 1),
        )
    return results


def import_model(env: dict[str, str]) -> str:
    """Store the pipeline's model in the (temporary) BentoML store; return its tag."""
    done = subprocess.run(
        [sys.executable, "-m", "credit_risk.serving.model_store", "--from-pipeline"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"model import failed:\n{done.stdout}{done.stderr}")
    return done.stdout.split()[-1]


def mlflow_run_id(params: Params) -> str:
    """The MLflow run that logged this exact model file."""
    mlflow.set_tracking_uri(tracking_uri())
    experiment = mlflow.get_experiment_by_name(params.tracking.experiment)
    run = experiment and run_for_model(experiment.experiment_id, md5(params.paths.model))
    if not run:
        raise SystemExit(f"no MLflow run logged {params.paths.model} (run `make repro`)")
    return str(run.info.run_id)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def http(method: str, url: str, body: bytes | None = None) -> tuple[int, bytes]:
    """One request on a fresh connection; status 0 when the server does not answer."""
    parts = urlsplit(url)
    connection = HTTPConnection(parts.hostname, parts.port, timeout=5)
    try:
        connection.request(method, parts.path, body, HEADERS if body else {})
        answer = connection.getresponse()
        return answer.status, answer.read()
    except (OSError, HTTPException):
        return 0, b""
    finally:
        connection.close()


def post_json(url: str, body: bytes) -> Any:
    status, answer = http("POST", url, body)
    if status != 200:
        raise SystemExit(f"{url} answered {status}: {answer[:300]!r}")
    return json.loads(answer)


def check_same_model(url: str, got: float, expected: float) -> None:
    """Stop unless the server scores the first applicant exactly as this process does."""
    if abs(got - expected) > 1e-9:
        raise SystemExit(f"{url} scored the first applicant {got}, this process {expected}")


@contextlib.contextmanager
def server(command: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server in a process group of its own; stop it, and all it started, at the end."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    # BentoML's workers run in sessions of their own: list them while their parent is alive.
    children: list[psutil.Process] = []
    with contextlib.suppress(psutil.NoSuchProcess):
        children = psutil.Process(process.pid).children(recursive=True)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    for child in psutil.wait_procs(children, timeout=STOP_TIMEOUT)[1]:
        child.kill()


def wait_ready(
    process: subprocess.Popen[bytes], url: str, started: float, log: Path, ready_lines: int
) -> tuple[float, float]:
    """Seconds to the first 200 from ``url``, and to ``ready_lines`` model-loaded log lines."""
    first = None
    while (now := time.perf_counter()) < started + READY_TIMEOUT:
        if process.poll() is not None:
            raise SystemExit(f"server exited ({process.returncode}):\n{log.read_text()[-3000:]}")
        if first is None and http("GET", url)[0] == 200:
            first = now - started
        if first is not None and log.read_bytes().count(READY_LINE) >= ready_lines:
            return round(first, 2), round(time.perf_counter() - started, 2)
        time.sleep(POLL_SECONDS)
    raise SystemExit(f"{url} not ready after {READY_TIMEOUT:.0f} s:\n{log.read_text()[-3000:]}")


def sweep(
    generator: LoadGenerator,
    url: str,
    bodies: list[bytes],
    levels: Sequence[int],
    requests: int,
    args: argparse.Namespace,
) -> list[Load]:
    """A warm-up at the highest concurrency (not kept), then ``requests`` requests per level."""
    generator.run(url, bodies, max(levels), max(requests // 10, 5), args.max_seconds)
    return [generator.run(url, bodies, c, requests, args.max_seconds) for c in levels]


def bench_bento(
    run: ServerRun,
    env: dict[str, str],
    workdir: Path,
    bodies: Bodies,
    expected: float,
    generator: LoadGenerator,
    args: argparse.Namespace,
) -> ServerRun:
    """Start the BentoML service with this run's workers and threads, and measure it."""
    name = f"w{run.workers}-t{run.threads}"
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params["serve"].update(workers=run.workers, threads=run.threads)
    params_file = workdir / f"params-{name}.yaml"
    params_file.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    port = free_port()
    url, log = f"http://127.0.0.1:{port}", workdir / f"bento-{name}.log"
    command = ["bentoml", "serve", SERVICE, "--host", "127.0.0.1", "--port", str(port)]
    started = time.perf_counter()
    with server(command, {**env, "CREDIT_RISK_PARAMS": str(params_file)}, log) as process:
        run.readyz_seconds, run.all_ready_seconds = wait_ready(
            process, f"{url}/readyz", started, log, run.workers
        )
        note(f"{run.label}: ready in {run.readyz_seconds} s, measuring")
        got = post_json(f"{url}/score", bodies.score[0])["probability_bad"]
        check_same_model(url, got, expected)
        run.score = sweep(
            generator, f"{url}/score", bodies.score, args.clients, args.requests, args
        )
        for size in BATCH_SIZES:
            run.batches[size] = sweep(
                generator,
                f"{url}/score_batch",
                bodies.batches[size],
                args.batch_clients,
                args.batch_requests,
                args,
            )
    return run


def bench_mlflow(
    run: ServerRun,
    run_id: str,
    env: dict[str, str],
    workdir: Path,
    bodies: Bodies,
    expected: float,
    positive: int,
    generator: LoadGenerator,
    args: argparse.Namespace,
) -> ServerRun:
    """Serve the MLflow run's model with `mlflow models serve`, and measure it."""
    port = free_port()
    url, log = f"http://127.0.0.1:{port}", workdir / "mlflow.log"
    command = ["mlflow", "models", "serve", "-m", f"runs:/{run_id}/model", "--env-manager", "local"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(run.workers)]
    started = time.perf_counter()
    with server(command, {**env, "MLFLOW_TRACKING_URI": tracking_uri()}, log) as process:
        # uvicorn's workers take connections only once loaded: no per-worker readiness to wait for
        run.readyz_seconds = wait_ready(process, f"{url}/ping", started, log, 0)[0]
        note(f"{run.label}: ready in {run.readyz_seconds} s, measuring")
        got = post_json(f"{url}/invocations", bodies.mlflow[0])["predictions"][0][positive]
        check_same_model(url, got, expected)
        run.score = sweep(
            generator, f"{url}/invocations", bodies.mlflow, args.clients, args.requests, args
        )
    return run


def ratios(run: ServerRun, peer: ServerRun, local: dict[int, Local]) -> dict[str, dict[int, float]]:
    """/score req/s over MLflow's, per clients; 1,000-row batch rows/s over in-process's."""
    limit = local[1000].rows_per_second
    return {
        "score_vs_mlflow": {
            b.clients: round(b.per_second / m.per_second, 2)
            for b, m in zip(run.score, peer.score, strict=True)
        },
        "batch_1000_vs_in_process": {
            load.clients: round(load.per_second * 1000 / limit, 2) for load in run.batches[1000]
        },
    }


def at_target(run: ServerRun) -> Load:
    return min(run.score, key=lambda load: abs(load.clients - TARGET_CLIENTS))


def best(runs: Sequence[ServerRun]) -> ServerRun:
    """Error-free first, then within the p99 target, then the most /score requests/s (8 clients)."""

    def rank(run: ServerRun) -> tuple[bool, bool, float]:
        load = at_target(run)
        return load.errors == 0, load.p99_ms < P99_MS, load.per_second

    return max(runs, key=rank)


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print a table: first column left-aligned, the others right-aligned."""
    cells = [list(header), *[[str(cell) for cell in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(f"\n{title}")
    for row in cells:
        first, *rest = (
            cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))
        )
        print("  " + "  ".join([first, *rest]))


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def report(runs: Sequence[ServerRun], peer: ServerRun, local: dict[int, Local]) -> None:
    table(
        "In-process predict_proba, one thread (the physical limit)",
        ["rows/call", "calls", "ms/call (median)", "rows/s"],
        [
            [s, x.calls, f"{x.ms_per_call:.2f}", f"{x.rows_per_second:,.0f}"]
            for s, x in local.items()
        ],
    )
    table(
        f"Cold start, process start to ready (target: /readyz 200 in < {COLD_START_S:.0f} s)",
        ["server", "first /readyz|/ping 200 (s)", "every worker loaded (s)", "target"],
        [
            [
                r.label,
                r.readyz_seconds,
                r.all_ready_seconds,
                verdict(r.readyz_seconds < COLD_START_S),
            ]
            for r in runs
        ]
        + [[peer.label, peer.readyz_seconds, "-", "-"]],
    )
    table(
        "One applicant per request: BentoML POST /score, MLflow POST /invocations",
        [
            "server",
            "clients",
            "requests",
            "req/s",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "max ms",
            "errors",
            "client CPU",
        ],
        [
            [
                r.label,
                x.clients,
                x.requests,
                f"{x.per_second:,.0f}",
                x.p50_ms,
                x.p95_ms,
                x.p99_ms,
                x.max_ms,
                x.errors,
                f"{x.client_cpu_seconds / x.seconds:.0%}",
            ]
            for r in [*runs, peer]
            for x in r.score
        ],
    )
    table(
        "Batches: BentoML POST /score_batch",
        [
            "server",
            "rows/req",
            "clients",
            "requests",
            "rows/s",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "errors",
            "x in-process",
        ],
        [
            [
                r.label,
                size,
                x.clients,
                x.requests,
                f"{x.per_second * size:,.0f}",
                x.p50_ms,
                x.p95_ms,
                x.p99_ms,
                x.errors,
                f"{x.per_second * size / local[size].rows_per_second:.2f}",
            ]
            for r in runs
            for size, loads in r.batches.items()
            for x in loads
        ],
    )
    rows = []
    for run in runs:
        ratio = ratios(run, peer, local)
        rows.append(
            [
                run.label,
                f"{at_target(run).p99_ms} {verdict(at_target(run).p99_ms < P99_MS)}",
                " ".join(f"{c}:{v}x" for c, v in ratio["score_vs_mlflow"].items())
                + " "
                + verdict(min(ratio["score_vs_mlflow"].values()) >= VS_MLFLOW),
                " ".join(f"{c}:{v}" for c, v in ratio["batch_1000_vs_in_process"].items())
                + " "
                + verdict(max(ratio["batch_1000_vs_in_process"].values()) >= VS_IN_PROCESS),
            ]
        )
    table(
        "Targets",
        [
            "server",
            f"p99 ms at {TARGET_CLIENTS} clients < {P99_MS:.0f}",
            f"/score req/s over MLflow's, by clients (>= {VS_MLFLOW:.0f}x)",
            f"1,000-row rows/s over in-process, by clients (>= {VS_IN_PROCESS})",
        ],
        rows,
    )


def parse_args(params: Params) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="per concurrency level")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--batch-requests", type=int, default=60, help="per batch size and level")
    parser.add_argument("--batch-clients", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--workers", type=int, nargs="+", default=[params.serve.workers])
    parser.add_argument("--threads", type=int, nargs="+", default=[params.serve.threads])
    parser.add_argument(
        "--mlflow-workers", type=int, default=params.serve.workers, help="uvicorn processes"
    )
    parser.add_argument("--client", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--max-seconds", type=int, default=60, help="time limit per measurement")
    return parser.parse_args()


def main() -> None:
    # params.yaml, models/, data/ and mlruns/ are found relative to the repository root.
    os.chdir(ROOT)
    # A kill (from make or CI) becomes an exit, so the finally blocks stop the servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    params = load_params()
    args = parse_args(params)
    features = list(json.loads(params.paths.model_info.read_text(encoding="utf-8"))["features"])
    rows = applicants(params.paths.test)
    bodies = request_bodies(rows, features)
    pipeline = joblib.load(params.paths.model)
    positive = list(pipeline.classes_).index(1)
    first = pd.DataFrame.from_records(rows[:1], columns=features)
    expected = float(pipeline.predict_proba(first)[0, positive])
    local = in_process(pipeline, rows, features, args.requests)
    run_id = mlflow_run_id(params)
    with tempfile.TemporaryDirectory(prefix="credit-risk-bench-serve-") as tmp:
        workdir = Path(tmp)
        env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "BENTOML_HOME": str(workdir / "bentoml"),
            "BENTOML_DO_NOT_TRACK": "true",
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }
        env["CREDIT_RISK_MODEL_TAG"] = tag = import_model(env)
        generator = load_generator(args.client, workdir)
        note(f"model {tag}, MLflow run {run_id}, load from {generator.name}")
        runs = [
            bench_bento(
                ServerRun(f"bento w{w} t{t}", w, t), env, workdir, bodies, expected, generator, args
            )
            for w, t in itertools.product(args.workers, args.threads)
        ]
        peer = ServerRun(f"mlflow w{args.mlflow_workers}", args.mlflow_workers, None)
        peer = bench_mlflow(peer, run_id, env, workdir, bodies, expected, positive, generator, args)

    print(
        f"Service benchmark: model {tag} (MLflow run {run_id}), {len(rows)} held-out applicants, {os.cpu_count()} CPUs, loopback"
    )
    print(f"load generator: {generator.name}; closed loop, warm-up excluded")
    report(runs, peer, local)
    chosen = best(runs)
    load = at_target(chosen)
    print(
        f"\nBest configuration: workers={chosen.workers} threads={chosen.threads} "
        f"({load.per_second:,.0f} /score req/s at {load.clients} clients, p99 {load.p99_ms} ms, "
        f"{load.errors} errors; 1,000-row batches {max(x.per_second for x in chosen.batches[1000]) * 1000:,.0f} rows/s)"
    )
    write_json(
        RESULTS,
        {
            "load_generator": generator.name,
            "cpus": os.cpu_count(),
            "model_tag": tag,
            "mlflow_run_id": run_id,
            "applicants": len(rows),
            "settings": vars(args),
            "in_process": {size: asdict(x) for size, x in local.items()},
            "bento": [{**asdict(run), "ratios": ratios(run, peer, local)} for run in runs],
            "mlflow": asdict(peer),
            "best": {"workers": chosen.workers, "threads": chosen.threads},
        },
    )
    print(f"\nfigures written to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        raise SystemExit(130) from None
