"""Keep one release's replicas running, and stop them cleanly: the local target's supervisor.

    python -m credit_risk.deploy.supervise <release folder>

The folder holds ``spec.json`` (written by the local target): the command of each replica, the
environment variables to add, how long a replica may take to stop, and how many quick restarts
in a row to allow. The supervisor runs detached in a session of its own and

- starts every replica in a session of its own, its output appended to ``replica-<n>.log``;
- restarts a replica that exits while it should run, after a back-off (``backoff_seconds``,
  doubling, at most ``BACKOFF_MAX_SECONDS``), and gives up on it after ``max_restarts``
  restarts in a row that each ran less than ``STABLE_SECONDS``; every exit, restart and
  give-up is one JSON log line;
- on SIGTERM (or SIGINT) stops them: SIGTERM to each replica, a bounded wait, then SIGKILL;
- records who runs in ``replicas.json`` (atomically), which the target reads for its status.

A replica's own children matter: `bentoml serve` forks its workers into sessions of their own
and they hold the listening socket, so a replica killed outright leaves a worker answering on
its port. The supervisor remembers each replica's descendants and stops those left behind
before it starts the replica again (on Linux it also adopts them, as a child subreaper, so it
can reap them). Replicas get SIGTERM if the supervisor itself dies (Linux), so they do not
outlive it.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from credit_risk.files import write_json
from credit_risk.processes import running

SPEC_FILE = "spec.json"
REPLICAS_FILE = "replicas.json"
LOG_FILE = "supervisor.log"
BACKOFF_MAX_SECONDS = 30.0
STABLE_SECONDS = 60.0  # a replica that ran this long before it exited starts a fresh back-off
POLL_SECONDS = 0.25
PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER = 1, 36  # from <linux/prctl.h>


def replica_log(folder: Path, index: int) -> Path:
    return folder / f"replica-{index}.log"


@dataclass(frozen=True)
class Spec:
    """What a supervisor runs: one command per replica, with extra environment variables."""

    commands: list[list[str]]
    env: dict[str, str] = field(default_factory=dict)
    grace_seconds: float = 20.0  # a replica's time to finish its requests when stopped
    max_restarts: int = 5  # quick restarts in a row before the supervisor gives up on one
    backoff_seconds: float = 1.0  # the first restart's delay; doubled for each quick one

    def write(self, folder: Path) -> Path:
        path = folder / SPEC_FILE
        write_json(path, vars(self))
        return path

    @classmethod
    def read(cls, folder: Path) -> Spec:
        return cls(**json.loads((folder / SPEC_FILE).read_text(encoding="utf-8")))


# --- processes, found by pid -------------------------------------------------------------------


def alive(pid: int | None) -> bool:
    """Whether ``pid`` is a running process (a zombie, dead but not yet reaped, is not)."""
    return pid is not None and pid > 0 and running(pid)


def command_line(pid: int) -> str:
    """The process's command line, or "" when it cannot be read (gone, or no /proc)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        found = subprocess.run(
            ["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, check=False
        )
        return found.stdout.strip()
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process: from /proc, else from ps."""
    table: dict[int, int] = {}
    proc = Path("/proc")
    if (proc / "self" / "stat").exists():
        for entry in proc.iterdir():
            if entry.name.isdigit():
                try:
                    table[int(entry.name)] = int(
                        (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
                    )
                except (OSError, IndexError, ValueError):
                    continue
        return table
    listed = subprocess.run(["ps", "-A", "-o", "pid=,ppid="], capture_output=True, text=True)
    for line in listed.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and all(part.isdigit() for part in parts):
            table[int(parts[0])] = int(parts[1])
    return table


def descendants(pid: int, parents: dict[int, int] | None = None) -> set[int]:
    """Every process below ``pid`` (children, their children...), as of now or of ``parents``."""
    children: dict[int, list[int]] = {}
    for child, parent in (_parents() if parents is None else parents).items():
        children.setdefault(parent, []).append(child)
    found: set[int] = set()
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        if child not in found:
            found.add(child)
            todo.extend(children.get(child, []))
    return found


def signal_all(pids: Iterable[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            continue


def wait_gone(
    pids: Iterable[int], seconds: float, reap: Callable[[], object] | None = None
) -> bool:
    """Wait up to ``seconds`` for every pid to be gone; whether they all went."""
    waiting = set(pids)
    deadline = time.monotonic() + seconds
    while True:
        if reap is not None:
            reap()
        waiting = {pid for pid in waiting if alive(pid)}
        if not waiting or time.monotonic() >= deadline:
            return not waiting
        time.sleep(0.05)


def _prctl(option: int, value: int) -> None:
    """Linux's prctl(2), where it exists; elsewhere nothing (the features are Linux-only)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(option, value, 0, 0, 0)


def _die_with_parent() -> None:
    """Run in the replica between fork and exec: SIGTERM when the supervisor dies."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


# --- the supervisor ---------------------------------------------------------------------------


def log_event(event: str, **fields: Any) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    print(json.dumps({"time": stamp, "event": event, **fields}), flush=True)


@dataclass
class Replica:
    index: int
    command: list[str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restarts: int = 0  # in total
    quick_failures: int = 0  # restarts in a row that did not reach STABLE_SECONDS
    start_at: float | None = 0.0  # when to (re)start it; None: not scheduled
    given_up: bool = False
    family: set[int] = field(default_factory=set)  # its descendants when last looked at

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def status(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "pid": self.pid,
            "running": self.process is not None,
            "restarts": self.restarts,
            "given_up": self.given_up,
            "log": self.log.name,
        }


class Supervisor:
    def __init__(self, folder: Path, spec: Spec) -> None:
        self.folder = folder
        self.spec = spec
        self.env = {**os.environ, **spec.env}
        self.replicas = [
            Replica(index, command, replica_log(folder, index))
            for index, command in enumerate(spec.commands, start=1)
        ]
        self.stopping = False

    def request_stop(self, signum: int, _frame: object) -> None:
        self.stopping = True

    def reap(self, parents: dict[int, int] | None = None) -> None:
        """Collect adopted orphans that ended (replicas themselves are their Popen's to wait)."""
        ours = {replica.pid for replica in self.replicas}
        table = _parents() if parents is None else parents
        for pid, parent in table.items():
            if parent == os.getpid() and pid not in ours:
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    continue

    def start(self, replica: Replica) -> None:
        with replica.log.open("ab") as log:
            replica.process = subprocess.Popen(
                replica.command,
                cwd=self.folder,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # the supervisor has one thread: fork is safe
            )
        replica.started, replica.start_at, replica.family = time.monotonic(), None, set()
        log_event("replica_started", replica=replica.index, pid=replica.pid, log=replica.log.name)

    def check(self, replica: Replica, parents: dict[int, int]) -> None:
        """Notice a replica that ended and schedule its restart (or give up on it)."""
        if replica.process is None:
            return
        code = replica.process.poll()
        if code is None:
            replica.family = descendants(replica.process.pid, parents) or replica.family
            return
        ran = time.monotonic() - replica.started
        log_event(
            "replica_exited", replica=replica.index, pid=replica.pid, code=code, ran=round(ran, 1)
        )
        replica.process = None
        self.clear_leftovers(replica)
        replica.quick_failures = 0 if ran >= STABLE_SECONDS else replica.quick_failures + 1
        if replica.quick_failures > self.spec.max_restarts:
            replica.given_up = True
            log_event("replica_given_up", replica=replica.index, restarts=replica.restarts)
            return
        delay = self.spec.backoff_seconds * 2 ** max(0, replica.quick_failures - 1)
        delay = min(BACKOFF_MAX_SECONDS, delay)
        replica.start_at = time.monotonic() + delay
        replica.restarts += 1
        log_event("replica_restart_scheduled", replica=replica.index, in_seconds=delay)

    def clear_leftovers(self, replica: Replica) -> None:
        """Stop what a dead replica left behind (a worker still holding its port)."""
        left = {pid for pid in replica.family if alive(pid)}
        if left:
            log_event("replica_leftovers_stopped", replica=replica.index, pids=sorted(left))
            signal_all(left, signal.SIGTERM)
            if not wait_gone(left, self.spec.grace_seconds, self.reap):
                signal_all(left, signal.SIGKILL)
                wait_gone(left, 5, self.reap)
        replica.family = set()

    def record(self) -> None:
        write_json(
            self.folder / REPLICAS_FILE,
            {
                "supervisor": os.getpid(),
                "stopping": self.stopping,
                "replicas": [replica.status() for replica in self.replicas],
            },
        )

    def run(self) -> None:
        last: list[dict[str, Any]] = []
        while not self.stopping:
            parents = _parents()
            self.reap(parents)
            for replica in self.replicas:
                self.check(replica, parents)
                due = replica.start_at is not None and time.monotonic() >= replica.start_at
                if due and not replica.given_up and not self.stopping:
                    self.start(replica)
            now = [replica.status() for replica in self.replicas]
            if now != last:
                self.record()
                last = now
            time.sleep(POLL_SECONDS)
        self.shutdown()

    def shutdown(self) -> None:
        """SIGTERM to every replica, a bounded wait, then SIGKILL to whatever is left."""
        self.record()
        running = [replica for replica in self.replicas if replica.process is not None]
        parents = _parents()
        for replica in running:
            replica.family |= descendants(replica.pid or 0, parents)
        pids = {replica.pid for replica in running if replica.pid is not None}
        log_event("stopping", pids=sorted(pids), grace_seconds=self.spec.grace_seconds)
        signal_all(pids, signal.SIGTERM)
        if not wait_gone(pids, self.spec.grace_seconds, self.reap_replicas):
            left = sorted(pid for pid in pids if alive(pid))
            log_event("stop_timed_out", killed=left)
            signal_all(left, signal.SIGKILL)
            wait_gone(left, 5, self.reap_replicas)
        for replica in running:  # their workers, if a replica went without them
            replica.process = None
            self.clear_leftovers(replica)
        self.reap()
        self.record()
        log_event("stopped")

    def reap_replicas(self) -> None:
        for replica in self.replicas:
            if replica.process is not None:
                replica.process.poll()


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: python -m credit_risk.deploy.supervise <release folder>")
    folder = Path(sys.argv[1]).resolve()
    supervisor = Supervisor(folder, Spec.read(folder))
    signal.signal(signal.SIGTERM, supervisor.request_stop)
    signal.signal(signal.SIGINT, supervisor.request_stop)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # detached: a closed terminal is no reason
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    log_event("supervisor_started", pid=os.getpid(), replicas=len(supervisor.replicas))
    supervisor.run()


if __name__ == "__main__":
    main()
