"""The local deploy target for real: bentos built here, `bentoml serve` replicas under their
supervisor, nginx in front, a client calling through it while releases come and go."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.client import HTTPConnection, HTTPException
from pathlib import Path
from typing import Any

import bentoml
import pytest

from credit_risk.config import Params
from credit_risk.deploy.environments import LocalSettings, Release
from credit_risk.deploy.local import LocalTarget, default_nginx
from credit_risk.deploy.supervise import Spec, alive, command_line, descendants
from credit_risk.deploy.targets import DeployError
from credit_risk.files import write_json
from credit_risk.monitoring.job import environment_log
from credit_risk.monitoring.predictions import read_predictions
from credit_risk.schema import contract, example_record
from credit_risk.serving.bento import pinned_model
from credit_risk.serving.model_store import store
from credit_risk.serving.scorer import ModelFiles
from credit_risk.train import model_info

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
SETTLE_SECONDS = 60  # for a restarted replica to answer again


def bento_for(model_tag: str) -> str:
    """Build a bento for a stored model, in a process of its own like `make bento`: BentoML
    keeps a build's arguments for the rest of the process, so a second build in this one
    would pin the first build's model."""
    code = (
        "import sys; from credit_risk.config import load_params; "
        "from credit_risk.serving.bento import build; "
        "print(build(sys.argv[1], load_params().serve))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, model_tag],
        cwd=ROOT,  # the build context: pyproject.toml's [tool.bentoml.build], params.yaml
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.split()[-1]


@pytest.fixture(scope="module")
def releases(
    model_files: ModelFiles,
    model_tag: str,
    params: Params,
    source_split,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Release]:
    """Three bentos: A (the test model), B (the same pipeline with another decision threshold:
    another stored model) and a broken one (its model.joblib is garbage, all else valid)."""
    # No skip when nginx is missing: .ci/run installs it, and a suite that quietly skips the
    # proxy would pass without ever switching traffic.
    assert os.access(default_nginx(), os.X_OK), "nginx is not installed (Debian: nginx-light)"
    folder = tmp_path_factory.mktemp("models")
    other = ModelFiles.in_folder(folder / "other")
    other.model.parent.mkdir()
    shutil.copyfile(model_files.model, other.model)
    shutil.copyfile(model_files.background, other.background)
    threshold = round(params.train.decision_threshold / 2, 3)
    moved = params.model_copy(
        update={"train": params.train.model_copy(update={"decision_threshold": threshold})}
    )
    write_json(other.info, model_info(moved, len(source_split[0]), "test-data-md5"))
    broken = ModelFiles(folder / "garbage.joblib", model_files.info, model_files.background)
    broken.model.write_bytes(b"this is not a pickled model")
    tags = {
        "a": model_tag,
        "b": str(store(params.serve.model_name, other, {"source": "test"}).tag),
        "broken": str(store(params.serve.model_name, broken, {"source": "test"}).tag),
    }
    assert len(set(tags.values())) == 3
    built = {
        name: Release(bento=bento_for(tag), model_tag=tag, model_version=index)
        for index, (name, tag) in enumerate(tags.items(), start=1)
    }
    assert all(pinned_model(r.bento) == r.model_tag for r in built.values())
    return built


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def settings() -> LocalSettings:
    return LocalSettings(port=free_port(), replicas=2, ready_timeout_seconds=120, drain_seconds=1)


def our_processes(target: LocalTarget) -> set[int]:
    """Every process the target runs now: nginx, supervisors, replicas and their workers."""
    found: set[int] = set()
    pid_file = target.state_dir / "nginx" / "nginx.pid"
    if pid_file.exists():
        found.add(int(pid_file.read_text()))
    for supervisor in target.state_dir.glob("releases/*/supervisor.pid"):
        found.add(int(supervisor.read_text()))
    found |= {pid for pid in list(found) for pid in descendants(pid)}
    return {pid for pid in found if alive(pid)}


@pytest.fixture
def target(settings: LocalSettings, tmp_path: Path) -> Iterator[LocalTarget]:
    deployed = LocalTarget("e2e", settings, tmp_path / ".deploy" / "e2e")
    try:
        yield deployed
    finally:
        running = our_processes(deployed)
        deployed.stop()
        deployed.stop()  # idempotent
        assert not {pid for pid in running if alive(pid)}, "stop() left processes running"
        assert not deployed.observe().running


@dataclass
class Caller:
    """POST /score through the proxy, again and again, on one keep-alive connection (like a
    pooled HTTP client: a connection the server has closed is noticed before it is reused)."""

    url: str
    answers: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        host, port = self.url.removeprefix("http://").split(":")
        body = json.dumps({contract().entity: example_record()})
        headers = {"Content-Type": "application/json"}
        connection: HTTPConnection | None = None
        while not self.stop.is_set():
            if connection is not None and connection.sock is not None:
                readable, _, _ = select.select([connection.sock], [], [], 0)
                if readable:  # closed by the server while idle
                    connection.close()
                    connection = None
            if connection is None:
                connection = HTTPConnection(host, int(port), timeout=30)
            try:
                connection.request("POST", "/score", body, headers)
                answer = connection.getresponse()
                answer.read()
            except (OSError, HTTPException) as problem:
                self.failures.append(f"{type(problem).__name__}: {problem}")
                connection.close()
                connection = None
                continue
            self.answers[answer.status] += 1
            if answer.status != 200:
                self.failures.append(f"status {answer.status}")
            version = answer.getheader("X-Model-Version") or ""
            if not self.versions or self.versions[-1] != version:
                self.versions.append(version)
            if answer.getheader("Connection", "").lower() == "close":
                connection.close()
                connection = None
        if connection is not None:
            connection.close()

    def __enter__(self) -> Caller:
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        time.sleep(0.5)
        return self

    def __exit__(self, *_: object) -> None:
        time.sleep(0.5)
        self.stop.set()
        self.thread.join(timeout=40)
        assert not self.thread.is_alive()
        assert sum(self.answers.values()) > 0, "the client never got an answer"


def workers_of(replica: int) -> list[int]:
    return [p for p in descendants(replica) if "_bentoml_impl.worker" in command_line(p)]


def test_releases_switch_without_a_failed_request(
    target: LocalTarget,
    releases: dict[str, Release],
    settings: LocalSettings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = target.deploy(releases["a"])
    assert first.running and first.ready, first.detail
    assert first.model_tag == releases["a"].model_tag
    assert first.bento == releases["a"].bento
    assert first.where == f"http://127.0.0.1:{settings.port}"
    assert first.detail.startswith(f"replicas alive {settings.replicas}/{settings.replicas}")
    state = json.loads((target.state_dir / "state.json").read_text())
    assert state["release"] == releases["a"].model_dump()
    assert len(state["ports"]) == len(set(state["ports"])) == settings.replicas
    # One BentoML worker per replica, whatever the bento's serve.workers says.
    assert [len(workers_of(pid)) for pid in state["pids"]["replicas"]] == [1] * settings.replicas

    with Caller(first.where) as caller:
        second = target.deploy(releases["b"])
    assert caller.failures == [], caller.failures
    answered = caller.answers[200]
    assert caller.versions[0] == releases["a"].model_tag
    assert caller.versions[-1] == releases["b"].model_tag
    assert second.ready and second.model_tag == releases["b"].model_tag
    assert second.since is not None and first.since is not None and second.since >= first.since
    assert not any(alive(pid) for pid in state["pids"]["replicas"]), "A still runs after drain"

    with Caller(first.where) as caller, pytest.raises(DeployError) as refused:
        target.deploy(releases["broken"])
    assert "model failed to load" in str(refused.value)
    assert "model_load_failed" in str(refused.value)  # the replica's own log line
    assert caller.failures == [], caller.failures
    answered += caller.answers[200]
    assert set(caller.versions) == {releases["b"].model_tag}
    after = target.observe()
    assert after.ready and after.model_tag == releases["b"].model_tag
    assert after.since == second.since
    # The broken release's supervisor and replicas are gone; B's are the only ones left.
    supervisors = [int(p.read_text()) for p in target.state_dir.glob("releases/*/supervisor.pid")]
    assert len([pid for pid in supervisors if alive(pid)]) == 1

    # Another environment set to the same port: refused, and this one never noticed.
    elsewhere = LocalTarget("other", settings, tmp_path / ".deploy" / "other")
    with pytest.raises(DeployError, match=f"port {settings.port} .* in use by another program"):
        elsewhere.deploy(releases["a"])
    assert target.observe().ready

    # Every release of the environment logged what it scored into the environment's one log,
    # where `make monitor ENV=<name>` finds it: both versions, every answered request (and the
    # smoke tests' rows).
    (tmp_path / "deploy").mkdir()
    shutil.copy(ROOT / "deploy" / "staging.yaml", tmp_path / "deploy" / f"{target.name}.yaml")
    monkeypatch.chdir(tmp_path)
    folder = environment_log(target.name)
    assert folder.resolve() == target.layout.predictions.resolve()
    logged = read_predictions(folder, None, None)
    assert set(logged["model_version"]) == {releases["a"].model_tag, releases["b"].model_tag}
    assert len(logged) >= answered  # the smoke tests' rows too


def test_a_killed_replica_comes_back_and_the_proxy_keeps_answering(
    target: LocalTarget, releases: dict[str, Release], settings: LocalSettings
) -> None:
    deployed = target.deploy(releases["a"])
    state = json.loads((target.state_dir / "state.json").read_text())
    victim = state["pids"]["replicas"][0]
    folder = target.state_dir / "releases" / state["release_id"]
    orphans = workers_of(victim)
    with Caller(deployed.where) as caller:
        os.kill(victim, signal.SIGKILL)  # its worker, in a session of its own, lives on
        deadline = time.monotonic() + SETTLE_SECONDS
        while time.monotonic() < deadline:
            replicas = json.loads((folder / "replicas.json").read_text())["replicas"]
            pid = replicas[0]["pid"]
            if pid not in (None, victim) and target.observe().detail.startswith(
                "replicas alive 2/2"
            ):
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"replica 1 did not come back:\n{(folder / 'supervisor.log').read_text()}")
        # Wait until it answers again, then keep the client calling through the proxy a while.
        port = state["ports"][0]
        while time.monotonic() < deadline:
            probe = HTTPConnection("127.0.0.1", port, timeout=5)
            try:
                probe.request("GET", "/readyz")
                if probe.getresponse().status == 200:
                    break
            except OSError:
                pass
            finally:
                probe.close()
            time.sleep(0.5)
        time.sleep(1)
    assert caller.failures == [], caller.failures
    assert not any(alive(pid) for pid in orphans), "the dead replica's worker was left running"
    log = (folder / "supervisor.log").read_text()
    assert '"replica_exited"' in log and '"replica_leftovers_stopped"' in log
    assert log.count('"replica_started"') == settings.replicas + 1


def test_a_port_held_by_another_program_is_refused(
    target: LocalTarget, releases: dict[str, Release], settings: LocalSettings
) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", settings.port))
        other.listen()
        with pytest.raises(DeployError, match=f"port {settings.port} .* another program"):
            target.deploy(releases["a"])
        with socket.create_connection(("127.0.0.1", settings.port), timeout=5):
            pass  # the other program still listens
    assert not (target.state_dir / "releases").exists()
    assert not target.observe().running


def test_a_missing_nginx_is_named(
    releases: dict[str, Release], settings: LocalSettings, tmp_path: Path
) -> None:
    missing = tmp_path / "bin" / "nginx"
    target = LocalTarget("e2e", settings, tmp_path / "state", nginx=missing)
    with pytest.raises(DeployError, match=rf"nginx not found at {missing}.*nginx-light"):
        target.deploy(releases["a"])
    assert not (tmp_path / "state" / "releases").exists()


def test_a_bento_not_in_the_store_is_refused(
    target: LocalTarget, releases: dict[str, Release]
) -> None:
    unknown = releases["a"].model_copy(update={"bento": "credit-risk:notbuilthere"})
    with pytest.raises(DeployError, match="no bento credit-risk:notbuilthere"):
        target.deploy(unknown)
    mismatched = releases["a"].model_copy(update={"model_tag": releases["b"].model_tag})
    with pytest.raises(DeployError, match=f"serves model {releases['a'].model_tag}"):
        target.deploy(mismatched)
    assert not (target.state_dir / "releases").exists()
    assert bentoml.bentos.get(releases["a"].bento)  # still there


def supervise(folder: Path, spec: Spec) -> subprocess.Popen[bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    spec.write(folder)
    with (folder / "supervisor.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "credit_risk.deploy.supervise", str(folder)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def events(folder: Path) -> list[dict[str, Any]]:
    lines = (folder / "supervisor.log").read_text().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def until(condition: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_the_supervisor_backs_off_then_gives_up_on_a_crashing_replica(tmp_path: Path) -> None:
    crash = [sys.executable, "-c", "import sys; sys.exit(3)"]
    spec = Spec(commands=[crash], max_restarts=2, backoff_seconds=0.2, grace_seconds=2)
    supervisor = supervise(tmp_path, spec)
    try:
        until(lambda: any(e["event"] == "replica_given_up" for e in events(tmp_path)))
        seen = events(tmp_path)
        exits = [e for e in seen if e["event"] == "replica_exited"]
        delays = [e["in_seconds"] for e in seen if e["event"] == "replica_restart_scheduled"]
        assert [e["code"] for e in exits] == [3, 3, 3]
        assert delays == [0.2, 0.4]  # doubling
        replicas = json.loads((tmp_path / "replicas.json").read_text())["replicas"]
        assert replicas[0]["given_up"] and not replicas[0]["running"]
        assert supervisor.poll() is None  # the supervisor itself carries on
    finally:
        supervisor.terminate()
        assert supervisor.wait(timeout=20) == 0


def test_a_replica_that_ignores_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    stubborn = [
        sys.executable,
        "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)",
    ]
    supervisor = supervise(tmp_path, Spec(commands=[stubborn, stubborn], grace_seconds=1))
    until(lambda: len([e for e in events(tmp_path) if e["event"] == "replica_started"]) == 2)
    replicas = [e["pid"] for e in events(tmp_path) if e["event"] == "replica_started"]
    started = time.monotonic()
    supervisor.terminate()
    assert supervisor.wait(timeout=20) == 0
    assert time.monotonic() - started < 10
    assert not any(alive(pid) for pid in replicas)
    assert [e["event"] for e in events(tmp_path)][-3:] == ["stopping", "stop_timed_out", "stopped"]
