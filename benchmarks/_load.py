"""Load generators for benchmarks/service.py: wrk when installed, else a lean Python client.

Both run a closed loop: each of ``clients`` connections (kept alive) sends its next POST as soon
as the previous answer arrives, cycling through the given bodies, until ``requests`` answers
have come back or ``max_seconds`` have passed. Latency is measured from sending a request to
reading its whole answer.
"""

from __future__ import annotations

import itertools
import json
import resource
import shutil
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from http.client import HTTPConnection, HTTPException
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import numpy as np

TIMEOUT_SECONDS = 10  # an answer slower than this counts as an error
HEADERS = {"Content-Type": "application/json"}

# wrk runs for a duration; this script makes it stop after a count of answers instead. wrk's
# main thread sleeps for the whole -d duration and only wakes early on SIGINT, hence the kill.
WRK_SCRIPT = """
local ffi = require("ffi")
ffi.cdef("int kill(int pid, int sig); int getpid(void);")
local requests, limit, answered, turn = {}, 0, 0, 0

function init(args)
  limit = tonumber(args[2])
  for line in io.lines(args[1]) do
    requests[#requests + 1] = wrk.format("POST", nil, {["Content-Type"] = "application/json"}, line)
  end
end

function request()
  turn = turn % #requests + 1
  return requests[turn]
end

function response()
  answered = answered + 1
  if answered == limit then
    wrk.thread:stop()
    ffi.C.kill(ffi.C.getpid(), 2)
  end
end

function done(summary, latency)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %d, "us": %d, "errors": %d, ' ..
    '"p50": %d, "p95": %d, "p99": %d, "max": %d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
"""


@dataclass(frozen=True)
class Load:
    """What one closed-loop run measured."""

    clients: int
    requests: int  # answers received, errors included
    errors: int  # answers with status >= 400, timeouts and socket errors
    seconds: float
    per_second: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    client_cpu_seconds: float  # what the load generator itself used of the shared cores


def _summary(
    clients: int, answers: int, errors: int, seconds: float, ms: Sequence[float], cpu: float
) -> Load:
    """``ms`` holds the 50th, 95th and 99th latency percentiles and the maximum."""
    p50, p95, p99, most = (round(float(value), 2) for value in ms)
    return Load(
        clients=clients,
        requests=answers,
        errors=errors,
        seconds=round(seconds, 3),
        per_second=round(answers / seconds, 1),
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
        max_ms=most,
        client_cpu_seconds=round(cpu, 3),
    )


class LoadGenerator(Protocol):
    name: str

    def run(
        self, url: str, bodies: Sequence[bytes], clients: int, requests: int, max_seconds: int
    ) -> Load: ...


class Wrk:
    """wrk with one thread: an event loop in C, so it takes little of the server's CPU."""

    def __init__(self, workdir: Path) -> None:
        self.script = workdir / "count.lua"
        self.script.write_text(WRK_SCRIPT, encoding="utf-8")
        self.bodies = workdir / "bodies.txt"
        version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout
        self.name = f"{version.split(' [')[0]} (one thread, Lua script for the POST bodies)"

    def run(
        self, url: str, bodies: Sequence[bytes], clients: int, requests: int, max_seconds: int
    ) -> Load:
        self.bodies.write_bytes(b"\n".join(bodies) + b"\n")
        command = [
            "wrk",
            "-t1",
            f"-c{clients}",
            f"-d{max_seconds}s",
            f"--timeout={TIMEOUT_SECONDS}s",
        ]
        command += ["-s", str(self.script), url, "--", str(self.bodies), str(requests)]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run(command, capture_output=True, text=True, timeout=max_seconds + 30)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode != 0 or not lines:
            raise RuntimeError(f"wrk failed: {done.stdout}{done.stderr}")
        found = json.loads(lines[0].removeprefix("RESULT "))
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        ms = [found[key] / 1000 for key in ("p50", "p95", "p99", "max")]
        return _summary(clients, found["requests"], found["errors"], found["us"] / 1e6, ms, cpu)


class PythonClient:
    """One thread per client, each with its own persistent http.client connection."""

    name = "python http.client (one thread and keep-alive connection per client)"

    def run(
        self, url: str, bodies: Sequence[bytes], clients: int, requests: int, max_seconds: int
    ) -> Load:
        parts = urlsplit(url)
        tickets = itertools.count()  # next() on it is atomic under the GIL: a shared counter
        deadline = time.perf_counter() + max_seconds
        latencies: list[list[float]] = [[] for _ in range(clients)]
        errors = [0] * clients

        def client(slot: int) -> None:
            connection = HTTPConnection(parts.hostname, parts.port, timeout=TIMEOUT_SECONDS)
            try:
                while (turn := next(tickets)) < requests and time.perf_counter() < deadline:
                    started = time.perf_counter()
                    try:
                        connection.request("POST", parts.path, bodies[turn % len(bodies)], HEADERS)
                        answer = connection.getresponse()
                        answer.read()
                    except (OSError, HTTPException):
                        errors[slot] += 1
                        connection.close()  # the next request reconnects
                        continue
                    latencies[slot].append((time.perf_counter() - started) * 1000)
                    errors[slot] += answer.status >= 400
            finally:
                connection.close()

        threads = [threading.Thread(target=client, args=(slot,)) for slot in range(clients)]
        cpu, started = time.process_time(), time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        ms = [value for values in latencies for value in values]
        percentiles = np.percentile(ms, [50, 95, 99, 100]) if ms else [np.nan] * 4
        return _summary(clients, len(ms), sum(errors), seconds, percentiles, cpu)


def load_generator(choice: str, workdir: Path) -> LoadGenerator:
    """``wrk``, ``python``, or ``auto``: wrk when it is on PATH, else the Python client."""
    if choice == "wrk" or (choice == "auto" and shutil.which("wrk")):
        return Wrk(workdir)
    return PythonClient()
