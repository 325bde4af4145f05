"""Environment files and the deploy commands' bookkeeping: what is recorded, and when."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from credit_risk.config import Params
from credit_risk.deploy.environments import (
    Release,
    environment_names,
    load_environment,
    write_release,
)
from credit_risk.deploy.releases import Context, deploy, history, rollback, status_table
from credit_risk.errors import ConfigError, CreditRiskError
from credit_risk.registry.client import RegistryError

ROOT = Path(__file__).resolve().parents[3]
A = Release(bento="credit-risk:aaaa", model_tag="credit-risk:0123456789abcdef", model_version=1)
B = Release(bento="credit-risk:bbbb", model_tag="credit-risk:fedcba9876543210", model_version=2)


@pytest.fixture
def environments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git repository holding a copy of deploy/*.yaml; the working directory for the test."""
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy", ignore=shutil.ignore_patterns("*/"))
    monkeypatch.chdir(tmp_path)
    git("init", "-q", "-b", "main")
    commit("environments")
    return tmp_path / "deploy"


def git(*args: str) -> None:
    identity = ["-c", "user.name=test", "-c", "user.email=test@example.invalid"]
    subprocess.run(["git", *identity, *args], check=True, capture_output=True)


def commit(message: str) -> None:
    git("add", "-A")
    git("commit", "-q", "-m", message)


def test_the_shipped_environments_are_staging_then_production() -> None:
    assert environment_names(ROOT / "deploy") == ["staging", "production"]
    for name in environment_names(ROOT / "deploy"):
        load_environment(name, ROOT / "deploy")


def test_writing_a_release_keeps_the_comments_and_reads_back(environments: Path) -> None:
    before = (environments / "staging.yaml").read_text(encoding="utf-8")
    write_release("staging", A, environments)
    after = (environments / "staging.yaml").read_text(encoding="utf-8")
    assert load_environment("staging", environments).release == A
    # The change is the release block and nothing else: every other line, comments and nulls
    # included, is as it was (a promotion's diff shows just what moved).
    written = [f"  {key}: {value}" for key, value in A.model_dump().items()]
    expected = before.replace("release: null\n", "release:\n" + "\n".join(written) + "\n")
    assert after == expected
    assert load_environment("production", environments).release is None


def test_a_comment_beside_a_null_release_moves_below_the_block(environments: Path) -> None:
    path = environments / "staging.yaml"
    path.write_text(path.read_text().replace("release: null\n", "release: null  # here\n"))
    write_release("staging", A, environments)
    text = path.read_text()
    assert re.search(rf"(?m)^  model_version: {A.model_version} +# here$", text)
    assert load_environment("staging", environments).release == A


def test_an_unknown_environment_names_the_known_ones(environments: Path) -> None:
    with pytest.raises(
        ConfigError, match="unknown environment 'prod'; environments: staging, production"
    ):
        load_environment("prod", environments)


def test_a_bad_setting_is_named_by_its_key(environments: Path) -> None:
    path = environments / "staging.yaml"
    path.write_text(path.read_text().replace("port: 8101", "port: 80"), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"local\.port"):
        load_environment("staging", environments)


def test_history_lists_the_committed_releases_newest_first(
    environments: Path, params: Params
) -> None:
    write_release("production", A, environments)
    commit("production: A")
    write_release("production", B, environments)
    commit("production: B")
    context = Context(params, folder=Path("deploy"))
    assert history("production", context) == [B, A]
    assert history("staging", context) == []


def test_rollback_without_an_earlier_release_says_so(environments: Path, params: Params) -> None:
    write_release("staging", A, environments)
    commit("staging: A")
    with pytest.raises(CreditRiskError, match="git records no earlier release of staging"):
        rollback("staging", Context(params, folder=Path("deploy")))


def test_an_unreachable_registry_stops_a_deploy_before_anything_moves(
    environments: Path, params: Params, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_release("staging", A, environments)
    commit("staging: A")
    before = (environments / "staging.yaml").read_bytes()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    runtime = environments.parent / ".deploy"
    with pytest.raises(RegistryError, match="does not answer"):
        deploy("staging", None, Context(params, folder=Path("deploy"), runtime=runtime))
    assert (environments / "staging.yaml").read_bytes() == before
    assert not runtime.exists()  # no target was started


def test_deploying_nothing_asks_for_a_bento(environments: Path, params: Params) -> None:
    with pytest.raises(ConfigError, match="has no release yet; give the bento"):
        deploy("staging", None, Context(params, folder=Path("deploy")))


def test_status_reports_a_registry_that_does_not_answer_and_flags_what_git_wants(
    environments: Path, params: Params, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_release("staging", A, environments)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    runtime = environments.parent / ".deploy"
    table, agreed = status_table(Context(params, folder=Path("deploy"), runtime=runtime))
    assert not agreed
    rows = {line.split()[0]: line for line in table.splitlines()[1:]}
    assert "does not answer" in rows["staging"] and "DRIFT: target differs" in rows["staging"]
    assert rows["production"].endswith("in sync")  # nothing wanted, nothing running
