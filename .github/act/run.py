"""Run the GitHub workflows on this machine with act, end to end, with stand-ins for GitHub.

    python .github/act/run.py pr       # a pull request: checks and train-report
    python .github/act/run.py deploy   # then its merge to main: the deploy workflow
    python .github/act/run.py all      # both (make act)
    python .github/act/run.py monitor  # then the monitor workflow on a drifted log, the retraining
                                       # pull request it opens, and train-report on it
    python .github/act/run.py stop     # stop what the deploy left serving (make act-stop)

What plays GitHub, all under the work folder (default act-runs/, recreated by `pr` and `all`):

- ``github/<owner>/<name>.git``: a bare repository seeded with a snapshot of this working copy
  (tracked and new unignored files). The checkout stand-in clones from it and the workflows'
  ``git push origin`` goes to it.
- the pull request: a branch changing ``train.logistic_regression.C`` (so retraining changes
  dvc.lock), with ``refs/pull/1/head`` and ``refs/pull/1/merge`` as GitHub makes them, and the
  event JSON from ``events/`` filled in; for ``deploy``, a commit on main moves staging to a free
  loopback port, then the branch (with whatever the workflow committed back) is merged into main
  (no fast-forward), and a push event.
- for ``monitor``: a prediction log of the merged model, written by the package's simulator in a
  clone of main (``monitor-log/``: a drifted numeric feature, outcomes for half the rows), which
  the workflow reads as PREDICTION_LOG_URL; then the train-report run the monitor workflow
  started on its retraining pull request (workflow_dispatch), and a second monitor run, which
  updates the alarm issue instead of opening another.
- ``records/cml`` and ``records/gh``: what the cml and gh stand-ins were asked to do (gh keeps
  the issues and pull requests it opened in ``records/gh/state.json``).
- ``artifacts/``: what upload-artifact kept, per run; ``logs/``: each act run's output.
- ``summary.json``: staging's port, the refs, records, timings and exit codes of the runs.

The jobs run on this machine (act's self-hosted mode, ``-P ubuntu-24.04=-self-hosted``), with
the real make targets, the registry stack given by ``--tracking-uri`` (default: the one
``make registry-up`` started) and the DVC remote given by ``--dvc-remote`` (default: this
repository's local remote, ``dvc-remote/``). Third-party actions that cannot run here are
replaced by the stand-ins in ``standins/`` through act's ``--local-repository``, at the exact
commits the workflows pin, so the workflow files stay as GitHub runs them.

Staging keeps serving after the deploy run, on the port summary.json gives. act deletes a job's
workspace when the job succeeds, and with it the local target's state (``.deploy/``) and the
``.venv`` the processes run from; they go on serving from memory, and ``stop`` finds them by
their command lines and working folders, which name this work folder, and stops them by pid.

This is development tooling, kept beside the workflows it runs rather than in the package: the
package never imports it, and it imports nothing of the package.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import string
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / ".github" / "act"
STANDINS = HERE / "standins"
EVENTS = HERE / "events"
WORKFLOWS = ROOT / ".github" / "workflows"
ACT = Path(sys.executable).parent / "act"

# Not a hidden folder: `bentoml build` refuses a build context below one (the deploy job builds
# in its workspace, which act puts under the work folder).
WORKDIR = "act-runs"
REPOSITORY = "local/credit-risk"  # owner/name the runs use (github.repository)
RUNNER_LABEL = "ubuntu-24.04"  # the workflows' runs-on, run on this machine
PR_NUMBER = 1
PR_BRANCH = "act/weaker-regularisation"
STAGING_FILE = "deploy/staging.yaml"
# The stand-in for each third-party action the workflows use (see standins/README.md).
STANDIN_FOR = {
    "actions/checkout": "checkout",
    "actions/setup-python": "setup-python",
    "actions/upload-artifact": "upload-artifact",
    "actions/download-artifact": "download-artifact",
    "iterative/setup-cml": "setup-cml",
    "aws-actions/configure-aws-credentials": "configure-aws-credentials",
}
USES = re.compile(r"^\s*(?:-\s+)?uses:\s*([\w.-]+/[\w.-]+)@([0-9a-f]{40})\b", re.MULTILINE)
FAST_CHECKS = ("lint", "test", "workflows")  # the checks jobs but e2e (the slow tests)
IDENTITY = {
    "GIT_AUTHOR_NAME": "act runner",
    "GIT_AUTHOR_EMAIL": "act-runner@example.invalid",
    "GIT_COMMITTER_NAME": "act runner",
    "GIT_COMMITTER_EMAIL": "act-runner@example.invalid",
}
# Variables of this shell that would leak into the jobs and change what they do.
PRIVATE_PREFIXES = ("MLFLOW_", "DVC_", "BENTOML_", "GITHUB_", "RUNNER_", "ACT_", "CML_", "GH_")
PRIVATE_NAMES = {"VIRTUAL_ENV", "PYTHONPATH", "GITHUB_TOKEN", "PYTEST_CURRENT_TEST"}


class RunError(Exception):
    """Something act needs could not be prepared; the message says what."""


@dataclass
class ActRun:
    number: int  # also the run id (github.run_id), which keys its artifacts
    name: str
    command: list[str]
    log: str
    returncode: int
    seconds: float


@dataclass
class PullRequest:
    number: int
    head_ref: str
    head_sha: str
    base_ref: str
    base_sha: str
    merge_sha: str
    change: str


class Workspace:
    """The work folder of one set of runs, and the environment act runs in."""

    def __init__(self, folder: Path, tracking_uri: str, dvc_remote: Path, uv_cache: Path | None):
        self.folder = folder.absolute()
        self.tracking_uri = tracking_uri
        self.dvc_remote = dvc_remote.absolute()
        self.uv_cache = uv_cache
        self.github = self.folder / "github"
        self.origin = self.github / f"{REPOSITORY}.git"
        self.seed = self.folder / "seed"  # the people side: where commits are made and pushed
        self.logs = self.folder / "logs"
        self.records = self.folder / "records"
        self.summary_file = self.folder / "summary.json"
        self.lock = threading.Lock()  # act runs may go side by side
        self.numbered = 0

    def summary(self) -> dict[str, object]:
        if self.summary_file.exists():
            loaded = json.loads(self.summary_file.read_text(encoding="utf-8"))
            assert isinstance(loaded, dict)
            return loaded
        return {"runs": []}

    def save(self, **changes: object) -> dict[str, object]:
        with self.lock:
            summary = {**self.summary(), **changes}
            self.summary_file.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
            return summary

    def next_number(self) -> int:
        with self.lock:
            runs = self.summary().get("runs", [])
            assert isinstance(runs, list)
            self.numbered = max(self.numbered, len(runs)) + 1
            return self.numbered

    def add_run(self, run: ActRun) -> None:
        with self.lock:
            summary = self.summary()
            earlier = summary.get("runs", [])
            assert isinstance(earlier, list)
            runs = sorted([*earlier, asdict(run)], key=lambda each: int(each.get("number", 0)))
            text = json.dumps({**summary, "runs": runs}, indent=2) + "\n"
            self.summary_file.write_text(text, encoding="utf-8")

    def env(self) -> dict[str, str]:
        """This shell's environment without what would leak into the jobs, plus the stand-ins'."""
        venv_bin = str(Path(sys.executable).parent)
        kept = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(PRIVATE_PREFIXES) and name not in PRIVATE_NAMES
        }
        path = [
            part
            for part in os.environ.get("PATH", "").split(os.pathsep)
            if part and part != venv_bin  # the jobs make their own .venv
        ]
        env = {
            **kept,
            "PATH": os.pathsep.join([str(STANDINS / "bin"), *path]),
            "ACT_STANDIN_GITHUB": str(self.github),
            "ACT_STANDIN_ARTIFACTS": str(self.folder / "artifacts"),
            "CML_STANDIN_DIR": str(self.records / "cml"),
            "GH_STANDIN_DIR": str(self.records / "gh"),
            "GH_STANDIN_RESERVED": str(PR_NUMBER),  # run.py's own pull request
            # The bento store of this "runner machine": the deploy jobs build and serve from it.
            "BENTOML_HOME": str(self.folder / "bentoml"),
        }
        if self.uv_cache is not None:
            env["UV_CACHE_DIR"] = str(self.uv_cache)
        return env


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **IDENTITY},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RunError(f"git {' '.join(args)} in {cwd} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def pinned_actions() -> list[tuple[str, str]]:
    """Every (action, commit) the workflows use."""
    found = set()
    for workflow in sorted(WORKFLOWS.glob("*.yml")):
        found |= set(USES.findall(workflow.read_text(encoding="utf-8")))
    return sorted(found)


def local_repository_flags() -> list[str]:
    flags = []
    for action, commit in pinned_actions():
        if action not in STANDIN_FOR:
            raise RunError(f"{action} has no stand-in for local runs: add one in {STANDINS}")
        flags.append(f"--local-repository={action}@{commit}={STANDINS / STANDIN_FOR[action]}")
    return flags


# --- The repository on the stand-in GitHub ----------------------------------------------------


def seed_repository(work: Workspace) -> None:
    """A snapshot of this working copy (tracked and new, unignored files) as main of a new
    bare origin."""
    if work.folder.exists():
        stop(work)  # a previous run's staging serves from this folder
        shutil.rmtree(work.folder)
    work.seed.mkdir(parents=True)
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    for name in filter(None, listed.stdout.split("\0")):
        if (ROOT / name).is_file() and not (ROOT / name).is_symlink():
            (work.seed / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, work.seed / name)
    git(work.seed, "init", "-q", "-b", "main")
    git(work.seed, "add", "-A")
    git(work.seed, "commit", "-q", "-m", "Snapshot of the template")
    work.origin.parent.mkdir(parents=True)
    git(work.folder, "clone", "-q", "--bare", str(work.seed), str(work.origin))
    git(work.origin, "config", "uploadpack.allowAnySHA1InWant", "true")  # fetch by commit
    git(work.seed, "remote", "add", "origin", str(work.origin))
    git(work.seed, "fetch", "-q", "origin")


def move_staging(work: Workspace) -> int:
    """Commit to main a free loopback port for staging (this machine may serve 8101 already);
    returns it. Only staging's file changes, so the deploy leaves production alone."""
    git(work.seed, "fetch", "-q", "origin")
    git(work.seed, "switch", "-q", "main")
    git(work.seed, "reset", "-q", "--hard", "origin/main")
    path = work.seed / STAGING_FILE
    text = path.read_text(encoding="utf-8")
    old = re.search(r"(?m)^  port: (\d+)", text)
    if old is None:
        raise RunError(f"{STAGING_FILE}: no local port to move")
    port = free_port()
    text = text.replace(f"port: {old[1]}", f"port: {port}")
    path.write_text(text.replace(f"127.0.0.1:{old[1]}", f"127.0.0.1:{port}"), encoding="utf-8")
    git(work.seed, "commit", "-q", "-am", f"Staging on port {port} of this machine")
    git(work.seed, "push", "-q", "origin", "main")
    return port


def change_regularisation(params_file: Path) -> str:
    """Double train.logistic_regression.C in params.yaml, keeping comments; describe it."""
    text = params_file.read_text(encoding="utf-8")
    old = yaml.safe_load(text)["train"]["logistic_regression"]["C"]
    new = round(float(old) * 2, 6)
    block = re.compile(r"(?m)^(  logistic_regression:\n(?:    .*\n)*?    C: )(\S+)")
    changed, count = block.subn(lambda match: f"{match.group(1)}{new}", text)
    if count != 1:
        raise RunError(f"{params_file}: no train.logistic_regression.C line to change")
    params_file.write_text(changed, encoding="utf-8")
    return f"train.logistic_regression.C: {old} -> {new}"


def open_pull_request(work: Workspace) -> PullRequest:
    """A branch that changes a param, pushed, with GitHub's pull request refs."""
    base_sha = git(work.seed, "rev-parse", "main")
    git(work.seed, "switch", "-q", "-c", PR_BRANCH)
    change = change_regularisation(work.seed / "params.yaml")
    git(work.seed, "commit", "-q", "-am", f"Try a weaker regularisation ({change})")
    head_sha = git(work.seed, "rev-parse", "HEAD")
    # GitHub's test merge of the pull request into its base (what github.sha names).
    git(work.seed, "switch", "-q", "--detach", "main")
    git(work.seed, "merge", "-q", "--no-ff", "-m", f"Merge {head_sha} into {base_sha}", head_sha)
    merge_sha = git(work.seed, "rev-parse", "HEAD")
    git(work.seed, "switch", "-q", "main")
    pull_refs = [
        f"{head_sha}:refs/pull/{PR_NUMBER}/head",
        f"{merge_sha}:refs/pull/{PR_NUMBER}/merge",
    ]
    git(work.seed, "push", "-q", "origin", "main", PR_BRANCH, *pull_refs)
    return PullRequest(PR_NUMBER, PR_BRANCH, head_sha, "main", base_sha, merge_sha, change)


def merge_pull_request(work: Workspace, pull: PullRequest) -> tuple[str, str]:
    """Merge the pull request's branch as it is on origin now into main; (before, after)."""
    git(work.seed, "fetch", "-q", "origin")
    git(work.seed, "switch", "-q", "main")
    git(work.seed, "reset", "-q", "--hard", "origin/main")
    before = git(work.seed, "rev-parse", "HEAD")
    message = f"Merge pull request #{pull.number} from {pull.head_ref}"
    git(work.seed, "merge", "-q", "--no-ff", "-m", message, f"origin/{pull.head_ref}")
    git(work.seed, "push", "-q", "origin", "main")
    return before, git(work.seed, "rev-parse", "HEAD")


def event_file(work: Workspace, template: str, **values: object) -> Path:
    text = string.Template((EVENTS / template).read_text(encoding="utf-8")).substitute(
        repository=REPOSITORY,
        owner=REPOSITORY.split("/")[0],
        name=REPOSITORY.split("/")[1],
        **values,
    )
    json.loads(text)  # a template that no longer gives JSON fails here, not inside act
    path = work.folder / "events" / template
    path.parent.mkdir(exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def clone_at(work: Workspace, name: str, commit: str, branch: str | None = None) -> Path:
    """The folder act runs from (github.sha is its HEAD): origin cloned, at ``commit``, or on
    ``branch`` (github.ref then names it, as for a workflow_dispatch on that branch)."""
    folder = work.folder / name
    if folder.exists():
        shutil.rmtree(folder)
    git(work.folder, "clone", "-q", str(work.origin), str(folder))
    if branch is not None:
        git(folder, "switch", "-q", branch)
    else:
        git(folder, "switch", "-q", "--detach", commit)
    return folder


# --- act ----------------------------------------------------------------------------------------


def run_act(
    work: Workspace, name: str, event: str, event_path: Path, clone: Path, workflow: str,
    job: str | None = None, timeout: float = 3600, variables: dict[str, str] | None = None,
) -> ActRun:  # fmt: skip
    """One act run of one workflow (or one of its jobs, with the jobs it needs)."""
    number = work.next_number()
    command = [
        str(ACT), event,
        "--workflows", f".github/workflows/{workflow}",
        "--eventpath", str(event_path),
        "--platform", f"{RUNNER_LABEL}=-self-hosted",
        "--no-skip-checkout",  # every checkout clones from the stand-in GitHub, as on GitHub
        "--no-cache-server",  # no workflow uses actions/cache
        "--action-cache-path", str(work.folder / "act-cache"),
        "--env", f"GITHUB_REPOSITORY={REPOSITORY}",
        "--env", f"GITHUB_RUN_ID={number}",
        "--var", f"MLFLOW_TRACKING_URI={work.tracking_uri}",
        "--var", f"DVC_REMOTE_URL={work.dvc_remote}",
        *local_repository_flags(),
    ]  # fmt: skip
    for key, value in (variables or {}).items():
        command += ["--var", f"{key}={value}"]
    if job:
        command += ["--job", job]
    work.logs.mkdir(parents=True, exist_ok=True)
    log = work.logs / f"{number:02d}-{name}.log"
    print(f"==> act: {name} ({' '.join(command[1:4])}); log in {log}", flush=True)
    started = time.monotonic()
    with log.open("w", encoding="utf-8") as out:
        process = subprocess.Popen(
            command, cwd=clone, env=work.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True,
        )  # fmt: skip
        assert process.stdout is not None
        try:
            for line in process.stdout:
                out.write(line)
                print(line, end="", flush=True)
                if time.monotonic() - started > timeout:
                    raise subprocess.TimeoutExpired(command, timeout)
            process.wait(timeout=max(1.0, timeout - (time.monotonic() - started)))
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            os.killpg(process.pid, 15)
            process.wait()
            raise
    seconds = round(time.monotonic() - started, 1)
    run = ActRun(number, name, command, str(log), process.returncode, seconds)
    work.add_run(run)
    status = "green" if run.returncode == 0 else f"FAILED (exit {run.returncode})"
    print(f"==> act: {name}: {status} in {run.seconds:.0f} s", flush=True)
    return run


def pull_request_runs(
    work: Workspace, checks: str, parallel: int
) -> tuple[PullRequest, list[ActRun]]:
    """train-report and the checks for a new pull request, ``parallel`` act runs at a time."""
    pull = open_pull_request(work)
    work.save(pull_request=asdict(pull))
    event = event_file(work, "pull_request.json", **asdict(pull))
    clone = clone_at(work, "clone-pr", pull.merge_sha)
    planned: list[tuple[str, str, str | None]] = [("train-report", "train-report.yml", None)]
    if checks == "all":
        planned.append(("checks", "checks.yml", None))
    elif checks != "none":  # one act run a job: act takes one --job
        jobs = FAST_CHECKS if checks == "fast" else tuple(checks.split(","))
        planned += [(f"checks-{job}", "checks.yml", job) for job in jobs]
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        started = [
            pool.submit(run_act, work, name, "pull_request", event, clone, workflow, job)
            for name, workflow, job in planned
        ]
        return pull, [future.result() for future in started]


def deploy_run(work: Workspace) -> ActRun:
    pull = PullRequest(**work.summary()["pull_request"])  # type: ignore[arg-type]
    # A previous deploy's staging still holds the port, and its state went with its workspace:
    # the new deploy could not switch from it.
    stop(work)
    port = move_staging(work)
    before, after = merge_pull_request(work, pull)
    work.save(merge={"before": before, "after": after}, staging_port=port)
    event = event_file(work, "push.json", before=before, after=after, ref="refs/heads/main")
    clone = clone_at(work, "clone-main", after)
    return run_act(work, "deploy", "push", event, clone, "deploy.yml")


MONITOR_LOG_ROWS = 1200  # over the last two days; half of them get their outcome


def drift_shift(contract_file: Path) -> dict[str, dict[str, float]]:
    """A shift of the contract's first bounded numeric feature by a tenth of its range (the
    simulator clips to the range, as the service would refuse anything outside it)."""
    terms = yaml.safe_load(contract_file.read_text(encoding="utf-8"))
    target = terms["target"]["column"]
    for name, rule in terms["columns"].items():
        bounded = rule.get("min") is not None and rule.get("max") is not None
        if name != target and rule["type"] in ("int", "float") and bounded:
            return {name: {"add": round((rule["max"] - rule["min"]) / 10, 6)}}
    raise RunError(f"{contract_file}: no bounded numeric feature to shift for the drift drill")


def write_monitor_log(work: Workspace) -> Path:
    """A prediction log of main's model, written by the package's simulator in a clone of main
    with its outputs pulled from the DVC remote: a drifted feature, outcomes for half."""
    main_sha = git(work.origin, "rev-parse", "refs/heads/main")
    clone = clone_at(work, "clone-monitor-log", main_sha)
    python = sys.executable  # this repository's environment: dvc and the package
    for command in (
        [python, "-m", "dvc", "remote", "add", "--local", "--default", "act", str(work.dvc_remote)],
        [python, "-m", "dvc", "pull", "--quiet"],
    ):
        done = subprocess.run(command, cwd=clone, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RunError(f"{' '.join(command[2:])} in {clone}: {done.stderr.strip()}")
    log = work.folder / "monitor-log"
    shutil.rmtree(log, ignore_errors=True)
    shift = drift_shift(clone / "src" / "credit_risk" / "contract.yaml")
    command = [
        python, "-m", "credit_risk.monitoring.simulate", "--rows", str(MONITOR_LOG_ROWS),
        "--seed", "11", "--out", str(log), "--outcomes", "0.5", "--days", "2",
        "--shift", json.dumps(shift),
    ]  # fmt: skip
    done = subprocess.run(
        command, cwd=clone, capture_output=True, text=True, check=False,
        env={**os.environ, "PYTHONPATH": str(clone / "src")},
    )  # fmt: skip
    if done.returncode != 0:
        raise RunError(f"the simulator failed in {clone}: {done.stderr.strip()}")
    work.save(monitor_log={"folder": str(log), "rows": MONITOR_LOG_ROWS, "shift": shift})
    return log


def monitor_run(work: Workspace, name: str, log: Path, retrain: bool) -> ActRun:
    """The monitor workflow, dispatched on main, reading ``log`` as PREDICTION_LOG_URL."""
    main_sha = git(work.origin, "rev-parse", "refs/heads/main")
    # As in GitHub's payload, every input is a string (the inputs context types them).
    inputs = {"environment": "production", "since": "", "until": "",
              "retrain": str(retrain).lower()}  # fmt: skip
    event = event_file(work, "workflow_dispatch.json", ref="refs/heads/main",
                       sha=main_sha, inputs=json.dumps(inputs))  # fmt: skip
    clone = clone_at(work, f"clone-{name}", main_sha, branch="main")
    return run_act(work, name, "workflow_dispatch", event, clone, "monitor.yml",
                   variables={"PREDICTION_LOG_URL": str(log)})  # fmt: skip


def dispatched_runs(work: Workspace, after: int) -> list[ActRun]:
    """The workflow runs gh was asked to start (from call ``after`` on), of train-report: run
    on their branch, with their inputs, as GitHub would start them."""
    calls_file = work.records / "gh" / "calls.jsonl"
    calls = [json.loads(line) for line in calls_file.read_text(encoding="utf-8").splitlines()]
    runs = []
    for call in calls[after:]:
        if call["argv"][:2] != ["workflow", "run"] or call["workflow"] != "train-report.yml":
            continue
        branch = call["ref"]
        sha = git(work.origin, "rev-parse", f"refs/heads/{branch}")
        event = event_file(work, "workflow_dispatch.json", ref=f"refs/heads/{branch}", sha=sha,
                           inputs=json.dumps(call["inputs"]))  # fmt: skip
        clone = clone_at(work, "clone-dispatched", sha, branch=branch)
        runs.append(run_act(work, "train-report-dispatched", "workflow_dispatch", event, clone,
                            "train-report.yml"))  # fmt: skip
    return runs


def monitor_runs(work: Workspace) -> list[ActRun]:
    """The alarm, the retraining pull request and train-report on it; then the alarm again."""
    if "merge" not in work.summary():
        raise RunError(f"nothing merged in {work.folder}: run `all` (or `pr`, `deploy`) first")
    log = write_monitor_log(work)
    calls_file = work.records / "gh" / "calls.jsonl"
    before = len(calls_file.read_text(encoding="utf-8").splitlines()) if calls_file.exists() else 0
    runs = [monitor_run(work, "monitor", log, retrain=True)]
    runs += dispatched_runs(work, before)
    runs.append(monitor_run(work, "monitor-again", log, retrain=False))
    return runs


def _processes() -> dict[int, tuple[int, str, str]]:
    """Every process: pid -> (parent pid, command line, working folder)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = str((entry / "cwd").readlink())
        except OSError:  # gone, or not ours to read
            continue
        parent = int(stat.rpartition(")")[2].split()[1])
        found[int(entry.name)] = (parent, command, cwd)
    return found


def leftovers(work: Workspace) -> list[int]:
    """Processes started by this work folder's jobs that still run, with their children."""
    marker = f"{work.folder / 'act-cache'}{os.sep}"
    table = _processes()
    mine = {
        pid
        for pid, (_, command, cwd) in table.items()
        if (marker in command or cwd.startswith(marker)) and pid != os.getpid()
    }
    grew = True
    while grew:  # nginx's workers and bentoml's name no folder: take children too
        more = {pid for pid, (parent, _, _) in table.items() if parent in mine} - mine
        mine |= more
        grew = bool(more)
    return sorted(mine)


def stop(work: Workspace, grace: float = 30.0) -> list[int]:
    """Stop, by pid, what the act runs in ``work`` left running; returns the pids stopped."""
    pids = leftovers(work)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
        time.sleep(0.2)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids


def checks_jobs() -> list[str]:
    return list(yaml.safe_load((WORKFLOWS / "checks.yml").read_text(encoding="utf-8"))["jobs"])


def checks_choice(value: str) -> str:
    """--checks: all, fast, none, or a comma-separated list of the checks workflow's jobs."""
    if value in ("all", "fast", "none"):
        return value
    unknown = set(value.split(",")) - set(checks_jobs())
    if unknown:
        raise argparse.ArgumentTypeError(f"not jobs of checks.yml: {', '.join(sorted(unknown))}")
    return value


def default_tracking_uri() -> str:
    record = ROOT / ".stack" / "stack.json"
    if not record.exists():
        raise RunError("no registry stack is running here: start it with `make registry-up`")
    uris = json.loads(record.read_text(encoding="utf-8"))["uris"]
    return str(uris["tracking_uri"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["pr", "deploy", "all", "monitor", "stop"])
    parser.add_argument("--workdir", type=Path, default=ROOT / WORKDIR)
    parser.add_argument("--tracking-uri", help="MLflow server (default: make registry-up's)")
    parser.add_argument("--dvc-remote", type=Path, default=ROOT / "dvc-remote")
    parser.add_argument(
        "--checks", default="all", type=checks_choice,
        help="the checks jobs for the pull request: all, fast (all but e2e), none, or job ids"
        f" separated by commas ({','.join(checks_jobs())})",
    )  # fmt: skip
    parser.add_argument("--uv-cache", type=Path, help="uv's cache for the jobs (cold runs)")
    parser.add_argument(
        "--parallel", type=int, default=1, help="act runs side by side for the pull request"
    )
    args = parser.parse_args(argv)
    if args.what == "stop":
        work = Workspace(args.workdir, "", args.dvc_remote, None)
        stopped = stop(work)
        print(f"stopped {len(stopped)} processes left by the act runs in {work.folder}: {stopped}")
        return 0
    try:
        work = Workspace(
            args.workdir, args.tracking_uri or default_tracking_uri(), args.dvc_remote,
            args.uv_cache,
        )  # fmt: skip
        if not ACT.exists():
            raise RunError(f"{ACT} not found: run `make setup`")
        runs: list[ActRun] = []
        if args.what in ("pr", "all"):
            seed_repository(work)
            work.save(repository=REPOSITORY, origin=str(work.origin),
                      records=str(work.records), tracking_uri=work.tracking_uri,
                      dvc_remote=str(work.dvc_remote))  # fmt: skip
            runs += pull_request_runs(work, args.checks, args.parallel)[1]
        if args.what in ("deploy", "all"):
            if "pull_request" not in work.summary():
                raise RunError(f"no pull request in {work.folder}: run `pr` first")
            runs.append(deploy_run(work))
        if args.what == "monitor":
            runs += monitor_runs(work)
    except RunError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.what in ("deploy", "all"):
        port = work.summary()["staging_port"]
        print(f"staging serves on http://127.0.0.1:{port} (stop it: make act-stop)")
    for run in runs:
        print(f"  {run.name:<16} {'green' if run.returncode == 0 else 'FAILED':<7} "
              f"{run.seconds:>7.1f} s  {run.log}")  # fmt: skip
    return 0 if all(run.returncode == 0 for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
