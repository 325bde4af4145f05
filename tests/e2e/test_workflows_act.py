"""The GitHub workflows, run end to end on this machine with act (.github/act/run.py, `make act`).

A pull request that changes a param: train-report retrains it against the real registry stack
and a DVC remote, hands its report to CML and commits the retrained dvc.lock back to the branch.
Its merge: deploy pulls exactly what that lock names, registers, builds and deploys staging
(nginx and bentoml on the local target), which then serves the merged model, and opens the
promotion pull request. Real act, make targets, servers and git; stand-ins only for what cannot
run here (GitHub's actions, CML, gh), which record what they were asked to do.

Which checks jobs run here: the checks workflow's end-to-end job runs the slow tests, this one
among them, so running it here would recurse. Of the fast jobs, this test runs `lint` (lint and
types) and `workflows` (actionlint, zizmor without a token); `test` has the same steps as `lint`
but for `make test-fast`, which CI runs anyway, and would add about five minutes of the same
tests on two cores. `make act` by hand runs every job, `make act-pr ACT_ARGS="--checks fast"`
the three fast ones.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pytest
import yaml

from credit_risk.deploy.environments import Release, parse_environment
from credit_risk.schema import contract, example_record

ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT / ".github" / "act" / "run.py"
pytestmark = pytest.mark.slow
PR_SECONDS = 2400  # train-report and two checks jobs, two at a time, each its own `make setup`
DEPLOY_SECONDS = 1200
CHECKS = ("lint", "workflows")
MODEL_FILE = "models/model.joblib"


@dataclass
class Runs:
    """One work folder of run.py: the stand-in GitHub, records, artifacts and summary."""

    folder: Path
    remote: Path
    tracking_uri: str

    def runner(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(RUNNER), *args, "--workdir", str(self.folder)],
            cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip

    @property
    def summary(self) -> dict[str, Any]:
        loaded = json.loads((self.folder / "summary.json").read_text(encoding="utf-8"))
        assert isinstance(loaded, dict)
        return loaded

    def run(self, name: str) -> dict[str, Any]:
        """The act run of that name, asserted green (its log's end shown if not)."""
        found = [run for run in self.summary["runs"] if run["name"] == name]
        assert len(found) == 1, f"no single act run {name}: {self.summary['runs']}"
        run = found[0]
        tail = "".join(Path(run["log"]).read_text(encoding="utf-8").splitlines(True)[-60:])
        assert run["returncode"] == 0, f"act run {name} failed:\n{tail}"
        return dict(run)

    def git(self, *args: str) -> str:
        origin = self.summary["origin"]
        done = subprocess.run(["git", "-C", origin, *args], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def calls(self, tool: str) -> list[dict[str, Any]]:
        lines = (self.folder / "records" / tool / "calls.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines]

    def artifact(self, run: dict[str, Any], name: str) -> Path:
        """An artifact the act run kept (under its number, which is its run id)."""
        folder = self.folder / "artifacts" / str(run["number"]) / name
        assert folder.is_dir(), f"no artifact {name} from {run['name']}"
        return folder

    def lock_model_md5(self, ref: str) -> str:
        lock = yaml.safe_load(self.git("show", f"{ref}:dvc.lock"))
        return next(o["md5"] for o in lock["stages"]["train"]["outs"] if o["path"] == MODEL_FILE)


@pytest.fixture(scope="module")
def work() -> Iterator[Runs]:
    """A work folder, a DVC remote and a registry stack of this module's own (its models,
    versions and aliases are the runs', whatever other tests register)."""
    from credit_risk.registry import stack

    # Not under pytest's private tmp_path: the stack's PostgreSQL user must reach its folders.
    folder = Path(tempfile.mkdtemp(prefix="credit-risk-act-"))
    folder.chmod(0o755)
    try:
        registry = stack.up(folder / "stack")
        runs = Runs(folder / "work", folder / "dvc-remote", registry.tracking_uri)
        yield runs
    finally:
        # What the deploy left serving, stopped by pid.
        subprocess.run(
            [sys.executable, str(RUNNER), "stop", "--workdir", str(folder / "work")],
            capture_output=True, timeout=120, check=False,
        )  # fmt: skip
        stack.down(folder / "stack", purge=True)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def pull_request(work: Runs) -> Runs:
    """run.py pr: a pull request changing a param; train-report and two checks jobs."""
    done = work.runner(
        "pr", "--checks", ",".join(CHECKS), "--parallel", "2", "--tracking-uri", work.tracking_uri,
        "--dvc-remote", str(work.remote), timeout=PR_SECONDS,
    )  # fmt: skip
    assert (work.folder / "summary.json").exists(), done.stdout[-3000:] + done.stderr
    return work


@pytest.fixture(scope="module")
def merged(pull_request: Runs) -> Runs:
    """run.py deploy: the pull request merged (with what CI committed back), the deploy run."""
    done = pull_request.runner(
        "deploy", "--tracking-uri", pull_request.tracking_uri,
        "--dvc-remote", str(pull_request.remote), timeout=DEPLOY_SECONDS,
    )  # fmt: skip
    assert "merge" in pull_request.summary, done.stdout[-3000:] + done.stderr
    return pull_request


def changed_param(runs: Runs) -> tuple[str, str, str]:
    """(key, old value, new value) of the pull request's change, as run.py describes it."""
    key, _, values = runs.summary["pull_request"]["change"].partition(": ")
    old, _, new = values.partition(" -> ")
    return key, old, new


def test_the_pull_request_gets_its_report_as_one_cml_comment(pull_request: Runs) -> None:
    run = pull_request.run("train-report")
    number = pull_request.summary["pull_request"]["number"]
    calls = pull_request.calls("cml")
    assert len(calls) == 1, calls
    assert calls[0]["argv"] == [
        "comment", "update", "--no-publish", f"--target=pr/{number}", "reports/pr-report.md",
    ]  # fmt: skip
    handed = pull_request.folder / "records" / "cml" / calls[0]["files"]["reports/pr-report.md"]
    report = (pull_request.artifact(run, "train-report") / "reports" / "pr-report.md").read_text()
    assert handed.read_text() == report
    # The report shows the change under review, with both values.
    key, old, new = changed_param(pull_request)
    row = next((line for line in report.splitlines() if f"`{key}`" in line), None)
    assert row is not None and old in row and new in row, report


def test_retraining_is_committed_back_to_the_pull_request_branch(pull_request: Runs) -> None:
    pull_request.run("train-report")
    pull = pull_request.summary["pull_request"]
    branch = f"refs/heads/{pull['head_ref']}"
    head = pull_request.git("rev-parse", branch)
    assert head != pull["head_sha"], "nothing was committed back to the pull request's branch"
    assert pull_request.git("rev-parse", f"{head}^") == pull["head_sha"]  # on top, fast-forward
    changed = pull_request.git("diff", "--name-only", pull["head_sha"], head).splitlines()
    assert "dvc.lock" in changed
    # The lock records the branch's param and a model retrained with it ...
    key, _, new = changed_param(pull_request)
    lock = yaml.safe_load(pull_request.git("show", f"{head}:dvc.lock"))
    section, _, name = key.rpartition(".")
    assert float(lock["stages"]["train"]["params"]["params.yaml"][section][name]) == float(new)
    md5 = pull_request.lock_model_md5(head)
    assert md5 != pull_request.lock_model_md5(pull["head_sha"])
    # ... whose files are in the DVC remote, for the deploy that never retrains.
    assert (pull_request.remote / "files" / "md5" / md5[:2] / md5[2:]).is_file()


def test_the_checks_jobs_are_green(pull_request: Runs) -> None:
    for job in CHECKS:
        pull_request.run(f"checks-{job}")


def score(port: int) -> dict[str, Any]:
    body = json.dumps({contract().entity: example_record()}).encode()
    call = urllib.request.Request(
        f"http://127.0.0.1:{port}/score", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(call, timeout=30) as answer:
        return dict(json.load(answer))


def answers(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_the_merge_deploys_staging_and_opens_the_promotion(merged: Runs) -> None:
    run = merged.run("deploy")
    after = merged.summary["merge"]["after"]
    assert merged.git("rev-parse", "refs/heads/main") == after

    # The promotion pull request: a branch on origin, one commit on main's head, that writes
    # staging's release into production's file; gh was asked to open it, with the gate report.
    branches = merged.git("for-each-ref", "--format=%(refname:short)", "refs/heads/promote/")
    assert len(branches.splitlines()) == 1, branches
    branch = branches.strip()
    assert merged.git("rev-parse", f"{branch}^") == after
    changed = merged.git("diff", "--name-only", after, branch).splitlines()
    assert {"deploy/production.yaml", "deploy/staging.yaml"} <= set(changed)
    files = {
        name: parse_environment(merged.git("show", f"{branch}:deploy/{name}.yaml"), Path(name))
        for name in ("staging", "production")
    }
    release = files["staging"].release
    assert isinstance(release, Release)
    assert files["production"].release == release
    assert branch == f"promote/{release.bento.replace(':', '-')}"
    calls = merged.calls("gh")
    assert [call["argv"][:2] for call in calls] == [["pr", "create"]], calls
    opened = calls[0]
    assert (opened["base"], opened["head"]) == ("main", branch)
    assert opened["head_sha"] == merged.git("rev-parse", branch)
    assert release.bento in opened["title"]
    gate = (merged.artifact(run, "promotion") / "reports" / "gate.md").read_text()
    assert gate.strip() and gate.strip() in opened["body"]

    # Staging serves the merged model: the one the merged dvc.lock names, registered from the
    # merge commit and aliased staging.
    port = merged.summary["staging_port"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=30) as ready:
        assert ready.status == 200
    assert score(port)["model_version"] == release.model_tag
    client = mlflow.MlflowClient(merged.tracking_uri)
    name = release.model_tag.partition(":")[0]
    version = client.get_model_version_by_alias(name, "staging")
    assert int(version.version) == release.model_version
    assert version.tags["lineage.model_md5"] == merged.lock_model_md5(after)
    assert version.tags["lineage.registered_from_commit"] == after

    # Stopping what the run left serving (by pid) frees the port.
    stopped = merged.runner("stop", timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    assert not answers(port)


MONITOR_SECONDS = 2400  # two monitor runs (three and two jobs) and a dispatched train-report


@pytest.fixture(scope="module")
def monitored(merged: Runs) -> Runs:
    """run.py monitor: a drifted log of the merged model with outcomes; the monitor workflow
    (alarm, issue, retraining pull request), train-report dispatched on that pull request, then
    the monitor again without retraining."""
    done = merged.runner(
        "monitor", "--tracking-uri", merged.tracking_uri, "--dvc-remote", str(merged.remote),
        timeout=MONITOR_SECONDS,
    )  # fmt: skip
    assert "monitor_log" in merged.summary, done.stdout[-3000:] + done.stderr
    return merged


def gh_calls(runs: Runs, *command: str) -> list[dict[str, Any]]:
    return [call for call in runs.calls("gh") if call["argv"][: len(command)] == list(command)]


def retraining(runs: Runs) -> dict[str, Any]:
    (opened,) = [c for c in gh_calls(runs, "pr", "create") if c["head"].startswith("retrain/")]
    return opened


def test_an_alarm_opens_an_issue_and_a_retraining_pull_request(monitored: Runs) -> None:
    run = monitored.run("monitor")
    report = monitored.artifact(run, "monitor-report")
    verdict = json.loads((report / "monitor.json").read_text())
    (shifted,) = monitored.summary["monitor_log"]["shift"]
    assert verdict["alarm"] is True and shifted in verdict["drift"]["drifted"]

    # One issue, labelled, holding the report (the label is made sure of by every run).
    labels = {call["argv"][2] for call in gh_calls(monitored, "label", "create")}
    (issue,) = gh_calls(monitored, "issue", "create")
    (label,) = labels
    assert issue["argv"][issue["argv"].index("--label") + 1] == label
    summary = (report / "monitor.md").read_text().strip()
    assert summary and summary in issue["body"] and shifted in issue["body"]

    # The retraining pull request: one commit on main with params.yaml and the data's DVC
    # pointer and record; the rows themselves in the DVC remote, not in git.
    opened = retraining(monitored)
    branch, main = opened["head"], monitored.git("rev-parse", "refs/heads/main")
    assert opened["base"] == "main" and opened["head_sha"] != main
    assert monitored.git("rev-parse", f"{opened['head_sha']}^") == main
    changed = set(monitored.git("diff", "--name-only", main, opened["head_sha"]).splitlines())
    params = yaml.safe_load(monitored.git("show", f"{opened['head_sha']}:params.yaml"))
    data = params["ingest"]["file"]
    record_file = data.removesuffix(".csv.gz") + ".json"
    assert params["ingest"]["source"] == "file" and data.startswith("data/training/")
    assert changed == {"params.yaml", f"{data}.dvc", record_file, "data/training/.gitignore"}
    pointer = yaml.safe_load(monitored.git("show", f"{opened['head_sha']}:{data}.dvc"))
    md5 = pointer["outs"][0]["md5"]
    assert (monitored.remote / "files" / "md5" / md5[:2] / md5[2:]).is_file()
    record = json.loads(monitored.git("show", f"{opened['head_sha']}:{record_file}"))
    rows = monitored.summary["monitor_log"]["rows"]
    assert 0.4 * rows < record["fresh"]["rows"] < 0.6 * rows  # the half with outcomes
    assert record["rows"] == record["base"]["rows"] + record["fresh"]["rows"]
    assert "outcomes arrive" in opened["body"] and summary in opened["body"]

    # train-report and checks started on the branch, with the pull request's number.
    started = {call["workflow"]: call for call in gh_calls(monitored, "workflow", "run")}
    assert set(started) == {"train-report.yml", "checks.yml"}
    assert started["train-report.yml"]["ref"] == branch == started["checks.yml"]["ref"]
    assert started["train-report.yml"]["inputs"] == {"pull-request": str(opened["number"])}


def test_train_report_retrains_the_retraining_pull_request_on_the_fresh_rows(
    monitored: Runs,
) -> None:
    monitored.run("train-report-dispatched")
    opened = retraining(monitored)
    comment = monitored.calls("cml")[-1]
    assert comment["argv"][-2:] == [f"--target=pr/{opened['number']}", "reports/pr-report.md"]
    handed = monitored.folder / "records" / "cml" / comment["files"]["reports/pr-report.md"]
    assert "`ingest.file`" in handed.read_text()  # the change under review, in the report

    # Retrained on the new rows: committed back on top of the pull request's commit, with a
    # lock whose ingest reads the new file and whose model is new and in the remote.
    head = monitored.git("rev-parse", f"refs/heads/{opened['head']}")
    assert monitored.git("rev-parse", f"{head}^") == opened["head_sha"]
    lock = yaml.safe_load(monitored.git("show", f"{head}:dvc.lock"))
    data = lock["stages"]["ingest"]["params"]["params.yaml"]["ingest.file"]
    pointer = yaml.safe_load(monitored.git("show", f"{head}:{data}.dvc"))
    deps = {dep["path"]: dep["md5"] for dep in lock["stages"]["ingest"]["deps"]}
    assert pointer["outs"][0]["md5"] in deps.values()
    md5 = monitored.lock_model_md5(head)
    assert md5 != monitored.lock_model_md5("refs/heads/main")
    assert (monitored.remote / "files" / "md5" / md5[:2] / md5[2:]).is_file()


def test_a_second_alarm_updates_the_open_issue_instead_of_opening_another(
    monitored: Runs,
) -> None:
    monitored.run("monitor-again")
    (issue,) = gh_calls(monitored, "issue", "create")
    (edited,) = gh_calls(monitored, "issue", "edit")
    (commented,) = gh_calls(monitored, "issue", "comment")
    assert edited["argv"][2] == commented["argv"][2] == str(issue["number"])
    assert "again" in commented["body"]
    assert len([c for c in gh_calls(monitored, "pr", "create") if "retrain/" in c["head"]]) == 1
