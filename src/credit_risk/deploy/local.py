"""The local target: an environment's release as supervised `bentoml serve` processes on this
machine, behind one nginx on 127.0.0.1:<port>, switched without a failed request.

Everything an environment runs keeps its files in its state folder (``.deploy/<name>/``):

    state.json          what takes traffic: release, replica ports and pids, since, nginx pid
    nginx/              nginx.conf (generated), nginx.pid, error.log, access.log, temp/
    predictions/        the prediction log of every release (CREDIT_RISK_PREDICTION_LOG)
    scrape-targets.json the running replicas, for Prometheus (deploy/prometheus/prometheus.yml)
    releases/<id>/      one folder per deploy: the supervisor's spec.json, replicas.json and
                        log, and each replica's log (replica-<n>.log)

A deploy starts the new release's replicas beside the running ones: a supervisor
(`python -m credit_risk.deploy.supervise`) runs ``settings.replicas`` copies of
``bentoml serve <bento>``, each with one worker on its own free loopback port. Each must answer
/readyz and pass the smoke test (`smoke.py`) within ``ready_timeout_seconds``; only then does
nginx's upstream name the new ports, and a graceful reload moves traffic: new connections go to
the new replicas while the old nginx workers finish their requests on the old ones. After
``drain_seconds`` (and those workers have gone) the old release's supervisor stops it.

A release that fails to start or fails its smoke test is stopped, the old one never noticed,
and the DeployError says why, with the end of the failing replica's log.

One worker per replica, several replicas: nginx spreads client connections over independent
processes (``least_conn``). BentoML's own workers share one listening socket, and a client's
keep-alive connections pile up on whichever worker accepted them. The bento says
``workers: <serve.workers>``; BentoML's configuration override (the BENTOML_CONFIG_OVERRIDES
variable, JSON, applied over the service's own settings) sets it to one for each replica.
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import json
import os
import pwd
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bentoml

from credit_risk.deploy import smoke
from credit_risk.deploy.environments import LocalSettings, Release
from credit_risk.deploy.supervise import (
    REPLICAS_FILE,
    Spec,
    alive,
    command_line,
    descendants,
    replica_log,
    signal_all,
    wait_gone,
)
from credit_risk.deploy.targets import DeployError, Observed
from credit_risk.errors import CreditRiskError
from credit_risk.files import write_json, write_with
from credit_risk.monitoring.predictions import LOG_VARIABLE
from credit_risk.serving.bento import pinned_model
from credit_risk.serving.guard import DRAIN_FACTOR

NGINX_PACKAGE = "nginx-light"  # the Debian/Ubuntu package with everything this target uses
HOST = "127.0.0.1"
STATE_FILE = "state.json"
SCRAPE_TARGETS_FILE = "scrape-targets.json"  # the replicas, for Prometheus (file_sd)
RELEASE_HEADER = "x-release"  # nginx adds it: the release id of the upstream that answered
BENTO_HEADER = "x-bento"
KEPT_RELEASE_FOLDERS = 5  # logs of past deploys kept, besides the running ones
REPLICA_GRACE_SECONDS = 20.0  # a stopped replica's time to finish its requests
SWITCH_SECONDS = 10.0  # for nginx to start or reload and answer from the new release
PROBE_SECONDS = 3.0  # one status request
# BentoML's workers (uvicorn) close idle keep-alive connections after 5 s. nginx must give up
# an idle upstream connection before that, or it may send a request on a closing connection.
UPSTREAM_IDLE_SECONDS = 4
DEFAULT_TIMEOUT_SECONDS = 30  # when a bento carries no serve.timeout_seconds
DEFAULT_MAX_BODY_BYTES = 1 << 20
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
EPHEMERAL_FIRST_PORT = 32768  # Linux's default, where the range cannot be read
REPLICA_PORTS_FROM = 20000


def default_nginx() -> str:
    """nginx on PATH, else where Debian installs it (/usr/sbin is not on every user's PATH)."""
    return shutil.which("nginx") or "/usr/sbin/nginx"


def free_port(taken: set[int]) -> int:
    """A loopback port no one listens on now, not in ``taken``, and below the kernel's range of
    ephemeral ports, so that no outgoing connection takes it while its replica restarts."""
    first = EPHEMERAL_FIRST_PORT
    with contextlib.suppress(OSError, ValueError, IndexError):
        first = int(EPHEMERAL_RANGE.read_text().split()[0])
    if first - REPLICA_PORTS_FROM > 1000:
        for port in random.sample(range(REPLICA_PORTS_FROM, first), 200):
            if port not in taken and port_free(port):
                return port
    for _ in range(100):  # a crowded machine: any port the kernel hands out
        with socket.socket() as probe:
            probe.bind((HOST, 0))
            port = int(probe.getsockname()[1])
        if port not in taken:
            return port
    raise DeployError("found no free loopback port")


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"({path} not written)"
    return "\n".join(text.splitlines()[-lines:])


def probe(url: str, timeout: float = PROBE_SECONDS) -> tuple[int, dict[str, str]] | str:
    """(status, lower-case headers) of a GET, or why there was no answer."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            response.read()
            return response.status, {k.lower(): v for k, v in response.headers.items()}
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}
    except (OSError, ValueError) as problem:
        reason = getattr(problem, "reason", problem)
        return f"no answer ({reason})"


# --- nginx -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NginxBuild:
    """What the installed nginx offers that the configuration depends on."""

    version: tuple[int, ...]
    modules_without: frozenset[str]  # e.g. {"uwsgi"}: built --without-http_uwsgi_module

    @classmethod
    def of(cls, binary: str) -> NginxBuild:
        done = subprocess.run([binary, "-V"], capture_output=True, text=True, timeout=10)
        text = done.stderr + done.stdout
        found = re.search(r"nginx/(\d+(?:\.\d+)*)", text)
        version = tuple(int(part) for part in found[1].split(".")) if found else (0,)
        without = frozenset(re.findall(r"--without-http_(\w+?)_module", text))
        return cls(version, without)

    def temp_kinds(self) -> list[str]:
        """Every module with a temp folder: each must point inside the state folder, or nginx
        tries to create its compiled-in one (/var/lib/nginx/...) and fails when not root."""
        optional = [
            kind for kind in ("fastcgi", "uwsgi", "scgi") if kind not in self.modules_without
        ]
        return ["client_body", "proxy", *optional]

    def error_log_flag(self, path: Path) -> list[str]:
        # -e (1.19.5+) keeps nginx from opening its compiled-in error log before it reads ours.
        return ["-e", str(path)] if self.version >= (1, 19, 5) else []


@dataclass(frozen=True)
class ProxyPlan:
    """What nginx.conf says: where to listen and which replicas of which release to use."""

    environment: str
    port: int
    replica_ports: list[int]
    release_id: str
    bento: str
    timeout_seconds: int  # the service's request timeout
    max_body_bytes: int  # the service's request size limit


def nginx_config(plan: ProxyPlan, folder: Path, build: NginxBuild) -> str:
    """The whole nginx.conf for one environment (every path inside ``folder``)."""
    upstream = "replicas_" + re.sub(r"\W", "_", plan.environment)
    servers = "\n".join(
        f"        server {HOST}:{port} max_fails=1 fail_timeout=2s;" for port in plan.replica_ports
    )
    temp_paths = "\n".join(
        f"    {kind}_temp_path {folder / 'temp' / kind};" for kind in build.temp_kinds()
    )
    read_seconds = plan.timeout_seconds + 5  # the service answers (or times out) first
    if os.geteuid() == 0:
        # As root, nginx would run its workers as `nobody`, who cannot enter a state folder
        # made by the deploying user; the workers run as that user instead. Listening on a
        # loopback port needs no privilege, so nothing else runs as root but the master.
        user = f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};"
    else:
        user = "# (not root: the workers run as the deploying user)"
    return f"""# Generated by credit_risk.deploy.local for the environment "{plan.environment}":
# rewritten on every deploy, never edited by hand. Release {plan.release_id} ({plan.bento}).
{user}
daemon on;
worker_processes 1;  # loopback proxying takes a fraction of one core; the replicas need the rest
pid {folder / "nginx.pid"};
error_log {folder / "error.log"} warn;
# After a reload, old workers finish their requests; this bounds the wait for a slow one.
worker_shutdown_timeout {read_seconds + 5}s;

events {{
    worker_connections 1024;
}}

http {{
{temp_paths}
    log_format upstream '$time_iso8601 $status $request_method $uri $request_time '
                        '$upstream_addr $upstream_status $upstream_response_time '
                        '$http_x_request_id';
    access_log {folder / "access.log"} upstream buffer=32k flush=2s;
    server_tokens off;

    upstream {upstream} {{
        # Each new request goes to the replica with the fewest active ones, counted across
        # nginx workers (the zone), so one client's connections spread over the replicas.
        zone {upstream} 64k;
        least_conn;
{servers}
        keepalive 16;
        keepalive_timeout {UPSTREAM_IDLE_SECONDS}s;
    }}

    server {{
        listen {HOST}:{plan.port};
        # The service itself refuses bodies over its limit with a JSON 413; nginx lets them
        # through (up to what the service drains) so that clients get the service's answer.
        client_max_body_size {plan.max_body_bytes * DRAIN_FACTOR};
        client_body_buffer_size {max(plan.max_body_bytes, 16384)};

        location / {{
            proxy_pass http://{upstream};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_connect_timeout 2s;
            proxy_send_timeout {read_seconds}s;
            proxy_read_timeout {read_seconds}s;
            # A replica that refuses the connection, resets it, times out or answers 502/503
            # (restarting, not ready) is skipped and the request goes to the next replica.
            # POST is retried too (non_idempotent): scoring changes nothing on the server, so
            # a request sent twice gives the same answer; the only trace of the first attempt
            # is at most one extra line in the failed replica's log and metrics.
            proxy_next_upstream error timeout http_502 http_503 non_idempotent;
            proxy_next_upstream_timeout {read_seconds}s;
            add_header X-Release {plan.release_id} always;
            add_header X-Bento {plan.bento} always;
        }}
    }}
}}
"""


# --- the target --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """Where an environment's runtime files live."""

    root: Path

    @property
    def state(self) -> Path:
        return self.root / STATE_FILE

    @property
    def lock(self) -> Path:
        return self.root / "lock"

    @property
    def nginx(self) -> Path:
        return self.root / "nginx"

    @property
    def conf(self) -> Path:
        return self.nginx / "nginx.conf"

    @property
    def nginx_pid(self) -> Path:
        return self.nginx / "nginx.pid"

    @property
    def error_log(self) -> Path:
        return self.nginx / "error.log"

    @property
    def releases(self) -> Path:
        return self.root / "releases"

    @property
    def predictions(self) -> Path:
        return self.root / "predictions"

    @property
    def scrape_targets(self) -> Path:
        return self.root / SCRAPE_TARGETS_FILE


@dataclass(frozen=True)
class Running:
    """A release's supervised replicas, started by this target."""

    release_id: str
    folder: Path
    supervisor: int
    ports: list[int]


class LocalTarget:
    """An environment on this machine: supervised `bentoml serve` replicas behind nginx.

    ``nginx`` is the nginx binary (default: on PATH, else /usr/sbin/nginx); ``smoke_rows`` are
    the records the smoke test scores (default: the model's own background rows).
    """

    def __init__(
        self,
        name: str,
        settings: LocalSettings,
        state_dir: Path,
        *,
        nginx: str | Path | None = None,
        smoke_rows: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self.state_dir = Path(state_dir).absolute()
        self.layout = Layout(self.state_dir)
        self.nginx = str(nginx) if nginx is not None else default_nginx()
        self.smoke_rows = smoke_rows
        self._launched: dict[int, subprocess.Popen[bytes]] = {}  # supervisors, to reap them
        # When the last deploy reached each step (time.monotonic()): started, ready (every
        # replica answered /readyz), smoke_passed, reloaded (nginx told), switched (nginx
        # answered from the new release), drained (the old release stopped). For reports.
        self.phases: dict[str, float] = {}

    @property
    def where(self) -> str:
        return f"http://{HOST}:{self.settings.port}"

    # --- deploy ---

    def deploy(self, release: Release) -> Observed:
        """Make ``release`` take traffic; on failure the previous release keeps serving."""
        self.phases = {"started": time.monotonic()}
        build = self._nginx_build()
        serve_args = self._bento_arguments(release)
        with self._locked():
            state = self._state()
            self._check_port()
            new = self._start(release, state)
            plan = ProxyPlan(
                environment=self.name,
                port=self.settings.port,
                replica_ports=new.ports,
                release_id=new.release_id,
                bento=release.bento,
                timeout_seconds=int(serve_args.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS)),
                max_body_bytes=int(serve_args.get("max_body_bytes", DEFAULT_MAX_BODY_BYTES)),
            )
            try:
                self._verify(release, new)
                nginx_pid, old_workers = self._switch(plan, build)
            except DeployError as failure:
                self._stop_supervisor(new.folder, new.supervisor)
                previous = (
                    f"{state['release']['bento']} still serves"
                    if state and self._nginx_pid() is not None
                    else "nothing was running before"
                )
                raise DeployError(
                    f"{release.bento} not deployed to {self.name} ({previous}): {failure}"
                ) from None
            except BaseException:  # interrupted (Ctrl-C): the new replicas must not linger
                self._stop_supervisor(new.folder, new.supervisor)
                raise
            self._record(release, new, nginx_pid)
            if state is not None:
                self._drain(old_workers)
                self._stop_supervisor(self.layout.releases / state["release_id"], None)
            self.phases["drained"] = time.monotonic()
            self._prune()
        return self.observe()

    def _nginx_build(self) -> NginxBuild:
        if not Path(self.nginx).is_file() or not os.access(self.nginx, os.X_OK):
            raise DeployError(
                f"nginx not found at {self.nginx}: the local target runs it in front of the "
                f"replicas; install it (Debian/Ubuntu: apt-get install {NGINX_PACKAGE})"
            )
        try:
            return NginxBuild.of(self.nginx)
        except (OSError, subprocess.SubprocessError) as problem:
            raise DeployError(f"cannot run {self.nginx}: {problem}") from None

    def _bento_arguments(self, release: Release) -> dict[str, Any]:
        """The bento's `serve` settings; refuses a bento not in the store or pinning another
        model than the release names."""
        try:
            pinned = pinned_model(release.bento)
        except CreditRiskError as problem:
            raise DeployError(str(problem)) from None
        if pinned != release.model_tag:
            raise DeployError(
                f"bento {release.bento} serves model {pinned}, but the release names "
                f"{release.model_tag}"
            )
        arguments = bentoml.bentos.get(release.bento).info.args or {}
        serve = arguments.get("serve")
        return dict(serve) if isinstance(serve, dict) else {}

    def _check_port(self) -> None:
        if self._nginx_pid() is not None and self._proxy_port() == self.settings.port:
            return  # our own nginx holds it
        if not port_free(self.settings.port):
            raise DeployError(
                f"port {self.settings.port} ({self.name}'s proxy) is in use by another program; "
                f"stop it or set local.port in deploy/{self.name}.yaml (who listens: "
                f"`ss -ltnp 'sport = :{self.settings.port}'`)"
            )

    def _proxy_port(self) -> int | None:
        """The port the running nginx.conf listens on."""
        try:
            found = re.search(r"^\s*listen [^:]+:(\d+);", self.layout.conf.read_text(), re.M)
        except OSError:
            return None
        return int(found[1]) if found else None

    def _start(self, release: Release, state: dict[str, Any] | None) -> Running:
        """Start the release's supervisor and replicas, beside whatever runs."""
        taken = {self.settings.port, *(state["ports"] if state else [])}
        ports: list[int] = []
        for _ in range(self.settings.replicas):
            ports.append(free_port(taken | set(ports)))
        release_id = self._new_release_id(release)
        folder = self.layout.releases / release_id
        folder.mkdir(parents=True)
        services = [service.name for service in bentoml.bentos.get(release.bento).info.services]
        Spec(
            commands=[serve_command(release.bento, port) for port in ports],
            env={
                "BENTOML_CONFIG_OVERRIDES": json.dumps(one_worker(services)),
                # Each environment logs its predictions in its own folder, shared by its
                # replicas and kept across releases (the replicas run in a release's folder).
                LOG_VARIABLE: str(self.layout.predictions.resolve()),
            },
            grace_seconds=REPLICA_GRACE_SECONDS,
        ).write(folder)
        env = {
            key: value
            for key, value in os.environ.items()
            # The bento names its model and settings; development variables must not leak in.
            if key not in {"CREDIT_RISK_MODEL_TAG", "CREDIT_RISK_PARAMS"}
        }
        with (folder / "supervisor.log").open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "credit_risk.deploy.supervise", str(folder)],
                cwd=folder,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # detached: survives this process and its terminal
            )
        self._launched[process.pid] = process
        (folder / "supervisor.pid").write_text(f"{process.pid}\n", encoding="utf-8")
        return Running(release_id, folder, process.pid, ports)

    def _new_release_id(self, release: Release) -> str:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        version = release.bento.split(":", 1)[1][:12]
        for suffix in range(1000):
            release_id = f"{stamp}-{version}" + (f"-{suffix}" if suffix else "")
            if not (self.layout.releases / release_id).exists():
                return release_id
        raise DeployError(f"too many deploys in one second under {self.layout.releases}")

    def _verify(self, release: Release, new: Running) -> None:
        """Every replica ready, then smoke-tested, within ready_timeout_seconds."""
        deadline = time.monotonic() + self.settings.ready_timeout_seconds
        waiting = dict(enumerate(new.ports, start=1))
        while waiting:
            for index, port in list(waiting.items()):
                answer = probe(f"http://{HOST}:{port}/readyz", timeout=2)
                if isinstance(answer, tuple) and answer[0] == 200:
                    del waiting[index]
                else:
                    self._check_starting(new, index)
            if not waiting:
                break
            if time.monotonic() > deadline:
                index = min(waiting)
                raise DeployError(
                    f"replica {index} (port {waiting[index]}) not ready within "
                    f"{self.settings.ready_timeout_seconds} s (ready_timeout_seconds)"
                    + self._log_tail(new.folder, index)
                )
            time.sleep(0.25)
        self.phases["ready"] = time.monotonic()
        for index, port in enumerate(new.ports, start=1):
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeployError(
                    f"the smoke test did not finish within {self.settings.ready_timeout_seconds}"
                    " s (ready_timeout_seconds)"
                )
            try:
                smoke.check(f"http://{HOST}:{port}", release.model_tag, self.smoke_rows, left)
            except DeployError as failure:
                raise DeployError(
                    f"smoke test failed on replica {index} (port {port}): {failure}"
                ) from None
            except OSError as problem:
                raise DeployError(
                    f"smoke test failed on replica {index} (port {port}): {problem}"
                    + self._log_tail(new.folder, index)
                ) from None
        self.phases["smoke_passed"] = time.monotonic()

    def _check_starting(self, new: Running, index: int) -> None:
        """Fail at once when a starting replica cannot become ready, instead of timing out."""
        log = replica_log(new.folder, index)
        try:
            text = log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            text = ""
        for line in text.splitlines():
            if '"model_load_failed"' in line:
                raise DeployError(
                    f"replica {index} cannot serve: the model failed to load: "
                    f"{line.strip()}" + self._log_tail(new.folder, index)
                )
        self._reap()
        if not alive(new.supervisor):
            raise DeployError(
                "the release's supervisor exited"
                f"\n--- end of {new.folder / 'supervisor.log'} ---\n"
                f"{tail(new.folder / 'supervisor.log')}"
            )
        replicas = self._replicas(new.folder)
        if replicas and replicas[index - 1].get("restarts", 0) > 0:
            raise DeployError(
                f"replica {index} exited while starting" + self._log_tail(new.folder, index)
            )

    def _log_tail(self, folder: Path, index: int) -> str:
        log = replica_log(folder, index)
        return f"\n--- end of {log} ---\n{tail(log)}"

    def _switch(self, plan: ProxyPlan, build: NginxBuild) -> tuple[int, set[int]]:
        """Point nginx at the new replicas (start it, or reload it gracefully) and wait until
        it answers from them. Returns nginx's pid and its workers from before the switch."""
        folder = self.layout.nginx
        for kind in build.temp_kinds():
            (folder / "temp" / kind).mkdir(parents=True, exist_ok=True)
        text = nginx_config(plan, folder, build)
        candidate = folder / "nginx.conf.next"
        candidate.write_text(text, encoding="utf-8")
        flags = ["-p", str(folder), *build.error_log_flag(self.layout.error_log)]
        checked = subprocess.run(
            [self.nginx, "-t", "-q", "-c", str(candidate), *flags],
            capture_output=True,
            text=True,
            timeout=SWITCH_SECONDS,
        )
        if checked.returncode != 0:
            raise DeployError(f"nginx refused the generated {candidate}: {checked.stderr.strip()}")
        previous = (
            self.layout.conf.read_text(encoding="utf-8") if self.layout.conf.exists() else None
        )
        write_with(self.layout.conf, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        candidate.unlink()
        pid = self._nginx_pid()
        old_workers = descendants(pid) if pid is not None else set()
        self.phases["reloaded"] = time.monotonic()
        if pid is None:
            started = subprocess.run(
                [self.nginx, "-c", str(self.layout.conf), *flags],
                capture_output=True,
                text=True,
                timeout=SWITCH_SECONDS,
            )
            if started.returncode != 0:
                raise DeployError(
                    f"nginx did not start: {started.stderr.strip()}\n"
                    f"--- end of {self.layout.error_log} ---\n{tail(self.layout.error_log)}"
                )
        else:
            os.kill(pid, signal.SIGHUP)  # graceful reload: re-read the file, replace workers
        try:
            self._await_release(plan.release_id)
        except BaseException:
            # Back to the replicas that served before (which still run), or no nginx at all.
            if previous is not None and pid is not None:
                write_with(self.layout.conf, lambda tmp: tmp.write_text(previous, encoding="utf-8"))
                os.kill(pid, signal.SIGHUP)
            elif pid is None:
                self._stop_nginx()
            raise
        self.phases["switched"] = time.monotonic()
        found = self._nginx_pid()
        if found is None:
            raise DeployError(f"nginx is not running\n{tail(self.layout.error_log)}")
        return found, old_workers

    def _await_release(self, release_id: str) -> None:
        deadline = time.monotonic() + SWITCH_SECONDS
        last: object = None
        while time.monotonic() < deadline:
            last = probe(f"{self.where}/livez", timeout=2)
            if isinstance(last, tuple) and last[1].get(RELEASE_HEADER) == release_id:
                return
            time.sleep(0.05)
        raise DeployError(
            f"nginx did not switch to release {release_id} within {SWITCH_SECONDS:g} s "
            f"(last answer: {last})\n--- end of {self.layout.error_log} ---\n"
            f"{tail(self.layout.error_log)}"
        )

    def _record(self, release: Release, new: Running, nginx_pid: int) -> None:
        replicas = self._replicas(new.folder)
        write_json(
            self.layout.state,
            {
                "environment": self.name,
                "release": release.model_dump(),
                "release_id": new.release_id,
                "port": self.settings.port,
                "ports": new.ports,
                "pids": {
                    "nginx": nginx_pid,
                    "supervisor": new.supervisor,
                    "replicas": [replica.get("pid") for replica in replicas],
                },
                "since": datetime.now(UTC).isoformat(timespec="seconds"),
            },
        )
        self._scrape_targets(new)

    def _scrape_targets(self, running: Running | None) -> None:
        """Prometheus's file of targets (deploy/prometheus/prometheus.yml reads it): each
        replica on its own, since each keeps its own counters and nginx would mix them."""
        groups = []
        if running is not None:
            groups.append(
                {
                    "targets": [f"{HOST}:{port}" for port in running.ports],
                    "labels": {"environment": self.name, "release": running.release_id},
                }
            )
        write_json(self.layout.scrape_targets, groups)

    def _drain(self, old_workers: set[int]) -> None:
        """Give the old release drain_seconds, and the old nginx workers time to finish."""
        deadline = time.monotonic() + self.settings.drain_seconds
        time.sleep(self.settings.drain_seconds)
        # Old workers still proxy their last requests to the old replicas: wait for them too.
        wait_gone(old_workers, max(0.0, deadline - time.monotonic()) + DEFAULT_TIMEOUT_SECONDS)

    def _prune(self) -> None:
        """Delete the folders of old releases that no longer run (the newest few are kept)."""
        folders = sorted(self.layout.releases.iterdir(), key=lambda path: path.name)
        for folder in folders[:-KEPT_RELEASE_FOLDERS]:
            if self._supervisor_pid(folder) is None:
                shutil.rmtree(folder, ignore_errors=True)

    # --- observe ---

    def observe(self) -> Observed:
        """What answers now, through the proxy; never raises for an environment that is down."""
        state = self._state()
        port = int(state["port"]) if state else self.settings.port
        where = f"http://{HOST}:{port}"
        nginx_pid = self._nginx_pid()
        if state is None:
            detail = "nothing deployed" + (" (nginx runs without a release)" if nginx_pid else "")
            return Observed(False, False, None, None, None, where, detail)
        release = state["release"]
        folder = self.layout.releases / state["release_id"]
        replicas = self._replicas(folder)
        up = sum(1 for replica in replicas if alive(replica.get("pid")))
        expected = len(state["ports"])
        answer = probe(f"{where}/readyz")
        model_tag = None
        if isinstance(answer, tuple):
            status, headers = answer
            ready = status == 200
            model_tag = headers.get("x-model-version")
            proxy = "ready" if ready else f"/readyz answered {status}"
        else:
            ready, proxy = False, answer
        parts = [f"replicas alive {up}/{expected}", f"proxy {proxy}"]
        if nginx_pid is None:
            parts.append("nginx not running")
        return Observed(
            running=nginx_pid is not None,
            ready=ready,
            bento=release["bento"],
            model_tag=model_tag,
            since=datetime.fromisoformat(state["since"]),
            where=where,
            detail="; ".join(parts),
        )

    # --- stop ---

    def stop(self) -> None:
        """Stop nginx and every release's supervisor, by their pids (idempotent)."""
        if not self.state_dir.exists():
            return
        with self._locked():
            self._stop_nginx()
            if self.layout.releases.is_dir():
                for folder in sorted(self.layout.releases.iterdir()):
                    self._stop_supervisor(folder, None)
            self.layout.state.unlink(missing_ok=True)
            self._scrape_targets(None)

    # --- helpers ---

    def _stop_nginx(self) -> None:
        pid = self._nginx_pid()
        if pid is None:
            return
        workers = descendants(pid)
        os.kill(pid, signal.SIGQUIT)  # graceful: finish the requests in flight
        if not wait_gone({pid, *workers}, SWITCH_SECONDS + DEFAULT_TIMEOUT_SECONDS):
            signal_all([pid, *workers], signal.SIGKILL)
            wait_gone({pid, *workers}, 5)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One deploy or stop of this environment at a time."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with self.layout.lock.open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise DeployError(
                    f"another deploy or stop of {self.name} is running ({self.layout.lock})"
                ) from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _state(self) -> dict[str, Any] | None:
        try:
            state: dict[str, Any] = json.loads(self.layout.state.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return state

    def _nginx_pid(self) -> int | None:
        """The pid of this environment's nginx master, if it runs."""
        try:
            pid = int(self.layout.nginx_pid.read_text().strip())
        except (OSError, ValueError):
            return None
        if alive(pid) and str(self.layout.conf) in command_line(pid):
            return pid
        return None

    def _supervisor_pid(self, folder: Path) -> int | None:
        """The pid of a release folder's supervisor, if it runs."""
        self._reap()
        try:
            pid = int((folder / "supervisor.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        line = command_line(pid)
        if alive(pid) and "credit_risk.deploy.supervise" in line and str(folder) in line:
            return pid
        return None

    def _replicas(self, folder: Path) -> list[dict[str, Any]]:
        try:
            found = json.loads((folder / REPLICAS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        replicas: list[dict[str, Any]] = found.get("replicas", [])
        return replicas

    def _stop_supervisor(self, folder: Path, pid: int | None) -> None:
        """SIGTERM to a release's supervisor, which stops its replicas; SIGKILL if it hangs."""
        pid = pid if pid is not None and alive(pid) else self._supervisor_pid(folder)
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            if not wait_gone({pid}, REPLICA_GRACE_SECONDS + 10, self._reap):
                os.kill(pid, signal.SIGKILL)
                wait_gone({pid}, 5, self._reap)
        # Replicas left by a supervisor that was killed outright.
        left = [
            replica["pid"]
            for replica in self._replicas(folder)
            if alive(replica.get("pid")) and "bentoml" in command_line(replica["pid"])
        ]
        if left:
            family = {pid for replica in left for pid in descendants(replica)}
            signal_all(left, signal.SIGTERM)
            if not wait_gone(left, REPLICA_GRACE_SECONDS):
                signal_all(left, signal.SIGKILL)
            signal_all(family, signal.SIGTERM)
            wait_gone(family, 5)

    def _reap(self) -> None:
        for pid, process in list(self._launched.items()):
            if process.poll() is not None:
                del self._launched[pid]


def serve_command(bento: str, port: int) -> list[str]:
    """One replica: `bentoml serve` of the bento on a loopback port (from this environment)."""
    return [sys.executable, "-m", "bentoml", "serve", bento, "--host", HOST, "--port", str(port)]


def one_worker(services: Sequence[str]) -> dict[str, Any]:
    """BentoML's configuration override that runs each service with one worker, merged into
    any override the environment already sets."""
    given = os.environ.get("BENTOML_CONFIG_OVERRIDES", "")
    try:
        merged = json.loads(given) if given.strip() else {}
    except ValueError:
        merged = {}
    if not isinstance(merged, dict):
        merged = {}
    merged.setdefault("services", {})
    for service in services:
        merged["services"].setdefault(service, {})["workers"] = 1
    return merged
