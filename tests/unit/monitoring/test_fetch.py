"""`make fetch-log`: a window of a log kept in another place (a folder, S3) copied here, new
files only; then the monitor reads it as it reads a local log."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pandas as pd
import pytest

from credit_risk.config import Params
from credit_risk.errors import ConfigError
from credit_risk.monitoring.fetch import fetch, main
from credit_risk.monitoring.predictions import read_outcomes, read_predictions
from credit_risk.monitoring.simulate import Model, write_log, write_outcomes
from credit_risk.schema import feature_columns, positive_labels
from credit_risk.synthetic import generate

NOW = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)


def files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture
def remote_log(tmp_path: Path, model: Model, source: pd.DataFrame) -> Path:
    """A log with a day long ago, two recent days and outcomes for some of each."""
    folder = tmp_path / "remote"
    features = feature_columns()
    for days_ago, seed in ((30, 61), (2, 62), (1, 63)):
        frame = generate(source, 200, seed)
        end = NOW - timedelta(days=days_ago)
        keys = write_log(folder, frame, model, features, end, days=0.5, batch=50,
                         prefix=f"f{seed}")  # fmt: skip
        write_outcomes(folder, keys, positive_labels(frame), 0.3, 0.0, seed, end)
    return folder


def test_the_window_and_every_outcome_are_copied_and_a_second_fetch_copies_only_news(
    tmp_path: Path, remote_log: Path, model: Model, source: pd.DataFrame
) -> None:
    here = tmp_path / "here"
    window = (NOW - timedelta(days=7), NOW)
    done = fetch(str(remote_log), here, window)
    everything = files(remote_log)
    got = files(here)
    old_day = (NOW - timedelta(days=30)).date().isoformat()
    assert not any(old_day in name for name in got if not name.startswith("outcomes"))
    assert {n for n in everything if n.startswith("outcomes")} <= set(got)  # every outcome
    assert all(got[name] == everything[name] for name in got)  # byte for byte
    assert done.copied == len(got) and done.skipped == 0
    assert len(read_predictions(here, *window)) == 400  # the two recent days
    assert len(read_outcomes(here)) == len(read_outcomes(remote_log))

    # The service goes on logging: the next fetch copies what grew, and skips the rest.
    more = generate(source, 50, 64)
    write_log(remote_log, more, model, feature_columns(), NOW, days=0.1, batch=50, prefix="f64")
    again = fetch(str(remote_log), here, window)
    assert again.copied >= 1 and again.skipped >= 1
    assert len(read_predictions(here, *window)) == 450
    assert not list(here.rglob("*.tmp"))  # no half file left behind


def test_the_outcome_horizon_takes_every_day_an_outcome_may_name(
    tmp_path: Path, remote_log: Path, params: Params
) -> None:
    """What retrain-data needs: an outcome received today may name a score of long ago."""
    assert params.serve.prediction_log.max_outcome_age_days > 30  # the fixture's oldest day
    here = tmp_path / "here"
    main([str(remote_log), str(here), "--outcome-horizon"])
    assert files(here) == files(remote_log)


def test_a_location_that_is_not_a_log_is_a_clear_error(tmp_path: Path) -> None:
    window = (NOW - timedelta(days=7), NOW)
    with pytest.raises(ConfigError, match="no prediction log there"):
        fetch(str(tmp_path / "nowhere"), tmp_path / "here", window)
    with pytest.raises(ConfigError, match="not a log location this machine can read"):
        fetch("nosuchfs://bucket/log", tmp_path / "here", window)
    with pytest.raises(SystemExit) as stop:
        main([str(tmp_path), str(tmp_path / "here"), "--since", "not-a-date"])
    assert stop.value.code == 2


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A real S3-compatible server (moto's) on a free loopback port, stopped after the test."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for name, value in {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    try:
        yield endpoint
    finally:
        server.stop()


def test_a_log_in_s3_is_fetched_as_from_a_folder(
    tmp_path: Path, remote_log: Path, s3_endpoint: str
) -> None:
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket="logs")
    for path in remote_log.rglob("*"):
        if path.is_file():
            key = f"production/predictions/{path.relative_to(remote_log).as_posix()}"
            s3.upload_file(str(path), "logs", key)
    window = (NOW - timedelta(days=7), NOW)
    from_s3 = tmp_path / "from-s3"
    fetch("s3://logs/production/predictions", from_s3, window)
    from_folder = tmp_path / "from-folder"
    fetch(str(remote_log), from_folder, window)
    assert files(from_s3) == files(from_folder)
    with pytest.raises(ConfigError, match="no prediction log there"):
        fetch("s3://logs/staging/predictions", tmp_path / "x", window)
