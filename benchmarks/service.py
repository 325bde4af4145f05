"""Benchmark the scoring service over HTTP, against in-process scoring and an MLflow server.

In one run, on loopback, with one model (the pipeline's models/model.joblib):

1. cold start of the BentoML service: process start to the first GET /readyz 200 (target
   < 10 s), and to every worker having logged that its model is loaded;
2. POST /score, one applicant per request, at 1, 8 and 32 concurrent clients: requests/s,
   p50/p95/p99 latency, errors, and how the requests spread over the workers (target: p99
   < 50 ms at 8 clients);
3. POST /score_batch with 100 and 1,000 applicants per request: rows/s and latency;
4. predict_proba of the same pipeline in this process, on 1, 100 and 1,000 rows (the limit),
   and the service's own scoring path (Scorer.score) on the same rows;
5. `mlflow models serve` of the MLflow run that logged this model, one row per request, at the
   same concurrency levels, with as many worker processes as the BentoML service;
6. ratios: BentoML /score req/s over MLflow's (target >= 2x at 8 clients), and /score_batch
   1,000-row rows/s over in-process (target >= 0.5 at 1 client: one call at a time in both).

Applicants are the held-out rows (data/processed/test.parquet), cycled. Every server runs in its
own process group, on a free 127.0.0.1 port, with a throw-away BentoML store; its score for one
applicant must equal this process's, it is warmed up before it is measured, and it is stopped
when the run ends, also on Ctrl-C. Load comes from wrk when it is installed, else from a Python
client (_load.py); the output names it and the share of a core it used, beside the CPU the server
used per request, and the share of the CPUs that other processes took during the run (the
figures are only as good as the machine is quiet). --workers and --threads repeat the BentoML
measurements per combination (default: params.yaml's serve section, read and never written).
--prediction-log both measures each combination with the prediction log on and off, in the same
run, and prints what logging costs (the log goes to a throw-away folder).

    python benchmarks/service.py [--requests 1000] [--workers 1 2 --threads 1 4 8]
    python benchmarks/service.py --prediction-log both

Prints tables and writes benchmarks/results/service.json.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
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
from credit_risk.files import write_json
from credit_risk.lineage import git_commit, git_dirty, model_fingerprint
from credit_risk.monitoring.predictions import LOG_VARIABLE
from credit_risk.schema import contract, target_column
from credit_risk.serving.api_models import probability_field
from credit_risk.serving.scorer import ModelFiles, Scorer
from credit_risk.tracking import run_for_model, tracking_uri

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "service.json"
SERVICE = "credit_risk.serving.service:CreditRiskService"
BATCH_SIZES = (100, 1000)
IN_PROCESS_ROWS = 100_000  # rows scored in process per size, at most --requests calls
# The service's structured log lines: a worker's model is loaded; a worker scored a request.
READY_LINE = b'"event": "ready"'
SCORED_BY = re.compile(rb'\[entry_service:[^\]]*:(\d+)\] \{"event": "score')
READY_TIMEOUT, STOP_TIMEOUT, POLL_SECONDS = 120.0, 10.0, 0.05
COLD_START_S, P99_MS, VS_MLFLOW, VS_IN_PROCESS = 10.0, 50.0, 2.0, 0.5
TARGET_CLIENTS = 8  # where latency and the MLflow ratio are judged, and the best config chosen
NOISY = 0.05  # other processes taking more than this share of the CPUs make figures noisy


@dataclass(frozen=True)
class Bodies:
    """Request bodies, one JSON document each, all made of the same applicants."""

    score: list[bytes]
    batches: dict[int, list[bytes]]
    mlflow: list[bytes]


@dataclass(frozen=True)
class Local:
    rows: int  # per call
    calls: int
    ms_per_call: float  # median, of pipeline.predict_proba on a data frame
    rows_per_second: float
    scorer_ms_per_call: float  # the same, of the service's Scorer.score on request rows
    scorer_rows_per_second: float


@dataclass(frozen=True)
class Measure(Load):
    server_cpu_ms: float = 0.0  # CPU the server's processes used per answer
    by_worker: dict[int, int] = field(default_factory=dict)  # BentoML worker id: answers


@dataclass
class ServerRun:
    label: str
    workers: int
    threads: int | None  # None for MLflow: uvicorn has no such setting
    prediction_log: bool = True  # whether the service logged every scored record
    readyz_seconds: float = 0.0  # start to the first readiness 200
    all_ready_seconds: float | None = None  # start to every worker's model loaded (BentoML)
    score: list[Measure] = field(default_factory=list)
    batches: dict[int, list[Measure]] = field(default_factory=dict)


def cpu_clock() -> tuple[float, float]:
    """CPU seconds the machine has been busy, and those this process and its children used."""
    machine = psutil.cpu_times()
    busy = machine.user + machine.nice + machine.system + machine.irq + machine.softirq
    own = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return busy, sum(usage.ru_utime + usage.ru_stime for usage in own)


def note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def applicants(path: Path) -> list[dict[str, Any]]:
    """The held-out rows as the contract's columns (no target), in plain JSON types."""
    frame = pd.read_parquet(path).drop(columns=[target_column()])
    return list(json.loads(frame.to_json(orient="records")))


def batches(rows: Sequence[dict[str, Any]], size: int, count: int) -> list[list[dict[str, Any]]]:
    """``count`` batches of ``size`` rows, each starting where the last ended (rows cycled)."""
    starts = range(0, count * size, size)
    return [[rows[(start + i) % len(rows)] for i in range(size)] for start in starts]


def encode(payload: object) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def request_bodies(rows: Sequence[dict[str, Any]], features: Sequence[str]) -> Bodies:
    # MLflow's signature has the model's features only (no `sex`); BentoML takes the contract.
    return Bodies(
        score=[encode({contract().entity: row}) for row in rows],
        batches={
            size: [encode({contract().entity_plural: batch}) for batch in batches(rows, size, 4)]
            for size in BATCH_SIZES
        },
        mlflow=[encode({"dataframe_records": [{f: row[f] for f in features}]}) for row in rows],
    )


def timed(score: Callable[[Any], object], inputs: Sequence[Any], calls: int) -> list[float]:
    """Seconds taken by each of ``calls`` calls of ``score``, cycling through ``inputs``."""
    score(inputs[0])  # the first call pays for lazy set-up
    seconds = []
    for item in itertools.islice(itertools.cycle(inputs), calls):
        started = time.perf_counter()
        score(item)
        seconds.append(time.perf_counter() - started)
    return seconds


def rates(seconds: list[float], rows: int) -> tuple[float, float]:
    """Median milliseconds per call, and rows per second."""
    return round(statistics.median(seconds) * 1000, 3), round(rows * len(seconds) / sum(seconds), 1)


def in_process(
    pipeline: Any, scorer: Scorer, rows: Sequence[dict[str, Any]], calls: int
) -> dict[int, Local]:
    """The model on the same rows, one call at a time, inputs built beforehand: the pipeline's
    predict_proba on data frames, and the service's own scoring path on request rows."""
    results = {}
    for size in (1, *BATCH_SIZES):
        count = min(calls, IN_PROCESS_ROWS // size)
        chunks = batches(rows, size, min(count, len(rows)))
        frames = [pd.DataFrame.from_records(chunk, columns=scorer.features) for chunk in chunks]
        pipeline_rates = rates(timed(pipeline.predict_proba, frames, count), size)
        scorer_rates = rates(timed(scorer.score, chunks, count), size)
        results[size] = Local(size, count, *pipeline_rates, *scorer_rates)
    return results


def import_model(env: dict[str, str]) -> str:
    """Store the pipeline's model in the BentoML store that ``env`` names; return its tag."""
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
    """The MLflow run that logged this exact model."""
    mlflow.set_tracking_uri(tracking_uri())
    experiment = mlflow.get_experiment_by_name(params.tracking.experiment)
    paths = params.paths
    fingerprint = model_fingerprint(paths.model, paths.model_info, paths.background)
    run = experiment and run_for_model(experiment.experiment_id, fingerprint)
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


def check_score(url: str, body: bytes, read: str, expected: float) -> None:
    """Stop unless the server scores an applicant exactly as this process does.

    ``read`` is the path to the probability in the answer, e.g. ``predictions.0.1``.
    """
    status, answer = http("POST", url, body)
    got: Any = json.loads(answer) if status == 200 else None
    for key in read.split(".") if got is not None else []:
        got = got[int(key)] if key.isdigit() else got[key]
    if got is None or abs(got - expected) > 1e-9:
        raise SystemExit(f"{url} answered {status} {answer[:300]!r}, expected {expected}")


@dataclass(frozen=True)
class Server:
    process: subprocess.Popen[bytes]
    log: Path  # its stdout and stderr
    started: float  # time.perf_counter() at its launch


@contextlib.contextmanager
def serve(command: list[str], env: dict[str, str], log: Path) -> Iterator[Server]:
    """Run a server in a process group of its own; stop it, and all it started, at the end."""
    started = time.perf_counter()
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
        yield Server(process, log, started)
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


def wait_ready(server: Server, url: str, workers: int) -> tuple[float, float]:
    """Seconds to the first 200 from ``url``, and to ``workers`` model-loaded log lines."""
    first, process, log = None, server.process, server.log
    while (now := time.perf_counter()) < server.started + READY_TIMEOUT:
        if process.poll() is not None:
            raise SystemExit(f"server exited ({process.returncode}):\n{log.read_text()[-3000:]}")
        if first is None and http("GET", url)[0] == 200:
            first = now - server.started
        if first is not None and log.read_bytes().count(READY_LINE) >= workers:
            return round(first, 2), round(time.perf_counter() - server.started, 2)
        time.sleep(POLL_SECONDS)
    raise SystemExit(f"{url} not ready after {READY_TIMEOUT:.0f} s:\n{log.read_text()[-3000:]}")


def server_cpu(pid: int) -> float:
    """CPU seconds used so far by a server and the processes it started."""
    root = psutil.Process(pid)
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            used = process.cpu_times()
            total += used.user + used.system
    return total


def worker_counts(log: Path, offset: int) -> dict[int, int]:
    """Scoring requests each BentoML worker logged after ``offset`` bytes of its log."""
    counts: dict[int, int] = {}
    with log.open("rb") as lines:
        lines.seek(offset)
        for worker in SCORED_BY.findall(lines.read()):
            counts[int(worker)] = counts.get(int(worker), 0) + 1
    return counts


@dataclass(frozen=True)
class Bench:
    """What every server's measurement shares."""

    args: argparse.Namespace
    env: dict[str, str]
    workdir: Path
    bodies: Bodies
    generator: LoadGenerator

    def sweep(
        self, url: str, bodies: list[bytes], levels: Sequence[int], requests: int, server: Server
    ) -> list[Measure]:
        """A warm-up at the highest concurrency (not kept), then ``requests`` per level."""
        run, limit = self.generator.run, self.args.max_seconds
        run(url, bodies, max(levels), max(requests // 10, 5), limit)
        measures = []
        for clients in levels:
            offset, cpu = server.log.stat().st_size, server_cpu(server.process.pid)
            load = run(url, bodies, clients, requests, limit)
            cpu_ms = (server_cpu(server.process.pid) - cpu) * 1000 / max(load.requests, 1)
            by_worker = worker_counts(server.log, offset)
            measures.append(
                Measure(**asdict(load), server_cpu_ms=round(cpu_ms, 2), by_worker=by_worker)
            )
        return measures


def bench_bento(bench: Bench, run: ServerRun, expected: float) -> ServerRun:
    """Serve the stored model with this run's workers and threads, and measure it."""
    args, bodies = bench.args, bench.bodies
    name = f"w{run.workers}-t{run.threads}-{'log' if run.prediction_log else 'nolog'}"
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params["serve"].update(workers=run.workers, threads=run.threads)
    params["serve"]["prediction_log"]["enabled"] = run.prediction_log
    params_file = bench.workdir / f"params-{name}.yaml"
    params_file.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    port = free_port()
    url, log = f"http://127.0.0.1:{port}", bench.workdir / f"bento-{name}.log"
    command = ["bentoml", "serve", SERVICE, "--host", "127.0.0.1", "--port", str(port)]
    env = {
        **bench.env,
        "CREDIT_RISK_PARAMS": str(params_file),
        LOG_VARIABLE: str(bench.workdir / f"predictions-{name}"),
    }
    with serve(command, env, log) as server:
        ready = wait_ready(server, f"{url}/readyz", run.workers)
        run.readyz_seconds, run.all_ready_seconds = ready
        note(f"{run.label}: ready in {run.readyz_seconds} s, measuring")
        check_score(f"{url}/score", bodies.score[0], probability_field(), expected)
        run.score = bench.sweep(f"{url}/score", bodies.score, args.clients, args.requests, server)
        for size in BATCH_SIZES:
            run.batches[size] = bench.sweep(
                f"{url}/score_batch",
                bodies.batches[size],
                args.batch_clients,
                args.batch_requests,
                server,
            )
    return run


def bench_mlflow(
    bench: Bench, run: ServerRun, run_id: str, expected: tuple[float, int]
) -> ServerRun:
    """Serve the MLflow run's model with `mlflow models serve`, and measure it."""
    port = free_port()
    url, log = f"http://127.0.0.1:{port}", bench.workdir / "mlflow.log"
    command = ["mlflow", "models", "serve", "-m", f"runs:/{run_id}/model", "--env-manager"]
    command += ["local", "--host", "127.0.0.1", "--port", str(port), "--workers", str(run.workers)]
    with serve(command, {**bench.env, "MLFLOW_TRACKING_URI": tracking_uri()}, log) as server:
        # A uvicorn worker takes connections only once its model is loaded: no wait per worker.
        run.readyz_seconds = wait_ready(server, f"{url}/ping", 0)[0]
        note(f"{run.label}: ready in {run.readyz_seconds} s, measuring")
        probability, positive = expected
        body, path = bench.bodies.mlflow, f"predictions.0.{positive}"
        check_score(f"{url}/invocations", body[0], path, probability)
        run.score = bench.sweep(
            f"{url}/invocations", body, bench.args.clients, bench.args.requests, server
        )
    return run


def ratios(run: ServerRun, peer: ServerRun, local: dict[int, Local]) -> dict[str, dict[int, float]]:
    """/score req/s over MLflow's, and 1,000-row batch rows/s over in-process, by clients."""
    limit = local[1000].rows_per_second
    return {
        "score_vs_mlflow": {
            ours.clients: round(ours.per_second / theirs.per_second, 2)
            for ours, theirs in zip(run.score, peer.score, strict=True)
        },
        "batch_1000_vs_in_process": {
            load.clients: round(load.per_second * 1000 / limit, 2) for load in run.batches[1000]
        },
    }


def at(by_clients: dict[int, Any], clients: int) -> Any:
    """The value measured at the number of clients nearest ``clients``."""
    return by_clients[min(by_clients, key=lambda measured: abs(measured - clients))]


def at_target(run: ServerRun) -> Measure:
    return at({load.clients: load for load in run.score}, TARGET_CLIENTS)


def best(runs: Sequence[ServerRun]) -> ServerRun:
    """Error-free first, then the most /score req/s, at 8 clients.

    Not the p99: over 1,000 requests it hangs on whether a worker's full garbage collection
    fell within the measurement, more than on the configuration.
    """

    def rank(run: ServerRun) -> tuple[bool, float]:
        load = at_target(run)
        return load.errors == 0, load.per_second

    return max(runs, key=rank)


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print a table: the first column left-aligned, the others right-aligned."""
    cells = [list(header), *[[str(cell) for cell in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(f"\n{title}")
    for first, *rest in cells:
        right = (cell.rjust(width) for cell, width in zip(rest, widths[1:], strict=True))
        print(f"  {first.ljust(widths[0])}  {'  '.join(right)}")


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def load_row(run: ServerRun, load: Measure, rows: int) -> list[object]:
    """Rate, latency, errors, server CPU, answers per worker, the client's share of a core."""
    by_worker = "/".join(str(load.by_worker.get(w, 0)) for w in range(1, run.workers + 1))
    return [
        f"{load.per_second * rows:,.0f}",
        load.p50_ms,
        load.p95_ms,
        load.p99_ms,
        load.max_ms,
        load.errors,
        load.server_cpu_ms,
        by_worker if load.by_worker else "-",
        f"{load.client_cpu_seconds / load.seconds:.0%}",
    ]


LOAD_HEADER = ["p50 ms", "p95 ms", "p99 ms", "max ms", "errors", "server CPU ms/req"]
LOAD_HEADER += ["by worker", "client CPU"]


def print_in_process(local: dict[int, Local]) -> None:
    table(
        "In process, one call at a time (the physical limit): the pipeline's predict_proba, and "
        "the service's Scorer.score",
        ["rows/call", "calls", "predict_proba ms", "rows/s", "Scorer.score ms", "rows/s"],
        [
            [
                x.rows,
                x.calls,
                x.ms_per_call,
                f"{x.rows_per_second:,.0f}",
                x.scorer_ms_per_call,
                f"{x.scorer_rows_per_second:,.0f}",
            ]
            for x in local.values()
        ],
    )


def print_cold_start(runs: Sequence[ServerRun], peer: ServerRun) -> None:
    rows: list[list[object]] = [
        [r.label, r.readyz_seconds, r.all_ready_seconds, verdict(r.readyz_seconds < COLD_START_S)]
        for r in runs
    ]
    table(
        f"Cold start, seconds from process start (target: /readyz 200 in < {COLD_START_S:.0f} s)",
        ["server", "/readyz (/ping) 200", "every worker loaded", "target"],
        [*rows, [peer.label, peer.readyz_seconds, "-", "-"]],
    )


def print_single(runs: Sequence[ServerRun], peer: ServerRun) -> None:
    table(
        "One applicant per request: BentoML POST /score, MLflow POST /invocations",
        ["server", "clients", "requests", "req/s", *LOAD_HEADER],
        [
            [run.label, load.clients, load.requests, *load_row(run, load, 1)]
            for run in [*runs, peer]
            for load in run.score
        ],
    )


def print_batches(runs: Sequence[ServerRun], local: dict[int, Local]) -> None:
    table(
        "Batches: BentoML POST /score_batch (x in-process: rows/s over in-process rows/s)",
        ["server", "rows/req", "clients", "requests", "rows/s", *LOAD_HEADER, "x in-process"],
        [
            [
                run.label,
                size,
                load.clients,
                load.requests,
                *load_row(run, load, size),
                f"{load.per_second * size / local[size].rows_per_second:.2f}",
            ]
            for run in runs
            for size, loads in run.batches.items()
            for load in loads
        ],
    )


def print_targets(runs: Sequence[ServerRun], peer: ServerRun, local: dict[int, Local]) -> None:
    rows = []
    for run in runs:
        ratio = ratios(run, peer, local)
        vs_mlflow, vs_local = ratio["score_vs_mlflow"], ratio["batch_1000_vs_in_process"]
        p99 = at_target(run).p99_ms
        mlflow_ok = verdict(at(vs_mlflow, TARGET_CLIENTS) >= VS_MLFLOW)
        local_ok = verdict(at(vs_local, 1) >= VS_IN_PROCESS)
        rows.append(
            [
                run.label,
                f"{p99} {verdict(p99 < P99_MS)}",
                " ".join(f"{c}:{v}x" for c, v in vs_mlflow.items()) + f" {mlflow_ok}",
                " ".join(f"{c}:{v}" for c, v in vs_local.items()) + f" {local_ok}",
            ]
        )
    table(
        "Targets (ratios by number of clients)",
        [
            "server",
            f"p99 ms at {TARGET_CLIENTS} clients < {P99_MS:.0f}",
            f"/score req/s over MLflow's >= {VS_MLFLOW:.0f}x at {TARGET_CLIENTS}",
            f"1,000-row rows/s over in-process >= {VS_IN_PROCESS} at 1",
        ],
        rows,
    )


def log_cost(runs: Sequence[ServerRun]) -> list[dict[str, Any]]:
    """Throughput with the prediction log over throughput without it, per configuration,
    endpoint and number of clients (negative: logging costs that share)."""
    cost = []
    for on in (run for run in runs if run.prediction_log):
        off = next(
            (
                run
                for run in runs
                if not run.prediction_log and (run.workers, run.threads) == (on.workers, on.threads)
            ),
            None,
        )
        if off is None:
            continue
        pairs = [("/score", 1, on.score, off.score)]
        pairs += [
            ("/score_batch", size, on.batches[size], off.batches[size]) for size in on.batches
        ]
        for endpoint, rows, with_log, without in pairs:
            for a, b in zip(with_log, without, strict=True):
                cost.append(
                    {
                        "workers": on.workers,
                        "threads": on.threads,
                        "endpoint": endpoint,
                        "rows": rows,
                        "clients": a.clients,
                        "rows_per_second_log": round(a.per_second * rows, 1),
                        "rows_per_second_no_log": round(b.per_second * rows, 1),
                        "change_percent": round((a.per_second / b.per_second - 1) * 100, 1),
                        "p99_ms_log": a.p99_ms,
                        "p99_ms_no_log": b.p99_ms,
                        # CPU per request: unlike throughput, barely moved by other processes.
                        "server_cpu_ms_log": a.server_cpu_ms,
                        "server_cpu_ms_no_log": b.server_cpu_ms,
                    }
                )
    return cost


LOG_COST_HEADER = ["server", "endpoint", "rows/req", "clients", "rows/s log", "rows/s no log"]
LOG_COST_HEADER += ["change", "p99 ms log", "p99 ms no log", "CPU ms/req log", "no log"]


def print_log_cost(runs: Sequence[ServerRun]) -> None:
    cost = log_cost(runs)
    if not cost:
        return
    table(
        "The prediction log's cost: throughput with it over without it (same run)",
        LOG_COST_HEADER,
        [
            [
                f"bento w{x['workers']} t{x['threads']}",
                x["endpoint"],
                x["rows"],
                x["clients"],
                f"{x['rows_per_second_log']:,.0f}",
                f"{x['rows_per_second_no_log']:,.0f}",
                f"{x['change_percent']:+.1f}%",
                x["p99_ms_log"],
                x["p99_ms_no_log"],
                x["server_cpu_ms_log"],
                x["server_cpu_ms_no_log"],
            ]
            for x in cost
        ],
    )


def print_best(chosen: ServerRun) -> None:
    load = at_target(chosen)
    batch = max(x.per_second for x in chosen.batches[1000]) * 1000
    print(
        f"\nBest configuration: workers={chosen.workers} threads={chosen.threads}: "
        f"{load.per_second:,.0f} /score req/s at {load.clients} clients, p99 {load.p99_ms} ms, "
        f"{load.errors} errors; 1,000-row batches up to {batch:,.0f} rows/s"
    )


def parse_args(params: Params) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="per concurrency level")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--batch-requests", type=int, default=50, help="per size and level")
    parser.add_argument("--batch-clients", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--workers", type=int, nargs="+", default=[params.serve.workers])
    parser.add_argument("--threads", type=int, nargs="+", default=[params.serve.threads])
    parser.add_argument("--mlflow-workers", type=int, default=params.serve.workers)
    parser.add_argument("--client", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--max-seconds", type=int, default=60, help="limit per measurement")
    parser.add_argument(
        "--prediction-log",
        choices=["on", "off", "both"],
        default="on",
        help="serve with the prediction log on, off, or both in turn (its cost)",
    )
    return parser.parse_args()


def measure_servers(
    args: argparse.Namespace, params: Params, bodies: Bodies, expected: tuple[float, int]
) -> tuple[str, str, str, list[ServerRun], ServerRun]:
    """Model tag, MLflow run, load generator, the BentoML runs and the MLflow one."""
    run_id = mlflow_run_id(params)
    with tempfile.TemporaryDirectory(prefix="credit-risk-bench-service-") as tmp:
        workdir = Path(tmp)
        env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "BENTOML_HOME": str(workdir / "bentoml"),
            "BENTOML_DO_NOT_TRACK": "true",
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }
        env["CREDIT_RISK_MODEL_TAG"] = tag = import_model(env)
        bench = Bench(args, env, workdir, bodies, load_generator(args.client, workdir))
        note(f"model {tag}, MLflow run {run_id}, load from {bench.generator.name}")
        logging = {"on": [True], "off": [False], "both": [True, False]}[args.prediction_log]
        runs = [
            bench_bento(
                bench,
                ServerRun(f"bento w{w} t{t}{'' if log else ' no-log'}", w, t, log),
                expected[0],
            )
            for w, t in itertools.product(args.workers, args.threads)
            for log in logging
        ]
        peer = ServerRun(f"mlflow w{args.mlflow_workers}", args.mlflow_workers, None)
        peer = bench_mlflow(bench, peer, run_id, expected)
    return tag, run_id, bench.generator.name, runs, peer


def main() -> None:
    # params.yaml, data/, models/ and mlruns/ are relative to the repository root.
    os.chdir(ROOT)
    # A kill (from make or CI) becomes an exit, so that the servers are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    params = load_params()
    args = parse_args(params)
    # The code the servers import, as it is when the run starts.
    commit, dirty = git_commit(), git_dirty()
    started, (busy, own) = time.perf_counter(), cpu_clock()
    paths = params.paths
    rows = applicants(paths.test)
    scorer = Scorer.load(ModelFiles(paths.model, paths.model_info, paths.background))
    pipeline, positive = joblib.load(paths.model), scorer.positive
    first = pd.DataFrame.from_records(rows[:1], columns=scorer.features)
    expected = float(pipeline.predict_proba(first)[0, positive]), positive
    local = in_process(pipeline, scorer, rows, args.requests)
    tag, run_id, client, runs, peer = measure_servers(
        args, params, request_bodies(rows, scorer.features), expected
    )
    # Servers are stopped and waited for by now, so their CPU counts among this process's own.
    busy_after, own_after = cpu_clock()
    cpus = os.cpu_count() or 1
    other = (busy_after - busy - own_after + own) / ((time.perf_counter() - started) * cpus)

    code = f"{commit[:12]}{' with uncommitted changes' if dirty == 'true' else ''}"
    print(f"\nService benchmark: code {code}, model {tag} (MLflow run {run_id})")
    print(f"{len(rows)} held-out applicants, cycled; loopback; ", end="")
    print(f"other processes used {max(other, 0):.0%} of the {cpus} CPUs", end="")
    print(" (figures are noisy)" if other > NOISY else "")
    print(f"load generator: {client}; closed loop, warm-up not counted")
    print_in_process(local)
    print_cold_start(runs, peer)
    print_single(runs, peer)
    print_batches(runs, local)
    print_targets(runs, peer, local)
    print_log_cost(runs)
    chosen = best(runs)
    print_best(chosen)
    write_json(
        RESULTS,
        {
            "load_generator": client,
            "cpus": cpus,
            "other_processes_cpu_share": round(other, 3),
            "code": {"commit": commit, "dirty": dirty},
            "model_tag": tag,
            "mlflow_run_id": run_id,
            "applicants": len(rows),
            "settings": vars(args),
            "in_process": {size: asdict(x) for size, x in local.items()},
            "bento": [{**asdict(run), "ratios": ratios(run, peer, local)} for run in runs],
            "mlflow": asdict(peer),
            "best": {"workers": chosen.workers, "threads": chosen.threads},
            "prediction_log_cost": log_cost(runs),
        },
    )
    print(f"\nfigures written to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        raise SystemExit(130) from None
