"""A team's DVC remote on S3, set by one variable (`make remote` with DVC_REMOTE_URL), against
the S3-compatible endpoint of the registry stack (moto's server, started for real).

What the workflows rely on: train-report pushes the pipeline's outputs, and deploy pulls exactly
what dvc.lock names (or fails when the remote lacks it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from credit_risk.files import md5
from credit_risk.registry import bucket

pytestmark = pytest.mark.slow

VENV = Path(sys.executable).parent.parent


def run(workspace: Path, command: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    """``command`` in ``workspace`` with the test's venv first on PATH and ``env`` added."""
    merged = {**os.environ, "PATH": f"{VENV / 'bin'}{os.pathsep}{os.environ['PATH']}", **env}
    if "DVC_REMOTE_URL" not in env:
        merged.pop("DVC_REMOTE_URL", None)  # the developer's own setting stays out of the test
    return subprocess.run(
        command, cwd=workspace, env=merged, capture_output=True, text=True, timeout=300,
        check=False,
    )  # fmt: skip


def make_remote(workspace: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`make remote`, with this session's venv (the copy's own setup step is skipped)."""
    installed = VENV / ".installed"
    return run(workspace, ["make", "-o", str(installed), f"VENV={VENV}", "remote"], **env)


def raw_output(workspace: Path) -> tuple[Path, str]:
    """The ingest stage's output and the md5 dvc.lock records for it."""
    lock = yaml.safe_load((workspace / "dvc.lock").read_text())
    out = lock["stages"]["ingest"]["outs"][0]
    return workspace / out["path"], str(out["md5"])


@pytest.fixture
def s3_env(registry_stack: Any) -> dict[str, str]:
    """A fresh prefix in the stack's bucket as the remote, and what a client needs to reach it
    (an S3-compatible endpoint is named by AWS_ENDPOINT_URL, as every AWS SDK reads it)."""
    url = f"s3://{registry_stack.bucket}/dvc-{uuid.uuid4().hex[:8]}"
    return {
        "DVC_REMOTE_URL": url,
        "AWS_ENDPOINT_URL": registry_stack.s3_endpoint,
        **bucket.MOTO_CREDENTIALS,
    }


def test_one_variable_sends_the_pipelines_outputs_to_s3_and_back(
    tmp_path: Path,
    repository_copy: Callable[[Path], Path],
    registry_stack: Any,
    s3_env: dict[str, str],
) -> None:
    workspace = repository_copy(tmp_path / "repo")
    done = make_remote(workspace, **s3_env)
    assert done.returncode == 0, done.stderr
    assert f"DVC's remote is now {s3_env['DVC_REMOTE_URL']}" in done.stdout
    assert run(workspace, ["dvc", "remote", "default"]).stdout.strip() == "team"
    assert run(workspace, ["git", "status", "--porcelain"]).stdout == ""  # nothing to commit

    assert run(workspace, ["dvc", "repro", "ingest"], **s3_env).returncode == 0
    output, recorded = raw_output(workspace)
    assert md5(output) == recorded
    pushed = run(workspace, ["dvc", "push", "--run-cache"], **s3_env)
    assert pushed.returncode == 0, pushed.stderr
    prefix = s3_env["DVC_REMOTE_URL"].removeprefix(f"s3://{registry_stack.bucket}/")
    listed = bucket.client(registry_stack.s3_endpoint).list_objects_v2(
        Bucket=registry_stack.bucket, Prefix=f"{prefix}/"
    )
    assert listed["KeyCount"] >= 1

    # A second copy, as a fresh runner has it: the output comes back from S3, byte for byte.
    runner = repository_copy(tmp_path / "runner")
    assert make_remote(runner, **s3_env).returncode == 0
    pulled = run(runner, ["dvc", "pull", "ingest"], **s3_env)
    assert pulled.returncode == 0, pulled.stderr
    output, recorded = raw_output(runner)
    assert md5(output) == recorded


def test_a_remote_without_the_locked_outputs_fails_the_pull(
    tmp_path: Path, repository_copy: Callable[[Path], Path], s3_env: dict[str, str]
) -> None:
    """What deploy relies on to never retrain: dvc pull fails and names what is missing."""
    runner = repository_copy(tmp_path / "runner")
    assert make_remote(runner, **s3_env).returncode == 0
    pulled = run(runner, ["dvc", "pull", "ingest"], **s3_env)
    assert pulled.returncode != 0
    assert "data/raw/credit.csv" in pulled.stderr + pulled.stdout
    assert not raw_output(runner)[0].exists()


def test_without_the_variable_the_default_remote_stays(
    tmp_path: Path, repository_copy: Callable[[Path], Path]
) -> None:
    workspace = repository_copy(tmp_path / "repo")
    done = make_remote(workspace)
    assert done.returncode == 0, done.stderr
    assert "DVC_REMOTE_URL is not set" in done.stdout
    assert not (workspace / ".dvc" / "config.local").exists()


def test_an_unsupported_remote_is_an_error_that_names_it(
    tmp_path: Path, repository_copy: Callable[[Path], Path]
) -> None:
    workspace = repository_copy(tmp_path / "repo")
    done = make_remote(workspace, DVC_REMOTE_URL="ftp2://nowhere/x")
    assert done.returncode != 0
    assert "Unsupported URL type ftp2://" in done.stderr
    assert run(workspace, ["dvc", "remote", "default"]).stdout.strip() != "team"
