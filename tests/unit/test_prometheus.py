"""deploy/prometheus: the configuration and the alert rules pass promtool's checks, the alerts
fire on the made-up series of alerts-test.yml, and every environment's replicas are scraped."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from credit_risk.deploy.environments import environment_names
from credit_risk.deploy.local import SCRAPE_TARGETS_FILE

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "deploy" / "prometheus"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian package prometheus; .ci/run has it)"
)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=FOLDER, capture_output=True, text=True, timeout=60, check=False
    )


@needs_promtool
@pytest.mark.parametrize(
    "command",
    [
        ("check", "config", "prometheus.yml"),
        ("check", "rules", "alerts.yml"),
        ("test", "rules", "alerts-test.yml"),
    ],
)
def test_promtool_accepts_it(command: tuple[str, ...]) -> None:
    done = promtool(*command)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_environment_is_scraped() -> None:
    config = yaml.safe_load((FOLDER / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    files = [name for sd in job["file_sd_configs"] for name in sd["files"]]
    expected = [f"../../.deploy/{name}/{SCRAPE_TARGETS_FILE}" for name in environment_names()]
    assert sorted(files) == sorted(expected)
    assert config["rule_files"] == ["alerts.yml"]
