"""The promotion flow as a team runs it, against the real shared registry stack (mlflow server,
PostgreSQL, S3 on moto) and the local target (bentoml serve replicas behind nginx):

train, gate, register, build, deploy to staging, promote; production serves the very bento
staging passed; a broken bento leaves production serving; roll back, then forward. A client
calls production throughout every switch, and none of its requests may fail.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import bentoml
import mlflow
import pytest

from credit_risk.deploy.environments import Release, load_environment
from credit_risk.deploy.targets import DeployError, target_for
from credit_risk.model import ModelFiles
from credit_risk.schema import contract, example_record
from credit_risk.serving.model_store import store

pytestmark = pytest.mark.slow
STEP_SECONDS = 900
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
}


@dataclass
class Project:
    folder: Path
    env: dict[str, str]
    timings: dict[str, float] = field(default_factory=dict)

    def run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        started = time.perf_counter()
        done = subprocess.run(
            command, cwd=self.folder, env=self.env, capture_output=True, text=True,
            timeout=STEP_SECONDS,
        )  # fmt: skip
        self.timings[" ".join(command[-3:])] = round(time.perf_counter() - started, 2)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
        return done

    def module(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(sys.executable, "-m", *args, check=check)

    def commit(self, message: str) -> None:
        self.run("git", "add", "-A")
        self.run("git", "commit", "-q", "-m", message)

    def release(self, environment: str) -> Release | None:
        return load_environment(environment, self.folder / "deploy").release

    def url(self, environment: str) -> str:
        return (
            f"http://127.0.0.1:{load_environment(environment, self.folder / 'deploy').local.port}"
        )


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def project(
    tmp_path_factory: pytest.TempPathFactory, repository_copy, registry_stack
) -> Iterator[Project]:
    """A fresh copy of the repository, its environments on free ports, tracking to the stack."""
    folder = repository_copy(tmp_path_factory.mktemp("team"))
    for name in ("staging", "production"):
        path = folder / "deploy" / f"{name}.yaml"
        text = re.sub(r"(?m)^  port: \d+", f"  port: {free_port()}", path.read_text())
        path.write_text(text, encoding="utf-8")
    venv = Path(sys.executable).parent
    env = {
        **os.environ,
        **GIT_IDENTITY,
        "PATH": f"{venv}{os.pathsep}{os.environ['PATH']}",
        "MLFLOW_TRACKING_URI": registry_stack.tracking_uri,
    }
    team = Project(folder, env)
    team.commit("environments on free ports")
    yield team
    for name in ("staging", "production"):
        environment = load_environment(name, folder / "deploy")
        target_for(name, environment, folder / ".deploy").stop()


class Caller(threading.Thread):
    """Scores the example record against a URL, back to back, counting what fails."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        body = json.dumps({contract().entity: example_record()}).encode()
        self.request = urllib.request.Request(
            f"{url}/score", data=body, headers={"Content-Type": "application/json"}
        )
        self.stopping = threading.Event()
        self.ok = 0
        self.failures: list[str] = []
        self.versions: list[str] = []

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                with urllib.request.urlopen(self.request, timeout=30) as answer:
                    self.versions.append(json.load(answer)["model_version"])
                    self.ok += 1
            except (urllib.error.URLError, OSError, ValueError) as problem:
                self.failures.append(repr(problem))

    def __enter__(self) -> Caller:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        self.join(timeout=60)


def build_bento(project: Project) -> str:
    return project.module("credit_risk.serving.bento", "build").stdout.split()[-1]


def broken_bento(project: Project, good: Release) -> Release:
    """A bento whose model cannot load: the good model's settings and background, garbage for
    the pipeline file."""
    good_files = ModelFiles.in_folder(Path(bentoml.models.get(good.model_tag).path))
    folder = project.folder / "broken-model"
    folder.mkdir()
    broken = ModelFiles.in_folder(folder)
    broken.model.write_bytes(b"not a pickle")
    broken.info.write_bytes(good_files.info.read_bytes())
    broken.background.write_bytes(good_files.background.read_bytes())
    name = bentoml.Tag.from_taglike(good.model_tag).name
    tag = str(store(name, broken, {"source": "test: deliberately broken"}).tag)
    code = (
        "import sys; from credit_risk.config import load_params; "
        "from credit_risk.serving.bento import build; "
        "print(build(sys.argv[1], load_params().serve))"
    )
    bento = project.run(sys.executable, "-c", code, tag).stdout.split()[-1]
    return Release(bento=bento, model_tag=tag, model_version=good.model_version)


def test_train_gate_register_deploy_promote_break_roll_back_and_forward(project: Project) -> None:
    # 1. Train against the shared registry, judge, register.
    project.run("dvc", "repro")
    project.module("credit_risk.gate.check")
    registered = project.module("credit_risk.registry.register").stdout.strip().splitlines()[-1]
    assert registered.endswith("/1")
    first = build_bento(project)

    # 2. Staging, then the same bento to production.
    project.module("credit_risk.deploy", "deploy", "staging", first)
    project.commit(f"staging: {first}")
    refused = project.module("credit_risk.deploy", "deploy", "production", "nope:1", check=False)
    assert refused.returncode == 1 and "no bento nope:1" in refused.stderr
    project.module("credit_risk.deploy", "promote")
    project.commit(f"production: {first}")
    staging, production = project.release("staging"), project.release("production")
    assert production == staging and production is not None and production.bento == first
    client = mlflow.MlflowClient(project.env["MLFLOW_TRACKING_URI"])
    name = bentoml.Tag.from_taglike(production.model_tag).name
    assert client.get_model_version_by_alias(name, "production").version == "1"
    assert client.get_model_version_by_alias(name, "staging").version == "1"
    seen = target_for("production", load_environment("production", project.folder / "deploy"),
                      project.folder / ".deploy").observe()  # fmt: skip
    assert seen.ready and seen.bento == first and seen.model_tag == production.model_tag
    # The Kubernetes overlay follows the file, in the same commit: the same image everywhere.
    overlay = project.folder / "deploy/kubernetes/overlays/production/kustomization.yaml"
    assert f"newTag: {bentoml.Tag.from_taglike(first).version}" in overlay.read_text()
    project.module("credit_risk.deploy.kubernetes", "check")
    traced = project.module("credit_risk.registry.trace", production.model_tag, "--json")
    lineage = json.loads(traced.stdout)
    assert lineage["registry_version"] == 1
    assert set(lineage["aliases"]) == {"candidate", "staging", "production"}

    # 3. A second model (another decision threshold), through staging to production while a
    #    client calls production: no request fails, and the answers switch.
    params = project.folder / "params.yaml"
    params.write_text(
        params.read_text().replace("decision_threshold: 0.3", "decision_threshold: 0.35"),
        encoding="utf-8",
    )
    project.run("dvc", "repro")
    project.module("credit_risk.gate.check")  # now against production, on the same rows
    assert project.module("credit_risk.registry.register").stdout.strip().endswith("/2")
    second = build_bento(project)
    project.module("credit_risk.deploy", "deploy", "staging", second)
    project.commit(f"staging: {second}")
    with Caller(project.url("production")) as caller:
        project.module("credit_risk.deploy", "promote")
    project.commit(f"production: {second}")
    newer = project.release("production")
    assert newer is not None and newer.bento == second
    assert caller.failures == [] and caller.ok > 0
    assert caller.versions[-1] == newer.model_tag

    # 4. A broken bento: the target refuses it, production keeps serving, nothing fails.
    broken = broken_bento(project, newer)
    production_target = target_for(
        "production", load_environment("production", project.folder / "deploy"),
        project.folder / ".deploy",
    )  # fmt: skip
    with Caller(project.url("production")) as caller, pytest.raises(DeployError) as failed:
        production_target.deploy(broken)
    assert "model_load_failed" in str(failed.value) or "ready" in str(failed.value)
    assert caller.failures == [] and caller.ok > 0
    assert set(caller.versions) == {newer.model_tag}

    # 5. Roll back (the previous release in git), then forward, with the client calling.
    with Caller(project.url("production")) as caller:
        project.module("credit_risk.deploy", "rollback", "production")
    assert project.release("production") == production
    assert caller.failures == [] and caller.versions[-1] == production.model_tag
    assert client.get_model_version_by_alias(name, "production").version == "1"
    project.commit("production: roll back")
    with Caller(project.url("production")) as caller:
        project.module("credit_risk.deploy", "deploy", "production", second)
    assert caller.failures == [] and caller.versions[-1] == newer.model_tag
    project.commit("production: forward again")

    status = project.module("credit_risk.deploy", "status")
    assert status.stdout.count("in sync") == 2, status.stdout
    # Someone moves the production alias by hand: status flags the drift and exits 3.
    client.set_registered_model_alias(name, "production", "1")
    drifted = project.module("credit_risk.deploy", "status", check=False)
    assert drifted.returncode == 3
    assert "DRIFT: registry differs" in drifted.stdout and drifted.stdout.count("in sync") == 1

    # Stopping staging leaves its file as it was; status says the target differs.
    project.module("credit_risk.deploy", "stop", "staging")
    assert project.release("staging") == newer
    stopped = project.module("credit_risk.deploy", "status", check=False)
    staging_row = next(line for line in stopped.stdout.splitlines() if line.startswith("staging"))
    assert "nothing" in staging_row and "target differs" in staging_row
    print(json.dumps(project.timings, indent=2))
