"""The local act runs' stand-ins (.github/act/standins): one for every action the workflows pin,
accepting what the workflows pass, and doing their job: artifacts laid out as the real ones,
cml and gh calls recorded, gh refusing a pull request whose branch is not on origin."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
STANDINS = ROOT / ".github" / "act" / "standins"
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def runner() -> ModuleType:
    spec = importlib.util.spec_from_file_location("act_run", ROOT / ".github" / "act" / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_every_pinned_action_has_a_stand_in_that_takes_its_inputs() -> None:
    module = runner()
    pinned = module.pinned_actions()
    assert {action for action, _ in pinned} == set(module.STANDIN_FOR)
    for workflow in WORKFLOWS:
        for job in yaml.safe_load(workflow.read_text())["jobs"].values():
            for step in job["steps"]:
                if "uses" not in step:
                    continue
                action = step["uses"].partition("@")[0]
                folder = STANDINS / module.STANDIN_FOR[action]
                declared = yaml.safe_load((folder / "action.yml").read_text())
                assert "stand-in" in declared["name"], folder
                missing = set(step.get("with", {})) - set(declared.get("inputs", {}))
                assert not missing, f"{workflow.name}: {action} stand-in lacks inputs {missing}"
    flags = module.local_repository_flags()
    assert len(flags) == len(pinned)
    assert all(flag.startswith("--local-repository=") and "@" in flag for flag in flags)


def test_the_pull_request_change_doubles_one_param_and_keeps_the_rest(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    original = (ROOT / "params.yaml").read_text()
    params.write_text(original)
    change = runner().change_regularisation(params)
    before, after = yaml.safe_load(original), yaml.safe_load(params.read_text())
    old = before["train"]["logistic_regression"]["C"]
    assert after["train"]["logistic_regression"]["C"] == pytest.approx(old * 2)
    after["train"]["logistic_regression"]["C"] = old
    assert after == before
    assert change == f"train.logistic_regression.C: {old} -> {round(old * 2, 6)}"
    changed_lines = set(params.read_text().splitlines()) ^ set(original.splitlines())
    assert len(changed_lines) == 2  # one line out, one in: comments and layout kept


def action_step(script: Path, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(script)], cwd=cwd, env={**os.environ, **env},
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_artifacts_round_trip_with_the_real_layout(tmp_path: Path) -> None:
    workspace, store, elsewhere = tmp_path / "job1", tmp_path / "store", tmp_path / "job2"
    (workspace / "reports" / "figures").mkdir(parents=True)
    (workspace / "dvc.lock").write_text("lock")
    (workspace / "reports" / "gate.md").write_text("gate")
    (workspace / "reports" / "figures" / "roc.png").write_bytes(b"png")
    (workspace / "reports" / ".hidden").write_text("not uploaded by default")
    common = {"ACT_STANDIN_ARTIFACTS": str(store), "GITHUB_RUN_ID": "7", "NAME": "report"}
    upload = {
        **common, "GITHUB_WORKSPACE": str(workspace), "PATHS": "dvc.lock\nreports/\n",
        "IF_NO_FILES_FOUND": "error", "INCLUDE_HIDDEN": "false", "OVERWRITE": "false",
    }  # fmt: skip
    done = action_step(STANDINS / "upload-artifact" / "upload.py", upload, workspace)
    assert done.returncode == 0, done.stdout + done.stderr
    again = action_step(STANDINS / "upload-artifact" / "upload.py", upload, workspace)
    assert again.returncode == 1 and "exists in this run" in again.stdout
    elsewhere.mkdir()
    download = {**common, "GITHUB_WORKSPACE": str(elsewhere), "TARGET": ""}
    done = action_step(STANDINS / "download-artifact" / "download.py", download, elsewhere)
    assert done.returncode == 0, done.stdout + done.stderr
    got = sorted(
        str(path.relative_to(elsewhere)) for path in elsewhere.rglob("*") if path.is_file()
    )
    assert got == ["dvc.lock", "reports/figures/roc.png", "reports/gate.md"]
    missing = action_step(STANDINS / "download-artifact" / "download.py",
                          {**download, "NAME": "nope"}, elsewhere)  # fmt: skip
    assert missing.returncode == 1 and "Artifact not found for name: nope" in missing.stdout
    empty = {**upload, "NAME": "none", "PATHS": "no-such-file"}
    nothing = action_step(STANDINS / "upload-artifact" / "upload.py", empty, workspace)
    assert nothing.returncode == 1 and "No files were found" in nothing.stdout


def test_the_cml_stand_in_records_the_call_and_the_report(tmp_path: Path) -> None:
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "pr-report.md").write_text("## Model report\n")
    record = tmp_path / "record"
    env = {**os.environ, "CML_STANDIN_DIR": str(record), "CML_STANDIN_VERSION": "0.20.6"}
    argv = ["comment", "update", "--no-publish", "--target=pr/3", "reports/pr-report.md"]
    cml = str(STANDINS / "setup-cml" / "bin" / "cml")
    done = subprocess.run([cml, *argv], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    (call,) = [json.loads(line) for line in (record / "calls.jsonl").read_text().splitlines()]
    assert call["argv"] == argv and call["version"] == "0.20.6"
    assert (record / call["files"]["reports/pr-report.md"]).read_text() == "## Model report\n"
    gone = subprocess.run([cml, "comment", "update", "nope.md"], cwd=tmp_path, env=env,
                          capture_output=True, text=True)  # fmt: skip
    assert gone.returncode == 1 and "nope.md" in gone.stderr


Gh = Callable[..., subprocess.CompletedProcess[str]]


def gh_with_branch(tmp_path: Path, branch: str, **env_extra: str) -> Gh:
    """The gh stand-in, called from a clone whose origin (a bare repository) has ``branch``."""
    origin, clone = tmp_path / "origin.git", tmp_path / "clone"
    identity = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
                "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}  # fmt: skip
    env = {**os.environ, **identity, "GH_STANDIN_DIR": str(tmp_path / "record"), **env_extra}
    for command, cwd in (
        (["git", "init", "-q", "--bare", str(origin)], tmp_path),
        (["git", "clone", "-q", str(origin), str(clone)], tmp_path),
        (["git", "commit", "-q", "--allow-empty", "-m", "a commit"], clone),
        (["git", "push", "-q", "origin", f"HEAD:refs/heads/{branch}"], clone),
    ):
        subprocess.run(command, cwd=cwd, env=env, check=True, capture_output=True)
    gh = str(STANDINS / "bin" / "gh")

    def call(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([gh, *args], cwd=clone, env=env, capture_output=True, text=True)

    return call


def test_the_gh_stand_in_opens_only_what_origin_has(tmp_path: Path) -> None:
    call = gh_with_branch(tmp_path, "promote/x")
    (tmp_path / "body.md").write_text("the gate report")
    assert call("auth", "setup-git").returncode == 0
    create = ["pr", "create", "--base", "main", "--title", "Promote x", "--body-file",
              str(tmp_path / "body.md")]  # fmt: skip
    refused = call(*create, "--head", "promote/not-pushed")
    assert refused.returncode == 1 and "no branch promote/not-pushed" in refused.stderr
    assert call(*create, "--head", "promote/x").returncode == 0
    (opened,) = [json.loads(line) for line in (tmp_path / "record" / "calls.jsonl").open()]
    assert (opened["head"], opened["base"], opened["body"]) == ("promote/x", "main",
                                                                "the gate report")  # fmt: skip
    assert call("pr", "merge", "1").returncode == 1


def test_the_gh_stand_in_keeps_issues_and_pull_requests_as_github_would(tmp_path: Path) -> None:
    """The monitor workflow's calls: an alarm issue opened once, then found and updated; the
    retraining pull request's branch looked up by number; workflow runs recorded."""
    call = gh_with_branch(tmp_path, "retrain/x", GH_STANDIN_RESERVED="1", GH_REPO="local/x")
    (tmp_path / "report.md").write_text("drift in age")

    listing = ["issue", "list", "--label", "alarm", "--state", "open", "--limit", "1",
               "--json", "number", "--jq", ".[0].number // empty"]  # fmt: skip
    body = ["--body-file", str(tmp_path / "report.md")]
    assert call("issue", "create", "--label", "alarm", "--title", "t", *body).returncode == 1
    assert call("label", "create", "alarm", "--color", "D93F0B", "--force").returncode == 0
    assert call(*listing).stdout == ""  # none open yet
    opened = call("issue", "create", "--label", "alarm", "--title", "Alarm", *body)
    assert opened.stdout.strip() == "https://github.com/local/x/issues/2"  # 1 is reserved
    assert call(*listing).stdout.strip() == "2"
    (tmp_path / "report.md").write_text("drift in age and duration")
    assert call("issue", "edit", "2", *body).returncode == 0
    assert call("issue", "comment", "2", "--body", "again").returncode == 0
    assert call("issue", "comment", "9", "--body", "x").returncode == 1  # no such issue
    pull = call("pr", "create", "--base", "main", "--head", "retrain/x", "--title", "Retrain",
                *body)  # fmt: skip
    assert pull.stdout.strip() == "https://github.com/local/x/pull/3"
    view = ["--json", "headRefName", "--jq", ".headRefName"]
    assert call("pr", "view", "3", *view).stdout.strip() == "retrain/x"
    assert call("pr", "view", "2", *view).returncode == 1  # an issue, not a pull request
    ran = call("workflow", "run", "train-report.yml", "--ref", "retrain/x", "-f", "pull-request=3")
    assert ran.returncode == 0
    state = json.loads((tmp_path / "record" / "state.json").read_text())
    assert state["items"]["2"]["body"] == "drift in age and duration"
    assert state["items"]["2"]["comments"] == ["again"]
    calls = [json.loads(line) for line in (tmp_path / "record" / "calls.jsonl").open()]
    assert calls[-1]["inputs"] == {"pull-request": "3"} and calls[-1]["ref"] == "retrain/x"
