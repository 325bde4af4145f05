"""The shared registry stack: ``mlflow server`` on PostgreSQL, its artifacts in S3 storage.

A team keeps its runs, registered models and aliases in one tracking server. This module starts
that server from the same programs a shared host runs, on this machine's loopback interface:

- **PostgreSQL** (Debian package ``postgresql``) holds the runs and the model registry, in a
  cluster of its own created on the first ``up`` (database ``mlflow``). It listens on 127.0.0.1
  only, with trust authentication: any local user may connect, no other machine can.
- **moto's S3 server** (``moto_server``, a development dependency) holds the artifacts in the
  bucket ``mlflow-artifacts``.
- **mlflow server** serves the UI and the REST API from PostgreSQL and proxies artifacts
  (``mlflow-artifacts:`` URIs) to the bucket, so clients need the tracking URI and no S3
  credentials. MLflow 3's clients download through presigned URLs that the server signs: those
  requests go to the S3 endpoint itself, which loopback clients reach.

Each part listens on a free loopback port chosen by ``up``; the ports may change from one ``up``
to the next, so ask ``env`` or ``status`` for the current ones. State lives in ``.stack/`` in
the working directory, the repository root under make (``--dir`` for elsewhere):

- ``stack.json``: ports, pids, start time and URIs of the running stack;
- ``env``: the export line a shell sources;
- ``logs/``: one log per part;
- ``postgres/``: the database cluster;
- ``s3/``: the bucket's objects while the stack is down (moto keeps them in memory only).

A team member or a job points MLflow at the stack with::

    make registry-up
    eval "$(python -m credit_risk.registry.stack env)"  # MLFLOW_TRACKING_URI=http://127.0.0.1:P

after which training runs, ``mlflow.register_model`` and ``models:/<name>@<alias>`` use it.
``down`` stops the processes by their recorded pids and keeps the data (runs, registry and
artifacts come back with the next ``up``); ``down --purge`` deletes it.

Run as root, PostgreSQL (which refuses root) runs as the ``postgres`` user, which must be able
to reach the state directory (every parent directory traversable by others).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import os
import pwd
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from credit_risk.errors import CreditRiskError
from credit_risk.files import write_json, write_with
from credit_risk.processes import (
    HOST,
    PROBE_SECONDS,
    STOP_SECONDS,
    Account,
    Process,
    ProcessError,
    http_ok,
    is_ours,
    listens,
    now,
    run_program,
    start,
    stop,
)
from credit_risk.registry import bucket
from credit_risk.stage import run

log = logging.getLogger(__name__)

STATE_DIR = Path(".stack")
RECORD = "stack.json"
ENV_FILE = "env"
LOGS = "logs"
PGDATA = "postgres"
SNAPSHOT = "s3"
LOCK = ".lock"

BUCKET = "mlflow-artifacts"
DATABASE = "mlflow"
DATABASE_USER = "postgres"  # the cluster's superuser, the same name whoever runs the server
POSTGRES_ACCOUNT = "postgres"  # the system user PostgreSQL runs as when this process is root
POSTGRES_GLOB = "/usr/lib/postgresql/*/bin"  # Debian's layout: one folder per major version
POSTGRES_PROGRAMS = ("initdb", "pg_ctl", "postgres")
# mlflow's default is 4 uvicorn workers, each a process importing mlflow (5 s and 250 MB here);
# on loopback one worker, whose threads serve requests side by side, is enough and starts soonest.
MLFLOW_WORKERS = 1

READY_SECONDS = 120.0  # per part; mlflow's first start on a new database creates its tables
PROGRAM_SECONDS = 120.0  # initdb, pg_ctl


class StackError(CreditRiskError):
    """A part of the registry stack is missing, or failed to start or to stop."""


class NotRunningError(StackError):
    """No registry stack is recorded in the state directory."""


class Stack(BaseModel):
    """A running stack, as ``stack.json`` records it; the URIs follow from the ports."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    state_dir: Path = Field(exclude=True)
    started_at: str
    bucket: str
    postgres_bin: Path  # the PostgreSQL programs that run this cluster (pg_ctl stops it)
    postgres: Process
    s3: Process
    mlflow: Process

    @property
    def tracking_uri(self) -> str:
        return _url(self.mlflow.port)

    @property
    def s3_endpoint(self) -> str:
        return _url(self.s3.port)

    @property
    def backend_store_uri(self) -> str:
        return _backend_store_uri(self.postgres.port)

    def parts(self) -> dict[str, Process]:
        """The parts in start order (they stop in reverse)."""
        return {"postgres": self.postgres, "s3": self.s3, "mlflow": self.mlflow}

    def record(self) -> dict[str, object]:
        """What ``stack.json`` holds: the fields, and the URIs for its readers."""
        uris = {
            "tracking_uri": self.tracking_uri,
            "s3_endpoint": self.s3_endpoint,
            "backend_store_uri": self.backend_store_uri,
            "artifacts_destination": _artifacts_destination(self.bucket),
        }
        return {**self.model_dump(mode="json"), "uris": uris}


@dataclass(frozen=True)
class PartStatus:
    name: str
    pid: int
    port: int
    alive: bool
    answering: bool


def _url(port: int) -> str:
    return f"http://{HOST}:{port}"


def _backend_store_uri(port: int) -> str:
    return f"postgresql+psycopg://{DATABASE_USER}@{HOST}:{port}/{DATABASE}"


def _artifacts_destination(name: str) -> str:
    return f"s3://{name}/"


# --- Public API ----------------------------------------------------------------------------


def up(
    state_dir: Path | None = None,
    *,
    timeout: float = READY_SECONDS,
    postgres_glob: str = POSTGRES_GLOB,
    path: str | None = None,
) -> Stack:
    """Start the stack in ``state_dir`` (default ``.stack/``) and return it; a no-op if it runs.

    PostgreSQL's programs are looked up in ``postgres_glob`` (newest version first), then on
    ``path`` (default: the PATH). A part that does not answer within ``timeout`` seconds stops
    everything this call started and raises StackError with the tail of that part's log.
    """
    folder = _state_dir(state_dir)
    programs = find_postgres(postgres_glob, path)
    account = _postgres_account()
    folder.mkdir(parents=True, exist_ok=True)
    with _locked(folder):
        current = load(folder)
        if current is not None:
            parts = _check(current)
            if all(part.answering for part in parts):
                log.info("the registry stack in %s is already running", folder)
                return current
            if all(part.alive for part in parts):  # busy or stuck: not for up to decide
                silent = ", ".join(part.name for part in parts if not part.answering)
                raise StackError(
                    f"{silent} running but not answering in {folder}: see {folder / LOGS};"
                    " down and up restart it"
                )
            log.warning("the registry stack in %s is partly down: restarting it", folder)
            _stop(current, save=True, grace=STOP_SECONDS)
        return _start(folder, programs, account, timeout)


def down(
    state_dir: Path | None = None, *, purge: bool = False, grace: float = STOP_SECONDS
) -> bool:
    """Stop the stack recorded in ``state_dir``; False when none was recorded.

    The data (database cluster, the bucket's objects, logs) stays unless ``purge``.
    """
    folder = _state_dir(state_dir)
    if not folder.is_dir():
        return False
    with _locked(folder):
        current = load(folder)
        if current is not None:
            _stop(current, save=not purge, grace=grace)
        if purge:
            snapshot = folder / SNAPSHOT
            for name in (folder / PGDATA, snapshot, *bucket.leftovers(snapshot), folder / LOGS):
                shutil.rmtree(name, ignore_errors=True)
    if purge:
        (folder / LOCK).unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # kept when it holds other files
            folder.rmdir()
    return current is not None


def status(state_dir: Path | None = None) -> tuple[Stack, list[PartStatus]]:
    """The recorded stack and, per part, whether its process is alive and answering."""
    folder = _state_dir(state_dir)
    current = load(folder)
    if current is None:
        raise NotRunningError(f"registry stack not running: no {folder / RECORD}")
    return current, _check(current)


def env_lines(stack: Stack) -> str:
    """Shell lines that point MLflow clients at the stack (for ``eval`` or ``source``)."""
    return (
        f"# the registry stack in {stack.state_dir}; clients need no S3 credentials\n"
        f"export MLFLOW_TRACKING_URI={shlex.quote(stack.tracking_uri)}\n"
    )


def load(state_dir: Path) -> Stack | None:
    """The stack recorded in ``state_dir``, or None when there is none."""
    record = state_dir / RECORD
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StackError(f"{record}: unreadable ({exc})") from exc
    if not isinstance(data, dict):
        raise StackError(f"{record}: not a registry stack record")
    data.pop("uris", None)  # written for readers; they follow from the ports
    try:
        return Stack.model_validate({**data, "state_dir": state_dir})
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(key) for key in problem["loc"])
        raise StackError(f"{record}: {where}: {problem['msg']}") from exc


def find_postgres(pattern: str = POSTGRES_GLOB, path: str | None = None) -> Path:
    """The folder of PostgreSQL's server programs: the newest under ``pattern``, else on PATH."""
    glob = Path(pattern)
    anchor = Path(glob.anchor or ".")
    found = sorted(anchor.glob(str(glob.relative_to(anchor))), key=_version, reverse=True)
    on_path = shutil.which("postgres", path=path)
    if on_path:
        found.append(Path(on_path).parent)
    for folder in found:
        if all(os.access(folder / name, os.X_OK) for name in POSTGRES_PROGRAMS):
            return folder
    raise StackError(
        f"PostgreSQL's {', '.join(POSTGRES_PROGRAMS)} are neither in {pattern} nor on the PATH:"
        " install the Debian package 'postgresql'"
    )


# --- Starting ------------------------------------------------------------------------------


def _start(folder: Path, programs: Path, account: Account | None, timeout: float) -> Stack:
    """Start the three parts in order; on any failure stop those already started."""
    logs = folder / LOGS
    logs.mkdir(exist_ok=True)
    begun = time.monotonic()
    started: list[tuple[str, Process]] = []
    try:
        postgres = _start_postgres(folder, programs, account, timeout)
        started.append(("postgres", postgres))
        s3 = start(
            "s3",
            _moto_command,
            logs / "s3.log",
            ready=ANSWERS["s3"],
            timeout=timeout,
            cwd=folder,
            env=_server_env(),
        )
        started.append(("s3", s3))
        _restore_bucket(_url(s3.port), folder / SNAPSHOT)
        mlflow = start(
            "mlflow",
            lambda port: _mlflow_command(postgres.port, port),
            logs / "mlflow.log",
            ready=ANSWERS["mlflow"],
            timeout=timeout,
            cwd=folder,
            env=_server_env(MLFLOW_S3_ENDPOINT_URL=_url(s3.port), **bucket.MOTO_CREDENTIALS),
        )
    except ProcessError as exc:
        _stop_started(folder, programs, account, started)
        raise StackError(str(exc)) from None
    except BaseException:
        _stop_started(folder, programs, account, started)
        raise
    stack = Stack(
        state_dir=folder,
        started_at=now(),
        bucket=BUCKET,
        postgres_bin=programs,
        postgres=postgres,
        s3=s3,
        mlflow=mlflow,
    )
    _write_state(stack)
    log.info("registry stack up in %.1f s: %s", time.monotonic() - begun, stack.tracking_uri)
    return stack


def _stop_started(
    folder: Path, programs: Path, account: Account | None, started: list[tuple[str, Process]]
) -> None:
    for name, process in reversed(started):
        try:
            _stop_part(folder, name, process, programs, account, STOP_SECONDS)
        except ProcessError as exc:
            log.error("%s", exc)


def _start_postgres(
    folder: Path, programs: Path, account: Account | None, timeout: float
) -> Process:
    """Create the cluster on first use, start it, and make sure the database exists."""
    pgdata = folder / PGDATA
    logfile = folder / LOGS / "postgres.log"
    if account is not None:
        _check_reachable(folder, account)
    if not (pgdata / "PG_VERSION").exists():
        _init_cluster(pgdata, programs, account, logfile)
    process = start(
        "postgres",
        lambda port: _postgres_command(programs, pgdata, port),
        logfile,
        ready=ANSWERS["postgres"],
        timeout=timeout,
        cwd=folder,
        account=account,
    )
    try:
        _create_database(process.port)
    except BaseException as exc:
        _stop_part(folder, "postgres", process, programs, account, STOP_SECONDS)
        if isinstance(exc, psycopg.Error):
            raise StackError(
                f"postgres: creating database {DATABASE!r} on {HOST}:{process.port} failed: {exc}"
            ) from exc
        raise
    return process


def _postgres_command(programs: Path, pgdata: Path, port: int) -> list[str]:
    return [
        str(programs / "postgres"), "-D", str(pgdata),
        "-c", f"listen_addresses={HOST}",
        "-c", f"port={port}",
        "-c", "unix_socket_directories=",  # TCP on loopback only: no socket file anywhere
    ]  # fmt: skip


def _moto_command(port: int) -> list[str]:
    """moto_server, by its module and this interpreter (so the venv's moto)."""
    return [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)]


def _mlflow_command(postgres_port: int, port: int) -> list[str]:
    """The tracking server on PostgreSQL, proxying artifacts to the bucket."""
    return [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", _backend_store_uri(postgres_port),
        "--serve-artifacts",
        "--artifacts-destination", _artifacts_destination(BUCKET),
        "--host", HOST,
        "--port", str(port),
        "--workers", str(MLFLOW_WORKERS),
    ]  # fmt: skip


def _init_cluster(pgdata: Path, programs: Path, account: Account | None, logfile: Path) -> None:
    """initdb a fresh cluster whose only way in is trust on 127.0.0.1."""
    if pgdata.exists() and any(pgdata.iterdir()):
        raise StackError(f"{pgdata}: not empty and not a PostgreSQL cluster; move it away")
    pgdata.mkdir(mode=0o700, exist_ok=True)
    if account is not None:
        os.chown(pgdata, account.uid, account.gid)
    log.info("creating the PostgreSQL cluster in %s", pgdata)
    command = [
        str(programs / "initdb"), "-D", str(pgdata), "-U", DATABASE_USER,
        "--auth=trust", "--no-locale", "--encoding=UTF8",
    ]  # fmt: skip
    _run("postgres", command, logfile, account, pgdata.parent)
    # initdb also trusts the Unix socket and ::1; the server listens on neither, and the file
    # says so: one line, for loopback IPv4 only.
    (pgdata / "pg_hba.conf").write_text(
        f"# written by {__name__}: trust, on {HOST} only\nhost all all {HOST}/32 trust\n",
        encoding="utf-8",
    )


def _create_database(port: int) -> None:
    with psycopg.connect(_postgres_address(port), autocommit=True) as connection:
        found = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)
        ).fetchone()
        if found is None:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))


def _restore_bucket(endpoint: str, saved: Path) -> None:
    try:
        bucket.restore(endpoint, BUCKET, saved)
    except Exception as exc:  # boto3's errors (untyped): name the part and the folder
        raise StackError(f"s3: putting {BUCKET} back from {saved} failed: {exc}") from exc


def _server_env(**extra: str) -> dict[str, str]:
    """This environment without AWS or MLflow client settings, plus ``extra``.

    The servers never see the user's own AWS credentials or profile (only moto's fake ones),
    nor a tracking URI meant for clients.
    """
    kept = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "MLFLOW_TRACKING_", "MLFLOW_S3_"))
    }
    nothing = {"AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
    return {**kept, **nothing, **extra}


def _run(name: str, command: list[str], logfile: Path, account: Account | None, cwd: Path) -> None:
    try:
        run_program(name, command, logfile, timeout=PROGRAM_SECONDS, cwd=cwd, account=account)
    except ProcessError as exc:
        raise StackError(str(exc)) from None


# --- Stopping ------------------------------------------------------------------------------


def _stop(stack: Stack, *, save: bool, grace: float) -> None:
    """Stop the parts in reverse order (the bucket saved before moto stops), then forget them.

    A failure to save the bucket from a moto that still runs stops there, so that nothing is
    lost and ``down`` can be tried again.
    """
    account = _postgres_account()
    for name, process in reversed(stack.parts().items()):
        if name == "s3" and save:
            _save_bucket(stack)
        begun = time.monotonic()
        try:
            _stop_part(stack.state_dir, name, process, stack.postgres_bin, account, grace)
        except ProcessError as exc:
            raise StackError(str(exc)) from None
        log.info("%s stopped (%.1f s)", name, time.monotonic() - begun)
    for name in (RECORD, ENV_FILE):
        (stack.state_dir / name).unlink(missing_ok=True)


def _save_bucket(stack: Stack) -> None:
    if not (is_ours(stack.s3) and ANSWERS["s3"](stack.s3.port)):
        log.warning(
            "s3: moto (pid %d) is not running: objects written since the last up are lost",
            stack.s3.pid,
        )
        return
    try:
        bucket.save(stack.s3_endpoint, stack.bucket, stack.state_dir / SNAPSHOT)
    except Exception as exc:  # boto3's errors, a full disk: keep moto running, say so
        raise StackError(
            f"s3: copying bucket {stack.bucket} to {stack.state_dir / SNAPSHOT} failed ({exc});"
            " the stack is left running without mlflow: fix and run down again"
        ) from exc


def _stop_part(
    folder: Path,
    name: str,
    process: Process,
    programs: Path,
    account: Account | None,
    grace: float,
) -> None:
    """Stop one part by its pid; PostgreSQL first by ``pg_ctl stop -m fast``."""
    pgdata = folder / PGDATA
    if name == "postgres" and is_ours(process) and (pgdata / "postmaster.pid").exists():
        command = [
            str(programs / "pg_ctl"), "stop", "-D", str(pgdata), "-m", "fast",
            "-w", "-t", str(max(1, round(grace))),
        ]  # fmt: skip
        try:
            _run(name, command, folder / LOGS / "postgres.log", account, folder)
        except (StackError, OSError) as exc:
            log.warning("%s (stopping it by its pid instead)", exc)
    stop(name, process, grace)


# --- Probes --------------------------------------------------------------------------------


def _postgres_address(port: int) -> str:
    """Connection string of the cluster's maintenance database, as its superuser."""
    return (
        f"host={HOST} port={port} user={DATABASE_USER} dbname=postgres"
        f" connect_timeout={round(PROBE_SECONDS)}"
    )


def _postgres_answers(port: int) -> bool:
    try:
        with psycopg.connect(_postgres_address(port)) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


ANSWERS: dict[str, Callable[[int], bool]] = {  # each part's "ready" probe
    "postgres": _postgres_answers,
    "s3": lambda port: http_ok(f"{_url(port)}/moto-api/"),
    "mlflow": lambda port: http_ok(f"{_url(port)}/health"),
}


def _check(stack: Stack) -> list[PartStatus]:
    states = []
    for name, process in stack.parts().items():
        alive = is_ours(process)
        answering = alive and listens(process.pid, process.port) and ANSWERS[name](process.port)
        states.append(PartStatus(name, process.pid, process.port, alive, answering))
    return states


# --- State directory -----------------------------------------------------------------------


def _state_dir(state_dir: Path | None) -> Path:
    return (state_dir if state_dir is not None else STATE_DIR).resolve()


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """One ``up`` or ``down`` at a time per state directory (the others wait)."""
    with (folder / LOCK).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_state(stack: Stack) -> None:
    write_json(stack.state_dir / RECORD, stack.record())
    text = env_lines(stack)
    write_with(stack.state_dir / ENV_FILE, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _postgres_account() -> Account | None:
    """Whom PostgreSQL runs as: this process's user, or ``postgres`` when that is root."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(POSTGRES_ACCOUNT)
    except KeyError:
        raise StackError(
            f"PostgreSQL refuses to run as root and there is no {POSTGRES_ACCOUNT!r} user:"
            " install the Debian package 'postgresql' or run as another user"
        ) from None
    return Account(POSTGRES_ACCOUNT, entry.pw_uid, entry.pw_gid)


def _check_reachable(folder: Path, account: Account) -> None:
    """PostgreSQL, run as ``account``, has to reach the state directory."""
    reached = subprocess.run(
        ["test", "-x", str(folder)], check=False, timeout=PROGRAM_SECONDS, **account.popen_args()
    )
    if reached.returncode != 0:
        raise StackError(
            f"{folder}: the {account.name!r} user (PostgreSQL refuses root) cannot reach it;"
            " make its parents traversable (chmod o+x) or choose another --dir"
        )


def _version(folder: Path) -> tuple[int, ...]:
    """Sort key for /usr/lib/postgresql/<version>/bin: the version, numerically."""
    digits = folder.parent.name.split(".")
    return tuple(int(d) for d in digits) if all(d.isdigit() for d in digits) else (-1,)


# --- Command line --------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m credit_risk.registry.stack",
        description="The shared registry stack on loopback: mlflow server, PostgreSQL, S3 (moto).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("up", "start the stack (a no-op when it runs) and print the tracking URI"),
        ("down", "stop the stack; its data stays unless --purge"),
        ("status", "whether each part runs and answers, and the tracking URI"),
        ("env", 'print the export lines: eval "$(python -m credit_risk.registry.stack env)"'),
    ):
        command = commands.add_parser(name, help=text, description=text)
        command.add_argument("--dir", type=Path, default=STATE_DIR, help="the state directory")
        if name == "down":
            command.add_argument("--purge", action="store_true", help="delete the data too")
    args = parser.parse_args(argv)
    folder: Path = args.dir
    if args.command == "up":
        stack = up(folder)
        where = f" --dir {shlex.quote(str(folder))}" if folder != STATE_DIR else ""
        print(f"MLflow tracking URI: {stack.tracking_uri}")
        print(f'point a shell at it: eval "$({parser.prog} env{where})"')
    elif args.command == "down":
        stopped = down(folder, purge=args.purge)
        print("registry stack stopped" if stopped else "registry stack was not running")
        if args.purge:
            print(f"its data in {_state_dir(folder)} is deleted")
    elif args.command == "status":
        stack, states = status(folder)
        print(f"registry stack in {stack.state_dir}, started {stack.started_at}")
        for state in states:
            health = "answering" if state.answering else "running, not answering"
            print(
                f"  {state.name:<9} pid {state.pid:<8} {HOST}:{state.port:<6} "
                f"{health if state.alive else 'not running'}"
            )
        print(f"MLflow tracking URI: {stack.tracking_uri}")
        sick = [state.name for state in states if not state.answering]
        if sick:
            raise StackError(f"{', '.join(sick)} not answering in {stack.state_dir}: up restarts")
    else:
        stack, _ = status(folder)
        print(env_lines(stack), end="")


if __name__ == "__main__":
    run("registry-stack", main)
