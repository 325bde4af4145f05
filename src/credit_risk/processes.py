"""Server programs started detached on a loopback port, and stopped again by their pid.

Each program starts in a session (and process group) of its own, so that it outlives the
command that started it and a stop reaches every process it spawned. A pid is trusted only
together with the kernel's start time of that process, so a pid reused by another program after
a reboot or a crash is never signalled. On Linux, "answering" also means that the listening
socket belongs to the started process group: a program that took the port first answers too.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from credit_risk.errors import CreditRiskError

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
PORT_ATTEMPTS = 3  # a port taken between choosing and binding: choose again
POLL_SECONDS = 0.2
PROBE_SECONDS = 2.0
STOP_SECONDS = 20.0  # SIGTERM's grace before SIGKILL
KILL_SECONDS = 5.0  # after SIGKILL, for the kernel to finish the processes
TAIL_LINES = 6
TIMED_OUT = -1  # _wait_ready's answer when the deadline passed


class ProcessError(CreditRiskError):
    """A server program failed to start, to answer or to stop."""


class Process(BaseModel):
    """A started server: its pid (which is also its process group) and its port."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pid: int
    port: int
    started: str | None  # the kernel's start time of pid; None where there is no /proc


@dataclass(frozen=True)
class Account:
    """A system user to run a program as (needs root), instead of this process's own."""

    name: str
    uid: int
    gid: int

    def popen_args(self) -> dict[str, Any]:
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


def account_args(account: Account | None) -> dict[str, Any]:
    return account.popen_args() if account is not None else {}


def free_port() -> int:
    """A loopback port nobody listens on now (the kernel's choice)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def start(
    name: str,
    command: Callable[[int], list[str]],
    logfile: Path,
    *,
    ready: Callable[[int], bool],
    timeout: float,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    account: Account | None = None,
    ports: Callable[[], int] = free_port,
) -> Process:
    """Start ``command(port)`` detached and wait until ``ready(port)`` answers from it.

    Its output is appended to ``logfile``. A port that another program took between choosing
    and binding is chosen again (PORT_ATTEMPTS in all); any other failure stops the process and
    raises ProcessError with the tail of its log.
    """
    for attempt in range(1, PORT_ATTEMPTS + 1):
        port = ports()
        with logfile.open("ab") as output:
            output.write(f"--- {now()} starting {name} on {HOST}:{port}\n".encode())
            offset = output.tell()
            popen = subprocess.Popen(
                command(port), cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=output,
                stderr=subprocess.STDOUT, start_new_session=True, **account_args(account),
            )  # fmt: skip
        process = Process(pid=popen.pid, port=port, started=start_time(popen.pid))
        begun = time.monotonic()
        try:
            code = _wait_ready(popen, process, ready, begun + timeout)
        except BaseException:
            stop(name, process)
            raise
        if code is None:
            log.info("%s answers on %s:%d (%.1f s)", name, HOST, port, time.monotonic() - begun)
            return process
        stop(name, process)  # whatever it spawned before it failed
        tail = tail_of(logfile, offset)
        if "address already in use" in tail.lower() and attempt < PORT_ATTEMPTS:
            log.warning("%s: port %d was taken meanwhile; trying another", name, port)
            continue
        if code == TIMED_OUT:
            raise ProcessError(
                f"{name} did not answer on {HOST}:{port} within {timeout:.0f} s; {logfile}: {tail}"
            )
        raise ProcessError(f"{name} exited with code {code} on {HOST}:{port}; {logfile}: {tail}")
    raise AssertionError("unreachable: the last attempt returns or raises")


def _wait_ready(
    popen: subprocess.Popen[bytes], process: Process, ready: Callable[[int], bool], deadline: float
) -> int | None:
    """None once the process answers; its exit code if it ended; TIMED_OUT after ``deadline``."""
    while True:
        code = popen.poll()
        if code is not None:
            return code
        if listens(process.pid, process.port) and ready(process.port):
            return None
        if time.monotonic() > deadline:
            return TIMED_OUT
        time.sleep(POLL_SECONDS)


def run_program(
    name: str,
    command: list[str],
    logfile: Path,
    *,
    timeout: float,
    cwd: Path,
    account: Account | None = None,
) -> None:
    """Run a tool to completion, its output appended to ``logfile``; ProcessError if it fails."""
    program = Path(command[0]).name
    with logfile.open("ab") as output:
        output.write(f"--- {now()} {shlex.join(command)}\n".encode())
        offset = output.tell()
        try:
            done = subprocess.run(
                command, cwd=cwd, stdin=subprocess.DEVNULL, stdout=output,
                stderr=subprocess.STDOUT, timeout=timeout, check=False, **account_args(account),
            )  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            raise ProcessError(
                f"{name}: {program} still running after {timeout:.0f} s; {logfile}"
            ) from exc
    if done.returncode != 0:
        raise ProcessError(
            f"{name}: {program} failed (exit {done.returncode}); {logfile}:"
            f" {tail_of(logfile, offset)}"
        )


def stop(name: str, process: Process, grace: float = STOP_SECONDS) -> None:
    """SIGTERM the process group, SIGKILL whatever is left after ``grace`` seconds.

    A pid that now belongs to another program is left alone; processes of the group that
    outlived their leader are still stopped.
    """
    if running(process.pid) and not is_ours(process):
        log.warning("%s: pid %d is another program now; left alone", name, process.pid)
        return
    for sent, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, KILL_SECONDS)):
        if not group_alive(process.pid):
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sent)
        if _wait_gone(process.pid, wait):
            return
        if sent == signal.SIGTERM:
            log.warning("%s: still running %.0f s after SIGTERM; sending SIGKILL", name, grace)
    raise ProcessError(f"{name}: process group {process.pid} survived SIGKILL")


def _wait_gone(pgid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        with contextlib.suppress(ChildProcessError):  # reap the leader when it is our child
            os.waitpid(pgid, os.WNOHANG)
        if not group_alive(pgid):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_SECONDS / 2)


def _proc_stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat's fields after the command name (the state first); None when gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def _has_proc() -> bool:
    return Path("/proc/self/stat").exists()


def start_time(pid: int) -> str | None:
    fields = _proc_stat(pid)
    return fields[19] if fields else None  # stat's field 22: start time in clock ticks


def running(pid: int) -> bool:
    """Whether ``pid`` is a process that has not ended (a zombie has)."""
    if _has_proc():
        fields = _proc_stat(pid)
        return fields is not None and fields[0] not in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_ours(process: Process) -> bool:
    """Whether the pid still runs the process that was started (not a reused pid)."""
    if not running(process.pid):
        return False
    return process.started is None or start_time(process.pid) == process.started


def _group(pgid: int) -> list[int]:
    """The processes of a process group that have not ended (zombies are left out)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _proc_stat(int(entry.name))
            if fields and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                members.append(int(entry.name))
    return members


def group_alive(pgid: int) -> bool:
    if _has_proc():
        # Not killpg(pgid, 0): it counts zombies, which an init that does not reap keeps.
        return bool(_group(pgid))
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def listens(pgid: int, port: int) -> bool:
    """Whether the socket listening on HOST:port belongs to the process group ``pgid``.

    Without /proc (not Linux) this cannot be told, and answering has to do.
    """
    table = Path("/proc/net/tcp")
    if not table.exists():
        return True
    address = f"{int.from_bytes(socket.inet_aton(HOST), sys.byteorder):08X}:{port:04X}"
    sockets = set()
    for line in table.read_text(encoding="ascii").splitlines()[1:]:
        fields = line.split()
        if fields[1] == address and fields[3] == "0A":  # 0A: LISTEN
            sockets.add(f"socket:[{fields[9]}]")
    if not sockets:
        return False
    for pid in _group(pgid):
        with contextlib.suppress(OSError):  # a process that ended meanwhile
            for handle in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    if str(handle.readlink()) in sockets:
                        return True
    return False


def http_ok(url: str) -> bool:
    """Whether GET ``url`` answers 200 within PROBE_SECONDS."""
    try:
        with urllib.request.urlopen(url, timeout=PROBE_SECONDS) as response:
            return bool(response.status == 200)
    except (OSError, http.client.HTTPException):
        return False


def tail_of(logfile: Path, offset: int = 0) -> str:
    """The last lines written to ``logfile`` after ``offset``, on one line."""
    try:
        with logfile.open("rb") as handle:
            handle.seek(offset)
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return "(no log)"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(lines[-TAIL_LINES:]) or "(empty log)"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
