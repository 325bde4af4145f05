"""`make monitor` end to end: a prediction log on disk (written by the log's own writer), read
through the log's reader, judged, three reports written; exit 1 with the reasons on an alarm."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from monitor_windows import drill_shift

from credit_risk.config import Params
from credit_risk.errors import ConfigError
from credit_risk.files import write_json
from credit_risk.monitoring import job
from credit_risk.monitoring.predictions import LOG_VARIABLE, logged_features
from credit_risk.monitoring.simulate import Model, write_log, write_outcomes
from credit_risk.schema import positive_labels
from credit_risk.stage import run
from credit_risk.synthetic import Shift, generate

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def workspace(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    params: Params,
    reference: pd.DataFrame,
    baseline: dict[str, float],
    model: Model,
) -> Path:
    """A folder with the repository's params.yaml, the reference rows, the evaluation's metrics
    and the model's info where params.yaml says; the tests run in it."""
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    paths = params.paths
    (tmp_path / paths.train).parent.mkdir(parents=True, exist_ok=True)
    reference.to_parquet(tmp_path / getattr(paths, params.monitor.reference))
    write_json(tmp_path / paths.metrics, baseline)
    write_json(tmp_path / paths.model_info, model.info)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(LOG_VARIABLE, raising=False)
    return tmp_path


def log_rows(
    folder: Path,
    params: Params,
    model: Model,
    source: pd.DataFrame,
    rows: int,
    seed: int,
    end: datetime,
    shift: dict[str, Shift] | None = None,
    outcomes: float = 0.0,
) -> pd.DataFrame:
    frame = generate(source, rows, seed, shift)
    keep = params.serve.prediction_log.keep_attributes
    features = logged_features(params.evaluate.protected_attributes, keep)
    keys = write_log(folder, frame, model, features, end, days=1, batch=50, prefix=f"t{seed}")
    write_outcomes(folder, keys, positive_labels(frame), outcomes, 0.0, seed, end)
    return frame


def reports(params: Params) -> tuple[dict, str, str]:
    settings = params.monitor
    verdict = json.loads(settings.report.read_text())
    return verdict, settings.html.read_text(), settings.summary.read_text()


def test_a_quiet_window_passes_and_writes_three_reports(workspace, params, model, source) -> None:
    folder = workspace / "log"
    now = datetime.now(UTC)
    log_rows(folder, params, model, source, 600, seed=31, end=now, outcomes=0.7)
    job.main(["--log", str(folder)])
    verdict, page, summary = reports(params)
    assert verdict["alarm"] is False and verdict["reasons"] == []
    assert verdict["rows"] == 600
    assert verdict["model_versions"] == {"simulated": 600}
    assert verdict["drift"]["status"] == "judged"
    assert verdict["performance"]["status"] == "judged"
    assert verdict["performance"]["outcomes"] > params.monitor.performance.min_outcomes
    by_version = verdict["by_model_version"]
    assert by_version["versions"]["simulated"]["status"] == "judged"
    # The workspace has the evaluation's metrics but not the model files they measured.
    assert by_version["baseline_model_version"] is None
    assert "| `simulated` |" in summary and "<code>simulated</code>" in page
    left_out = set(params.evaluate.protected_attributes) - set(
        params.serve.prediction_log.keep_attributes
    )
    assert set(verdict["drift"]["not_logged"]) == left_out
    assert "no alarm" in summary and "<html" in page


def test_drift_raises_the_alarm_and_exits_1_naming_the_reasons(
    workspace, params, model, source, roles, capsys
) -> None:
    numeric = roles.first("numeric")
    categorical = roles.first("categorical")
    kept = logged_features(
        params.evaluate.protected_attributes, params.serve.prediction_log.keep_attributes
    )
    if categorical not in kept:
        categorical = next(n for n in roles.features("categorical") if n in kept)
    shift = drill_shift(source, numeric, categorical)
    folder = workspace / "log"
    log_rows(folder, params, model, source, 500, seed=32, end=datetime.now(UTC), shift=shift)
    with pytest.raises(SystemExit) as stop:
        run("monitor", lambda: job.main(["--log", str(folder)]))
    assert stop.value.code == 1
    message = capsys.readouterr().err
    assert "alarm" in message and numeric in message and categorical in message
    verdict, _, summary = reports(params)
    assert verdict["alarm"] is True
    assert {numeric, categorical} <= set(verdict["drift"]["drifted"])
    assert verdict["performance"]["status"] == "too_few_outcomes"  # none were given
    assert "alarm" in summary


def test_the_window_selects_by_time_and_too_few_rows_is_an_alarm(
    workspace, params, model, source
) -> None:
    folder = workspace / "log"
    old = datetime.now(UTC) - timedelta(days=params.monitor.window_days + 3)
    log_rows(folder, params, model, source, 300, seed=33, end=old)
    with pytest.raises(job.MonitorAlarmError, match="only 0 predictions"):
        job.main(["--log", str(folder)])
    since = (old - timedelta(days=2)).date().isoformat()
    until = (old + timedelta(days=1)).isoformat()
    job.main(["--log", str(folder), "--since", since, "--until", until])
    verdict, _, _ = reports(params)
    assert verdict["rows"] == 300 and not verdict["alarm"]
    assert verdict["window"]["since"].startswith(since)


def test_the_log_folder_comes_from_params_by_default(workspace, params, model, source) -> None:
    folder = workspace / params.serve.prediction_log.folder
    log_rows(folder, params, model, source, 300, seed=34, end=datetime.now(UTC))
    job.main([])
    verdict, _, _ = reports(params)
    assert verdict["rows"] == 300 and verdict["log"] == str(params.serve.prediction_log.folder)


def test_an_environment_on_the_local_target_is_judged_from_its_own_log(
    workspace, params, model, source
) -> None:
    """--env reads .deploy/<env>/predictions/, where the local target's releases log."""
    (workspace / "deploy").mkdir()
    for name in ("staging", "production"):
        text = (ROOT / "deploy" / f"{name}.yaml").read_text()
        target = "kubernetes" if name == "production" else "local"
        text = re.sub(r"(?m)^target: \w+", f"target: {target}", text)
        (workspace / "deploy" / f"{name}.yaml").write_text(text)
    with pytest.raises(ConfigError, match="is it deployed"):
        job.main(["--env", "staging"])
    folder = workspace / ".deploy" / "staging" / "predictions"
    log_rows(folder, params, model, source, 300, seed=37, end=datetime.now(UTC))
    job.main(["--env", "staging"])
    verdict, _, _ = reports(params)
    assert verdict["rows"] == 300 and verdict["log"].startswith("environment staging")
    with pytest.raises(ConfigError, match="kubernetes target"):
        job.main(["--env", "production"])
    with pytest.raises(ConfigError, match="unknown environment 'prod'"):
        job.main(["--env", "prod"])
    with pytest.raises(SystemExit) as stop:  # one log at a time
        job.main(["--env", "staging", "--log", str(folder)])
    assert stop.value.code == 2


def test_a_missing_log_or_a_backward_window_is_a_clear_error(workspace) -> None:
    with pytest.raises(ConfigError, match="no prediction log"):
        job.main(["--log", str(workspace / "nowhere")])
    (workspace / "log").mkdir()
    with pytest.raises(ConfigError, match="--since"):
        job.main(["--log", "log", "--since", "2026-03-02", "--until", "2026-03-01"])
    with pytest.raises(SystemExit) as stop:
        job.main(["--since", "yesterday-ish"])
    assert stop.value.code == 2


@pytest.mark.slow
def test_the_command_exits_1_on_an_alarm_and_0_without(workspace, params, model, source) -> None:
    folder = workspace / "log"
    log_rows(folder, params, model, source, 50, seed=35, end=datetime.now(UTC))
    command = [sys.executable, "-m", "credit_risk.monitoring.job", "--log", str(folder)]
    alarmed = subprocess.run(command, cwd=workspace, capture_output=True, text=True)
    assert alarmed.returncode == 1, alarmed.stderr
    assert re.search(r"alarm: only 50 predictions", alarmed.stderr)
    log_rows(folder, params, model, source, 400, seed=36, end=datetime.now(UTC))
    quiet = subprocess.run(command, cwd=workspace, capture_output=True, text=True)
    assert quiet.returncode == 0, quiet.stderr
