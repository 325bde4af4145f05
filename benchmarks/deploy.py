"""Benchmark the local deploy target: deploy, switch, failed deploy and rollback under load,
against a naive restart of `bentoml serve` without the proxy.

In one run, with a throw-away BentoML store and state folder, on free loopback ports, the
environment's settings from deploy/staging.yaml (replicas, timeouts, drain) on another port:

1. three bentos: A (the pipeline's models/, from `make repro`), B (the same pipeline with
   another decision threshold: another stored model) and a broken one (its model.joblib is
   garbage, everything else valid);
2. deploy A: seconds until deploy() returns (replicas ready, smoke-tested, nginx serving),
   and its steps;
3. steady load through the proxy: requests/s and how the answers spread over the replicas
   (nginx's access log);
4. deploy B with the clients calling throughout: failed requests, requests/s, and the switch:
   from nginx's reload until the last answer from A;
5. deploy the broken bento while calling: seconds until it is refused, failed requests;
6. rollback, a deploy of A again, while calling: seconds, failed requests;
7. the baseline: `bentoml serve <bento A>` as the bento says (its own workers), the same
   clients calling it directly, then a naive restart: stop it, start B on the same port. Its
   failed requests and its seconds without an answer are the denominators of the ratios.

The clients (--clients threads) each keep one connection alive, like a pooled HTTP client:
a connection the server closed while it was idle is noticed before it is reused (counted as
a reconnect, not a failure). A failed request (an error or a status other than 200) is
followed by a 50 ms pause, the same for the proxy and for the baseline.

    python benchmarks/deploy.py [--clients 4] [--steady-seconds 5]

Prints a table and writes benchmarks/results/deploy.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from http.client import HTTPConnection, HTTPException
from pathlib import Path
from typing import Any

from credit_risk.config import load_params
from credit_risk.deploy.environments import Release, load_environment
from credit_risk.deploy.local import LocalTarget, free_port, serve_command
from credit_risk.deploy.targets import DeployError
from credit_risk.files import write_json
from credit_risk.schema import contract, example_record
from credit_risk.serving.scorer import ModelFiles

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "deploy.json"
PAUSE_AFTER_FAILURE = 0.05
CALM_SECONDS = 2.0  # load before and after each event
READY_TIMEOUT = 120.0


@dataclass(frozen=True)
class Answer:
    at: float  # time.monotonic() when it came back
    ok: bool
    version: str  # X-Model-Version, "" on a failure
    detail: str  # the status, or the error


@dataclass
class Clients:
    """Closed-loop clients calling POST /score at ``url`` until stopped."""

    url: str
    count: int
    answers: list[Answer] = field(default_factory=list)
    reconnects: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self) -> None:
        host, port = self.url.removeprefix("http://").split(":")
        body = json.dumps({contract().entity: example_record()})
        headers = {"Content-Type": "application/json"}
        connection: HTTPConnection | None = None
        while not self.stop.is_set():
            idle = connection.sock if connection is not None else None
            if connection is not None and idle is not None and select.select([idle], [], [], 0)[0]:
                connection.close()
                connection = None
                with self.lock:
                    self.reconnects += 1
            if connection is None:
                connection = HTTPConnection(host, int(port), timeout=30)
            try:
                connection.request("POST", "/score", body, headers)
                response = connection.getresponse()
                response.read()
            except (OSError, HTTPException) as problem:
                connection.close()
                connection = None
                self.record(Answer(time.monotonic(), False, "", type(problem).__name__))
                time.sleep(PAUSE_AFTER_FAILURE)
                continue
            ok = response.status == 200
            version = response.getheader("X-Model-Version") or ""
            self.record(Answer(time.monotonic(), ok, version, str(response.status)))
            if not ok:
                time.sleep(PAUSE_AFTER_FAILURE)
            if (response.getheader("Connection") or "").lower() == "close":
                connection.close()
                connection = None
        if connection is not None:
            connection.close()

    def record(self, answer: Answer) -> None:
        with self.lock:
            self.answers.append(answer)

    def __enter__(self) -> Clients:
        self.threads = [threading.Thread(target=self.client) for _ in range(self.count)]
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def window(self, start: float, end: float) -> list[Answer]:
        with self.lock:
            return [a for a in self.answers if start <= a.at <= end]


@dataclass(frozen=True)
class Event:
    """One deploy (or restart) under load."""

    name: str
    seconds: float  # the deploy call, or the restart
    requests: int  # answers and failures from the start of the event to its end
    failed: int
    per_second: float
    outage_seconds: float  # the longest time without a successful answer
    reconnects: int  # idle connections the server closed, noticed before reuse
    failures: dict[str, int]
    switch_seconds: float | None = None  # nginx reload until the last answer from the old model
    steps: dict[str, float] | None = None  # seconds from the start of the deploy


def summarize(
    name: str,
    clients: Clients,
    start: float,
    end: float,
    reconnects: int,
    seconds: float,
    **extra: Any,
) -> Event:
    answers = clients.window(start, end)
    failed = [a for a in answers if not a.ok]
    times = [start] + [a.at for a in answers if a.ok] + [end]
    return Event(
        name=name,
        seconds=round(seconds, 2),
        requests=len(answers),
        failed=len(failed),
        per_second=round(len(answers) / (end - start), 1),
        outage_seconds=round(max(b - a for a, b in itertools.pairwise(times)), 3),
        reconnects=clients.reconnects - reconnects,
        failures=dict(Counter(a.detail for a in failed)),
        **extra,
    )


def under_load(name: str, clients: Clients, action: Any, **extra: Any) -> tuple[Event, Any]:
    """Run ``action()`` with CALM_SECONDS of load before and after it."""
    reconnects = clients.reconnects
    start = time.monotonic()
    time.sleep(CALM_SECONDS)
    outcome: Any
    began = time.monotonic()
    try:
        outcome = action()
    except DeployError as refused:
        outcome = refused
    took = time.monotonic() - began
    time.sleep(CALM_SECONDS)
    return summarize(name, clients, start, time.monotonic(), reconnects, took, **extra), outcome


def steps(target: LocalTarget) -> dict[str, float]:
    start = target.phases["started"]
    return {step: round(at - start, 2) for step, at in target.phases.items() if step != "started"}


def switch_seconds(clients: Clients, target: LocalTarget, old: str) -> float:
    """From nginx's reload until the last answer that named the old model."""
    reloaded = target.phases["reloaded"]
    late = [a.at for a in clients.window(reloaded, time.monotonic()) if a.version == old]
    return round(max(late, default=reloaded) - reloaded, 3)


def spread(access_log: Path, offset: int) -> dict[str, int]:
    """Answers per replica (nginx's $upstream_addr) in the access log after ``offset``."""
    with access_log.open("rb") as handle:
        handle.seek(offset)
        lines = handle.read().decode(errors="replace").splitlines()
    by_replica: Counter[str] = Counter()
    for line in lines:
        fields = line.split()
        if len(fields) > 5 and fields[3] == "/score":
            by_replica[fields[5].rstrip(",")] += 1
    return dict(by_replica)


# --- set-up ------------------------------------------------------------------------------------


def stored_models(workdir: Path) -> dict[str, str]:
    """Model tags of A (models/), B (another threshold) and a broken copy, in the store."""
    from credit_risk.serving.model_store import store

    params = load_params()
    paths = params.paths
    pipeline = ModelFiles(paths.model, paths.model_info, paths.background)
    other = ModelFiles.in_folder(workdir / "other")
    other.model.parent.mkdir()
    other.model.write_bytes(paths.model.read_bytes())
    other.background.write_bytes(paths.background.read_bytes())
    info = json.loads(paths.model_info.read_text())
    info["decision_threshold"] = round(float(info["decision_threshold"]) / 2, 3)
    other.info.write_text(json.dumps(info))
    broken = ModelFiles(workdir / "garbage.joblib", paths.model_info, paths.background)
    broken.model.write_bytes(b"this is not a pickled model")
    name = params.serve.model_name
    return {
        label: str(store(name, files, {"source": "benchmark"}).tag)
        for label, files in (("a", pipeline), ("b", other), ("broken", broken))
    }


def build_bento(model_tag: str) -> str:
    """One build per process, as `make bento` does (BentoML keeps a build's arguments)."""
    code = (
        "import sys; from credit_risk.config import load_params; "
        "from credit_risk.serving.bento import build; "
        "print(build(sys.argv[1], load_params().serve))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, model_tag],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return done.stdout.split()[-1]


def note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- the baseline ------------------------------------------------------------------------------


def serve_directly(bento: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as handle:
        return subprocess.Popen(
            serve_command(bento, port),
            cwd=log.parent,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_ready(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        connection = HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            connection.request("GET", "/readyz")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            connection.close()
        time.sleep(0.1)
    raise RuntimeError(f"bentoml serve on port {port} never became ready")


def stop_directly(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's process group and its workers' (their own sessions)."""
    if process.poll() is not None:
        return
    from credit_risk.deploy.supervise import descendants, signal_all, wait_gone

    family = descendants(process.pid)
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    signal_all(family, signal.SIGTERM)
    wait_gone(family, 10)
    signal_all(family, signal.SIGKILL)


def naive_restart(bentos: dict[str, str], workdir: Path, clients_count: int) -> Event:
    port = free_port(set())
    log = workdir / "naive.log"
    first = serve_directly(bentos["a"], port, log)
    second: subprocess.Popen[bytes] | None = None
    try:
        wait_ready(port, first)
        with Clients(f"http://127.0.0.1:{port}", clients_count) as clients:

            def restart() -> None:
                nonlocal second
                stop_directly(first)
                second = serve_directly(bentos["b"], port, log)
                wait_ready(port, second)

            event, _ = under_load("naive restart A -> B (no proxy)", clients, restart)
        return event
    finally:
        stop_directly(first)
        if second is not None:
            stop_directly(second)


# --- the run -----------------------------------------------------------------------------------


def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    note("storing the models and building three bentos (one process each)...")
    models = stored_models(workdir)
    bentos = {label: build_bento(tag) for label, tag in models.items()}
    releases = {
        label: Release(bento=bentos[label], model_tag=models[label], model_version=number)
        for number, label in enumerate(("a", "b", "broken"), start=1)
    }
    settings = load_environment("staging").local.model_copy(update={"port": free_port(set())})
    target = LocalTarget("bench", settings, workdir / ".deploy" / "bench")
    events: list[Event] = []
    try:
        note(f"deploying A ({settings.replicas} replicas behind nginx on port {settings.port})")
        started = time.monotonic()
        target.deploy(releases["a"])
        first = round(time.monotonic() - started, 2)
        first_steps = steps(target)
        access_log = target.state_dir / "nginx" / "access.log"
        with Clients(target.where, args.clients) as clients:
            time.sleep(2.5)  # the access log is flushed every 2 s
            offset = access_log.stat().st_size
            begin = time.monotonic()
            time.sleep(args.steady_seconds)
            end = time.monotonic()
            steady = summarize("steady", clients, begin, end, clients.reconnects, end - begin)
            time.sleep(2.5)
            shares = spread(access_log, offset)
            note("deploying B under load")
            event, _ = under_load("switch A -> B", clients, lambda: target.deploy(releases["b"]))
            events.append(
                Event(
                    **{
                        **asdict(event),
                        "switch_seconds": switch_seconds(clients, target, models["a"]),
                        "steps": steps(target),
                    }
                )
            )
            note("deploying the broken bento under load")
            event, outcome = under_load(
                "failed deploy (broken model)", clients, lambda: target.deploy(releases["broken"])
            )
            if not isinstance(outcome, DeployError):
                raise RuntimeError("the broken bento was deployed")
            refused = str(outcome)
            events.append(event)
            note("rolling back to A under load")
            event, _ = under_load("rollback B -> A", clients, lambda: target.deploy(releases["a"]))
            events.append(
                Event(
                    **{
                        **asdict(event),
                        "switch_seconds": switch_seconds(clients, target, models["b"]),
                        "steps": steps(target),
                    }
                )
            )
    finally:
        target.stop()
    note("baseline: a naive restart of bentoml serve, without the proxy")
    baseline = naive_restart(bentos, workdir, args.clients)
    return {
        "clients": args.clients,
        "settings": settings.model_dump(),
        "models": models,
        "first_deploy_seconds": first,
        "first_deploy_steps": first_steps,
        "steady": asdict(steady),
        "steady_by_replica": shares,
        "refused_because": refused.splitlines()[0],
        "events": [asdict(event) for event in events],
        "baseline": asdict(baseline),
    }


def ratio(value: float, baseline: float) -> str:
    return f"{value / baseline:.3f}" if baseline else "n/a (baseline 0)"


def report(results: dict[str, Any]) -> None:
    settings, steady = results["settings"], results["steady"]
    print(
        f"\nLocal deploy target: {settings['replicas']} replicas behind nginx, "
        f"drain {settings['drain_seconds']} s, {results['clients']} keep-alive clients"
    )
    print(
        f"first deploy to ready: {results['first_deploy_seconds']} s, "
        f"steps (s from the deploy call): {results['first_deploy_steps']}"
    )
    print(
        f"steady load through the proxy: {steady['per_second']} requests/s, "
        f"{steady['failed']} failed; answers by replica: {results['steady_by_replica']}"
    )
    rows = [*results["events"], results["baseline"]]
    print(
        f"\n{'event':34} {'seconds':>8} {'switch s':>9} {'requests':>9} {'failed':>7} "
        f"{'req/s':>7} {'no answer s':>12} {'reconnects':>10}"
    )
    for row in rows:
        switched = "" if row["switch_seconds"] is None else f"{row['switch_seconds']:.3f}"
        print(
            f"{row['name']:34} {row['seconds']:8.2f} {switched:>9} {row['requests']:9d} "
            f"{row['failed']:7d} {row['per_second']:7.1f} {row['outage_seconds']:12.3f} "
            f"{row['reconnects']:10d}"
        )
    for row in rows:
        if row["failures"]:
            print(f"  {row['name']}: failures {row['failures']}")
    for row in results["events"]:
        if row["steps"]:
            print(f"  {row['name']}: steps (s from the deploy call) {row['steps']}")
    print(f"  the broken bento was refused: {results['refused_because']}")
    base = results["baseline"]
    switch = results["events"][0]
    failed = ratio(switch["failed"], base["failed"])
    print(
        f"\nagainst the naive restart (same run, same clients): failed requests "
        f"{switch['failed']} vs {base['failed']} (ratio {failed}), "
        f"longest time without an answer {switch['outage_seconds']} s vs "
        f"{base['outage_seconds']} s (ratio "
        f"{ratio(switch['outage_seconds'], base['outage_seconds'])})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4, help="client threads (keep-alive)")
    parser.add_argument("--steady-seconds", type=float, default=5.0)
    args = parser.parse_args()
    os.chdir(ROOT)  # params.yaml, models/ and deploy/ are relative to the repository root
    # A kill (from make or CI) becomes an exit, so that everything started is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    with tempfile.TemporaryDirectory(prefix="credit-risk-bench-deploy-") as tmp:
        workdir = Path(tmp)
        # A throw-away store, set before anything asks BentoML where its home is.
        os.environ["BENTOML_HOME"] = str(workdir / "bentoml")
        os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
        results = measure(args, workdir)
    report(results)
    write_json(RESULTS, results)
    print(f"\nfigures written to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
