"""The GitHub workflows: linted (actionlint), audited offline (zizmor), and held to the rules
that keep them safe for forks and supply chains, plus the one task vocabulary (make targets)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
BIN = Path(sys.executable).parent
PINNED = re.compile(r"^[A-Za-z0-9-]+/[A-Za-z0-9._/-]+@[0-9a-f]{40}$")
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(\S+)\s*(?:#\s*(\S+))?\s*$")
VERSION_COMMENT = re.compile(r"^v\d+(\.\d+)*$")
MAKE_CALL = re.compile(r"(?:^|[;&|(]\s*|\$\()\s*make\s+([^;&|)\n]*)", re.MULTILINE)
MAKE_TARGET = re.compile(r"^([a-z][a-z0-9-]*):.*##", re.MULTILINE)


def load(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(document, dict), f"{path.name}: not a mapping"
    return document


def triggers(document: dict[str, Any]) -> dict[str, Any]:
    """The `on:` section (YAML 1.1 reads the bare key `on` as True)."""
    raw = document.get("on", document.get(True))
    if isinstance(raw, str):
        return {raw: None}
    if isinstance(raw, list):
        return dict.fromkeys(raw)
    assert isinstance(raw, dict), "no `on:` section"
    return raw


def steps(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(name, step) for name, job in document["jobs"].items() for step in job["steps"]]


def clean_env() -> dict[str, str]:
    """This environment without GitHub tokens: zizmor stays offline, whoever runs the tests."""
    tokens = {"GH_TOKEN", "GITHUB_TOKEN", "ZIZMOR_GITHUB_TOKEN"}
    return {key: value for key, value in os.environ.items() if key not in tokens}


def test_there_are_workflows() -> None:
    names = {path.name for path in WORKFLOWS}
    assert {"checks.yml", "train-report.yml", "deploy.yml", "monitor.yml"} <= names


def test_the_monitor_runs_on_a_schedule_and_its_writers_run_no_pull_request_code() -> None:
    document = load(ROOT / ".github" / "workflows" / "monitor.yml")
    assert {"schedule", "workflow_dispatch"} == set(triggers(document))
    jobs = document["jobs"]
    assert jobs["monitor"]["permissions"] == {"contents": "read", "id-token": "write"}
    assert jobs["issue"]["permissions"] == {"issues": "write"}
    assert not any("checkout" in str(step.get("uses", "")) for step in jobs["issue"]["steps"])
    # What it starts with the run's token must be able to start: workflow_dispatch.
    for name in ("train-report.yml", "checks.yml"):
        assert "workflow_dispatch" in triggers(load(ROOT / ".github" / "workflows" / name))


def test_actionlint_reports_nothing() -> None:
    done = subprocess.run(
        [str(BIN / "actionlint"), "-no-color", *map(str, WORKFLOWS)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**clean_env(), "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == ""


def test_zizmor_reports_nothing_offline() -> None:
    done = subprocess.run(
        [str(BIN / "zizmor"), "--offline", "--no-progress", "--format", "json", ".github"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=clean_env(),
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout) == []


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda path: path.name)
def test_every_action_is_pinned_to_a_commit_with_its_version(path: Path) -> None:
    found = 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        match = USES_LINE.match(line)
        if match is None:
            continue
        found += 1
        action, version = match.groups()
        where = f"{path.name}:{number}: {action}"
        if action.startswith(("./", "docker://")):
            continue
        assert PINNED.match(action), f"{where} is not pinned to a full commit SHA"
        assert version and VERSION_COMMENT.match(version), f"{where} lacks a '# vX' comment"
    assert found == sum(1 for _, step in steps(load(path)) if "uses" in step)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda path: path.name)
def test_permissions_start_read_only(path: Path) -> None:
    document = load(path)
    assert "permissions" in document, f"{path.name}: no top-level permissions"
    assert document["permissions"] in ({}, {"contents": "read"}), path.name


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda path: path.name)
def test_no_pull_request_target(path: Path) -> None:
    assert "pull_request_target" not in triggers(load(path)), path.name


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda path: path.name)
def test_checkout_never_keeps_the_token(path: Path) -> None:
    for job, step in steps(load(path)):
        if str(step.get("uses", "")).startswith("actions/checkout@"):
            assert step.get("with", {}).get("persist-credentials") is False, f"{path.name}:{job}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda path: path.name)
def test_no_expression_inside_a_script(path: Path) -> None:
    # Values reach scripts through env:, never pasted into the script text (injection).
    for job, step in steps(load(path)):
        assert "${{" not in str(step.get("run", "")), f"{path.name}:{job}: {step.get('name')}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda path: path.name)
def test_secrets_only_in_environment_jobs(path: Path) -> None:
    for name, job in load(path)["jobs"].items():
        if "environment" not in job:
            assert "secrets." not in json.dumps(job), f"{path.name}:{name} uses a secret"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda path: path.name)
def test_deploys_are_never_cancelled_midway(path: Path) -> None:
    for name, job in load(path)["jobs"].items():
        if "environment" in job:
            concurrency = job.get("concurrency", {})
            assert concurrency.get("group"), f"{path.name}:{name}: no concurrency group"
            assert concurrency.get("cancel-in-progress") is False, f"{path.name}:{name}"


def test_every_make_target_a_workflow_calls_exists() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    known = set(MAKE_TARGET.findall(makefile))
    called: set[str] = set()
    for path in WORKFLOWS:
        for _, step in steps(load(path)):
            for arguments in MAKE_CALL.findall(str(step.get("run", ""))):
                called |= {
                    word
                    for word in arguments.split()
                    if not word.startswith("-") and "=" not in word and word not in {"make", "\\"}
                }
    assert called, "no workflow calls make"
    assert called <= known, f"not in the Makefile: {sorted(called - known)}"
