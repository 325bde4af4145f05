"""Detached server programs: started on a loopback port, waited for, stopped by their pid.

A small real server (Python's http.server) stands in for the stack's parts.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from credit_risk import processes
from credit_risk.processes import HOST, ProcessError, http_ok


def http_server(port: int) -> list[str]:
    return [sys.executable, "-m", "http.server", "--bind", HOST, str(port)]


def answers(port: int) -> bool:
    return http_ok(f"http://{HOST}:{port}/")


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port another program listens on (and never answers)."""
    with socket.socket() as holder:
        holder.bind((HOST, 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def start(
    tmp_path: Path,
    command: Callable[[int], list[str]] = http_server,
    ready: Callable[[int], bool] = answers,
    timeout: float = 30.0,
    ports: Callable[[], int] = processes.free_port,
) -> processes.Process:
    return processes.start(
        "web", command, tmp_path / "web.log", ready=ready, timeout=timeout, cwd=tmp_path,
        ports=ports,
    )  # fmt: skip


def test_a_server_starts_answers_and_stops_by_its_pid(tmp_path: Path) -> None:
    server = start(tmp_path)

    assert processes.is_ours(server)
    assert answers(server.port)
    assert processes.listens(server.pid, server.port)
    processes.stop("web", server, grace=10)
    assert not processes.running(server.pid)
    assert not processes.group_alive(server.pid)
    assert not answers(server.port)


def test_a_port_taken_meanwhile_is_chosen_again(tmp_path: Path, taken_port: int) -> None:
    offered = iter([taken_port])
    server = start(tmp_path, ports=lambda: next(offered, None) or processes.free_port())
    try:
        assert server.port != taken_port
        assert "Address already in use" in (tmp_path / "web.log").read_text(encoding="utf-8")
    finally:
        processes.stop("web", server, grace=10)


def test_a_port_that_stays_taken_is_a_clear_error(tmp_path: Path, taken_port: int) -> None:
    with pytest.raises(ProcessError) as failed:
        start(tmp_path, ports=lambda: taken_port)

    message = str(failed.value)
    assert f"web exited with code 1 on {HOST}:{taken_port}" in message
    assert "Address already in use" in message
    assert "\n" not in message


def test_another_program_answering_on_the_port_is_not_taken_for_ours(
    tmp_path: Path, taken_port: int
) -> None:
    # Pretend the taken port answers: readiness still needs the socket to be the server's own.
    with pytest.raises(ProcessError, match="exited with code 1"):
        start(tmp_path, ports=lambda: taken_port, ready=lambda port: True)


def test_a_failing_program_shows_the_tail_of_its_log(tmp_path: Path) -> None:
    failing = [sys.executable, "-c", "import sys; print('no config here'); sys.exit(3)"]

    with pytest.raises(ProcessError) as failed:
        start(tmp_path, command=lambda port: failing)

    assert "web exited with code 3" in str(failed.value)
    assert "no config here" in str(failed.value)
    assert str(tmp_path / "web.log") in str(failed.value)


def test_a_program_that_never_answers_is_stopped_after_the_timeout(tmp_path: Path) -> None:
    silent = [
        sys.executable,
        "-c",
        "import os, pathlib, time;"
        " pathlib.Path('pid').write_text(str(os.getpid())); time.sleep(60)",
    ]

    with pytest.raises(ProcessError, match=r"did not answer on 127\.0\.0\.1:\d+ within 1 s"):
        start(tmp_path, command=lambda port: silent, timeout=1.0)

    with pytest.raises(ProcessLookupError):
        os.kill(int((tmp_path / "pid").read_text(encoding="utf-8")), 0)


def test_a_reused_pid_is_left_alone(tmp_path: Path) -> None:
    server = start(tmp_path)
    try:
        impostor = server.model_copy(update={"started": "0"})  # same pid, other start time
        assert not processes.is_ours(impostor)
        processes.stop("web", impostor, grace=1)
        assert processes.is_ours(server)
    finally:
        processes.stop("web", server, grace=10)
    assert not processes.running(server.pid)
