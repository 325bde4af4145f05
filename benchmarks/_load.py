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

# wrk runs for a duration and reports percentiles "corrected" for coordinated omission (a pause
# adds made-up samples). This script stops it after a count of answers instead, and keeps every
# latency as measured: each thread (one connection each) appends one fixed-width record per
# answer to a shared file, whose size is then the count so far. wrk's main thread sleeps for
# the whole -d duration and wakes early only on SIGINT.
WRK_SCRIPT = """
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long sec; long nsec; } timespec;
int clock_gettime(int clock, timespec *now);
int kill(int pid, int sig);
int getpid(void);
]]
local RECORD = 12  -- bytes per answer in the tally: "%11d\\n", microseconds
local clock, requests, turn, sent, limit, tally = ffi.new("timespec"), {}, 0, 0, 0, nil

local function microseconds()
  ffi.C.clock_gettime(1, clock)  -- CLOCK_MONOTONIC
  return tonumber(clock.sec) * 1000000 + math.floor(tonumber(clock.nsec) / 1000)
end

function init(args)
  limit = tonumber(args[2]) * RECORD
  tally = io.open(args[3], "a")
  tally:setvbuf("no")
  for line in io.lines(args[1]) do
    requests[#requests + 1] = wrk.format("POST", nil, {["Content-Type"] = "application/json"}, line)
  end
end

function request()
  turn = turn % #requests + 1
  sent = microseconds()
  return requests[turn]
end

function response()
  tally:write(string.format("%11d\\n", microseconds() - sent))
  if tally:seek("end") >= limit then
    wrk.thread:stop()
    ffi.C.kill(ffi.C.getpid(), 2)
  end
end

function done(summary)
  local e = summary.errors
  io.write(string.format('RESULT {"us": %d, "errors": %d}\\n', summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout))
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


def _summary(clients: int, ms: Sequence[float], errors: int, seconds: float, cpu: float) -> Load:
    """``ms`` holds the latency of every answer, in milliseconds."""
    if not ms:
        raise RuntimeError(f"no answers from the server in {seconds:.1f} s ({errors} errors)")
    p50, p95, p99, most = (round(float(v), 2) for v in np.percentile(ms, [50, 95, 99, 100]))
    return Load(
        clients=clients,
        requests=len(ms),
        errors=errors,
        seconds=round(seconds, 3),
        per_second=round(len(ms) / seconds, 1),
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
    """wrk: written in C, it takes little of the CPU that the server needs.

    One thread per client, each with one connection: a thread opens its connections all at
    once, and one server worker then accepts every one of them, unlike independent clients.
    """

    def __init__(self, workdir: Path) -> None:
        self.script = workdir / "count.lua"
        self.script.write_text(WRK_SCRIPT, encoding="utf-8")
        self.bodies, self.tally = workdir / "bodies.txt", workdir / "answers.tally"
        version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout
        self.name = f"{version.split(' [')[0]} (a thread per client, Lua script for the bodies)"

    def run(
        self, url: str, bodies: Sequence[bytes], clients: int, requests: int, max_seconds: int
    ) -> Load:
        self.bodies.write_bytes(b"\n".join(bodies) + b"\n")
        self.tally.write_bytes(b"")
        command = ["wrk", f"-t{clients}", f"-c{clients}", f"-d{max_seconds}s"]
        command += [f"--timeout={TIMEOUT_SECONDS}s", "-s", str(self.script), url, "--"]
        command += [str(self.bodies), str(requests), str(self.tally)]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run(command, capture_output=True, text=True, timeout=max_seconds + 30)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode != 0 or not lines:
            raise RuntimeError(f"wrk failed: {done.stdout}{done.stderr}")
        found = json.loads(lines[0].removeprefix("RESULT "))
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        ms = [int(record) / 1000 for record in self.tally.read_bytes().split()]
        return _summary(clients, ms, found["errors"], found["us"] / 1e6, cpu)


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
        return _summary(clients, ms, sum(errors), seconds, cpu)


def load_generator(choice: str, workdir: Path) -> LoadGenerator:
    """``wrk``, ``python``, or ``auto``: wrk when it is on PATH, else the Python client."""
    if choice == "wrk" or (choice == "auto" and shutil.which("wrk")):
        return Wrk(workdir)
    return PythonClient()
