"""The kubernetes target's kubectl calls, exactly, against a stand-in for kubectl (no cluster
runs here): deploy, a failed rollout and its undo, observe, stop, and a missing kubectl."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_workspace import a_release, build, copy_settings, with_releases

from credit_risk.deploy import kubernetes
from credit_risk.deploy.environments import (
    Release,
    environment_names,
    load_environment,
    write_release,
)
from credit_risk.deploy.kubernetes import KubernetesTarget, Layout, render_all
from credit_risk.deploy.targets import DeployError, target_for

STAND_INS = Path(__file__).parent / "stand_ins"
PROGRESS_DEADLINE = 'error: deployment "{app}" exceeded its progress deadline\n'


@dataclass
class Kubectl:
    """The stand-in's record of calls, and the answers it plays."""

    log: Path
    answers: Path

    def answer(self, verb: str, **answer: Any) -> None:
        known = json.loads(self.answers.read_text()) if self.answers.exists() else {}
        self.answers.write_text(json.dumps({**known, verb: answer}))

    def calls(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def commands(self) -> list[list[str]]:
        return [call["argv"] for call in self.calls()]


@pytest.fixture
def kubectl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Kubectl:
    stand_in = Kubectl(tmp_path / "kubectl-calls.jsonl", tmp_path / "kubectl-answers.json")
    monkeypatch.setenv("PATH", f"{STAND_INS}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("KUBECTL_STAND_IN_LOG", str(stand_in.log))
    monkeypatch.setenv("KUBECTL_STAND_IN_ANSWERS", str(stand_in.answers))
    return stand_in


@dataclass
class Workspace:
    folder: Path
    params: Path
    name: str

    def target(self) -> KubernetesTarget:
        environment = load_environment(self.name, self.folder)
        return KubernetesTarget(self.name, environment, self.folder, self.params)

    @property
    def overlay(self) -> Path:
        return Layout(self.folder).overlay(self.name)

    def overlay_files(self) -> dict[str, bytes]:
        return {path.name: path.read_bytes() for path in sorted(self.overlay.iterdir())}


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    """Environment files with a release in each, rendered; the target is the first one."""
    folder = with_releases(tmp_path / "repository")
    params = folder.parent / "params.yaml"
    render_all(folder, params)
    return Workspace(folder, params, environment_names(folder)[0])


def cluster_answer(workspace: Workspace, release: Release, ready: int) -> str:
    """What `kubectl get deployment -o json` says of the rendered release, ``ready`` pods up."""
    rendered = next(item for item in build(workspace.overlay) if item["kind"] == "Deployment")
    settings = load_environment(workspace.name, workspace.folder).kubernetes
    # The cluster's copy: the rendered object with the release's image, defaults and status.
    (container,) = rendered["spec"]["template"]["spec"]["containers"]
    assert container["image"].endswith(release.bento)
    rendered["spec"]["replicas"] = settings.replicas
    rendered["status"] = {
        "replicas": settings.replicas,
        "updatedReplicas": settings.replicas,
        "readyReplicas": ready,
        "availableReplicas": ready,
        "conditions": [
            {
                "type": "Available",
                "status": "True",
                "lastUpdateTime": "2030-01-02T03:04:05Z",
                "lastTransitionTime": "2030-01-02T03:04:05Z",
            },
            {
                "type": "Progressing",
                "status": "True",
                "reason": "NewReplicaSetAvailable",
                "lastUpdateTime": "2030-01-02T03:05:06Z",
                "lastTransitionTime": "2030-01-01T00:00:00Z",
            },
        ],
    }
    return json.dumps(rendered)


def expected(workspace: Workspace, *verbs: str) -> list[list[str]]:
    """The exact kubectl command of each step, as the target must run it."""
    target = workspace.target()
    kube = target.settings
    app = target.names.app
    overlay = str(workspace.overlay)
    seconds = f"{kube.rollout_timeout_seconds}s"
    namespaced = ["kubectl", "-n", kube.namespace]
    commands = {
        "apply": ["kubectl", "apply", "-k", overlay],
        "rollout status": [
            *namespaced,
            "rollout",
            "status",
            f"deployment/{app}",
            f"--timeout={seconds}",
        ],
        "rollout undo": [*namespaced, "rollout", "undo", f"deployment/{app}"],
        "get": [*namespaced, "get", "deployment", app, "-o", "json"],
        "delete": [
            "kubectl",
            "delete",
            "-k",
            overlay,
            "--ignore-not-found",
            f"--timeout={seconds}",
        ],
    }
    return [commands[verb] for verb in verbs]


def test_deploy_applies_the_overlay_then_waits_for_the_rollout(
    workspace: Workspace, kubectl: Kubectl
) -> None:
    release = a_release(workspace.params, 42)
    kubectl.answer("get", stdout=cluster_answer_after(workspace, release))
    seen = workspace.target().deploy(release)
    assert kubectl.commands() == expected(workspace, "apply", "rollout status", "get")
    applied = yaml.safe_load(kubectl.calls()[0]["files"]["kustomization.yaml"])
    assert applied["images"][0]["newTag"] == release.bento.partition(":")[2]
    assert (seen.running, seen.ready, seen.bento, seen.model_tag) == (
        True,
        True,
        release.bento,
        release.model_tag,
    )


def cluster_answer_after(workspace: Workspace, release: Release) -> str:
    """The cluster's answer once ``release`` is rolled out (rendered into a scratch copy)."""
    where = workspace.folder.parent.parent / "scratch"
    scratch = Workspace(copy_settings(where), where / "params.yaml", workspace.name)
    write_release(scratch.name, release, scratch.folder)
    render_all(scratch.folder, scratch.params)
    settings = load_environment(workspace.name, workspace.folder).kubernetes
    return cluster_answer(scratch, release, ready=settings.replicas)


def test_a_failed_rollout_is_undone_and_the_overlay_put_back(
    workspace: Workspace, kubectl: Kubectl
) -> None:
    before = workspace.overlay_files()
    app = workspace.target().names.app
    kubectl.answer("rollout status", exit=1, stderr=PROGRESS_DEADLINE.format(app=app))
    release = a_release(workspace.params, 43)
    with pytest.raises(DeployError) as failed:
        workspace.target().deploy(release)
    assert kubectl.commands() == expected(workspace, "apply", "rollout status", "rollout undo")
    message = str(failed.value)
    assert "exceeded its progress deadline" in message
    assert release.bento in message and "rollout undo" in message
    assert workspace.overlay_files() == before


def test_a_failed_undo_is_reported_too(workspace: Workspace, kubectl: Kubectl) -> None:
    kubectl.answer("rollout status", exit=1, stderr="error: timed out waiting for the condition")
    kubectl.answer("rollout undo", exit=1, stderr="error: no rollout history found")
    with pytest.raises(DeployError, match="no rollout history found"):
        workspace.target().deploy(a_release(workspace.params, 44))


def test_a_failed_apply_puts_the_overlay_back_without_an_undo(
    workspace: Workspace, kubectl: Kubectl
) -> None:
    before = workspace.overlay_files()
    reason = "error: unable to recognize: no matches for kind"
    kubectl.answer("apply", exit=1, stderr=reason)
    with pytest.raises(DeployError, match=reason):
        workspace.target().deploy(a_release(workspace.params, 45))
    assert kubectl.commands() == expected(workspace, "apply")
    assert workspace.overlay_files() == before


def test_the_first_deploy_puts_back_an_overlay_without_release(
    tmp_path: Path, kubectl: Kubectl
) -> None:
    folder = copy_settings(tmp_path)
    params = tmp_path / "params.yaml"
    render_all(folder, params)
    workspace = Workspace(folder, params, environment_names(folder)[0])
    before = workspace.overlay_files()
    kubectl.answer("rollout status", exit=1, stderr="error: timed out waiting for the condition")
    with pytest.raises(DeployError, match="timed out"):
        workspace.target().deploy(a_release(params, 1))
    assert workspace.overlay_files() == before  # the patch files it wrote are gone again


def test_observe_reads_the_deployment(workspace: Workspace, kubectl: Kubectl) -> None:
    release = load_environment(workspace.name, workspace.folder).release
    assert release is not None
    settings = load_environment(workspace.name, workspace.folder).kubernetes
    kubectl.answer("get", stdout=cluster_answer(workspace, release, ready=settings.replicas - 1))
    seen = workspace.target().observe()
    assert kubectl.commands() == expected(workspace, "get")
    assert (seen.running, seen.ready) == (True, True)
    assert (seen.bento, seen.model_tag) == (release.bento, release.model_tag)
    assert seen.since == datetime(2030, 1, 2, 3, 5, 6, tzinfo=UTC)
    assert seen.where == f"namespace {settings.namespace}"
    assert f"{settings.replicas - 1}/{settings.replicas} replicas ready" in seen.detail


@pytest.mark.parametrize(
    "reason",
    [
        'Error from server (NotFound): deployments.apps "x" not found',
        "The connection to the server localhost:8080 was refused",
    ],
)
def test_observe_reports_a_missing_deployment_or_cluster_as_not_running(
    workspace: Workspace, kubectl: Kubectl, reason: str
) -> None:
    kubectl.answer("get", exit=1, stderr=reason)
    seen = workspace.target().observe()
    assert (seen.running, seen.ready, seen.bento, seen.model_tag) == (False, False, None, None)
    assert reason in seen.detail


def test_stop_deletes_what_the_overlay_describes(workspace: Workspace, kubectl: Kubectl) -> None:
    workspace.target().stop()
    assert kubectl.commands() == expected(workspace, "delete")


def test_stop_without_a_release_has_nothing_to_delete(tmp_path: Path, kubectl: Kubectl) -> None:
    folder = copy_settings(tmp_path)
    render_all(folder, tmp_path / "params.yaml")
    name = environment_names(folder)[0]
    KubernetesTarget(name, load_environment(name, folder), folder, tmp_path / "params.yaml").stop()
    assert kubectl.commands() == []


def test_a_missing_kubectl_is_a_deploy_error_naming_it(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "no-tools"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    before = workspace.overlay_files()
    with pytest.raises(DeployError, match="kubectl not found"):
        workspace.target().deploy(a_release(workspace.params, 46))
    assert workspace.overlay_files() == before
    with pytest.raises(DeployError, match="kubectl not found"):
        workspace.target().stop()
    seen = workspace.target().observe()
    assert not seen.running and "kubectl not found" in seen.detail


def test_a_kubectl_that_hangs_is_cut_off(
    workspace: Workspace, kubectl: Kubectl, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kubernetes, "QUICK_SECONDS", 1)
    kubectl.answer("apply", sleep=5)
    with pytest.raises(DeployError, match="no answer within 1 s"):
        workspace.target().deploy(a_release(workspace.params, 47))


def test_target_for_picks_the_kubernetes_target(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(workspace.folder.parent)  # the default paths: deploy/, params.yaml
    environment = load_environment(workspace.name, workspace.folder)
    chosen = target_for(workspace.name, environment.model_copy(update={"target": "kubernetes"}))
    assert isinstance(chosen, KubernetesTarget)
    assert chosen.overlay == Path("deploy/kubernetes/overlays") / workspace.name
