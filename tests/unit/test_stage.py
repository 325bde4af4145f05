from __future__ import annotations

from pathlib import Path

import pytest

from credit_risk.errors import DataError
from credit_risk.stage import run


def fail_with(error: Exception):
    def main() -> None:
        raise error

    return main


def test_a_known_error_is_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        run("validate", fail_with(DataError("column 'age': out of range")))
    assert stopped.value.code == 1
    assert capsys.readouterr().err == "error: validate stage failed: column 'age': out of range\n"


def test_a_missing_input_names_the_file(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        run("split", lambda: Path("data/nowhere.parquet").read_bytes())
    message = capsys.readouterr().err
    assert "data/nowhere.parquet: No such file or directory" in message
    assert "`dvc repro`" in message


def test_an_unwritable_target_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        run("ingest", lambda: tmp_path.write_text("a directory is not a file"))
    assert f"{tmp_path}: Is a directory" in capsys.readouterr().err


def test_a_bug_still_shows_its_traceback() -> None:
    with pytest.raises(ZeroDivisionError):
        run("train", fail_with(ZeroDivisionError("bug")))
