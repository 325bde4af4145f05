"""The registry stack's state and argument errors, without starting any server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from credit_risk.processes import Process
from credit_risk.registry import stack
from credit_risk.stage import run


def cli(*argv: str) -> None:
    run("registry-stack", lambda: stack.main(list(argv)))


@pytest.mark.parametrize("command", ["status", "env"])
def test_no_stack_says_not_running_and_where(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        cli(command, "--dir", str(tmp_path))

    assert stopped.value.code == 1
    message = capsys.readouterr().err
    assert message.count("\n") == 1
    assert "registry stack not running" in message
    assert str(tmp_path / "stack.json") in message


def test_down_without_a_stack_is_a_no_op(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert stack.down(tmp_path / "never-started") is False
    assert not (tmp_path / "never-started").exists()

    cli("down", "--dir", str(tmp_path))
    assert capsys.readouterr().out == "registry stack was not running\n"


def test_missing_postgres_programs_name_the_package(tmp_path: Path) -> None:
    nowhere = str(tmp_path / "lib" / "*" / "bin")
    with pytest.raises(stack.StackError, match="install the Debian package 'postgresql'"):
        stack.up(tmp_path / "state", postgres_glob=nowhere, path=str(tmp_path))

    assert not (tmp_path / "state").exists()  # checked before anything starts


def fake_postgres(folder: Path, programs: tuple[str, ...] = stack.POSTGRES_PROGRAMS) -> None:
    folder.mkdir(parents=True)
    for name in programs:
        (folder / name).write_text("#!/bin/sh\n", encoding="utf-8")
        (folder / name).chmod(0o755)


def test_the_newest_complete_postgres_is_chosen(tmp_path: Path) -> None:
    fake_postgres(tmp_path / "9.6" / "bin")
    fake_postgres(tmp_path / "15" / "bin")
    fake_postgres(tmp_path / "16" / "bin", programs=("postgres", "initdb"))  # no pg_ctl

    found = stack.find_postgres(str(tmp_path / "*" / "bin"), path=str(tmp_path / "empty"))

    assert found == tmp_path / "15" / "bin"


def test_postgres_on_the_path_is_found(tmp_path: Path) -> None:
    fake_postgres(tmp_path / "opt" / "bin")

    found = stack.find_postgres(str(tmp_path / "none" / "*"), path=str(tmp_path / "opt" / "bin"))

    assert found == tmp_path / "opt" / "bin"


def ended_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait(timeout=30)
    return done.pid


def write_record(folder: Path, pid: int) -> stack.Stack:
    part = Process(pid=pid, port=1, started="0")  # start time 0: no process of ours
    recorded = stack.Stack(
        state_dir=folder,
        started_at="2000-01-01T00:00:00+00:00",
        bucket=stack.BUCKET,
        postgres_bin=folder / "bin",
        postgres=part,
        s3=part,
        mlflow=part,
    )
    folder.mkdir(exist_ok=True)
    (folder / "stack.json").write_text(json.dumps(recorded.record()), encoding="utf-8")
    return recorded


def test_a_stale_record_shows_parts_not_running_and_down_forgets_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recorded = write_record(tmp_path, ended_pid())

    assert stack.load(tmp_path) == recorded
    _, parts = stack.status(tmp_path)
    assert [(part.name, part.alive, part.answering) for part in parts] == [
        ("postgres", False, False),
        ("s3", False, False),
        ("mlflow", False, False),
    ]
    with pytest.raises(SystemExit):
        cli("status", "--dir", str(tmp_path))
    output = capsys.readouterr()
    assert output.out.count("not running") == 3
    assert "postgres, s3, mlflow not answering" in output.err

    assert stack.down(tmp_path) is True
    assert stack.load(tmp_path) is None


def test_a_reused_pid_is_not_taken_for_the_stack(tmp_path: Path) -> None:
    # This very process is alive, but did not start when the record says.
    write_record(tmp_path, pid=os.getpid())

    _, parts = stack.status(tmp_path)

    assert not any(part.alive for part in parts)


def test_a_damaged_record_names_the_file_and_the_key(tmp_path: Path) -> None:
    record = write_record(tmp_path, ended_pid()).record()
    del record["s3"]
    (tmp_path / "stack.json").write_text(json.dumps(record), encoding="utf-8")

    with pytest.raises(stack.StackError, match=r"stack\.json: s3: Field required"):
        stack.status(tmp_path)

    (tmp_path / "stack.json").write_text("{", encoding="utf-8")
    with pytest.raises(stack.StackError, match=r"stack\.json: unreadable"):
        stack.status(tmp_path)


def test_env_lines_set_only_the_tracking_uri(tmp_path: Path) -> None:
    recorded = write_record(tmp_path, ended_pid())

    exports = [line for line in stack.env_lines(recorded).splitlines() if not line.startswith("#")]

    assert exports == [f"export MLFLOW_TRACKING_URI={recorded.tracking_uri}"]
    assert recorded.tracking_uri == f"http://127.0.0.1:{recorded.mlflow.port}"
