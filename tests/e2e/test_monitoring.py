"""The prediction log and the metrics with real servers: a real Prometheus scrapes the service,
and a server killed outright mid-load loses no acknowledged score from its log."""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import os
import shutil
import signal
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from credit_risk.monitoring.predictions import prediction_files, read_predictions
from credit_risk.schema import contract, example_record

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
ONE, MANY = contract().entity, contract().entity_plural
PROMETHEUS = shutil.which("prometheus")
SCRAPE_WAIT_SECONDS = 60
LOAD_SECONDS = 4.0
CLIENTS = 4


@pytest.fixture
def served(model_tag: str, local_server, tmp_path: Path) -> Iterator[tuple[str, Path, Any]]:
    """`bentoml serve` of the test model, its prediction log in a folder of the test's own."""
    log = tmp_path / "predictions"
    command = [
        "bentoml",
        "serve",
        "credit_risk.serving.service:CreditRiskService",
        "--arg",
        f"model_tag={model_tag}",
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
    ]
    server = local_server(
        command, ROOT, tmp_path / "serve.log", "/readyz",
        CREDIT_RISK_MODEL_TAG=None, CREDIT_RISK_PARAMS=str(ROOT / "params.yaml"),
        CREDIT_RISK_PREDICTION_LOG=str(log),
    )  # fmt: skip
    with server as base:
        yield base, log, server


def post(url: str, payload: object, request_id: str | None = None) -> tuple[int, dict[str, str]]:
    headers = {"Content-Type": "application/json"}
    if request_id:
        headers["X-Request-ID"] = request_id
    call = urllib.request.Request(url, json.dumps(payload).encode(), headers, method="POST")
    try:
        with urllib.request.urlopen(call, timeout=10) as answer:
            answer.read()
            return answer.status, dict(answer.headers.items())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers.items())


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.load(answer)


@pytest.mark.skipif(PROMETHEUS is None, reason="prometheus not installed (.ci/run installs it)")
def test_prometheus_scrapes_the_model_probability_by_version(
    served: tuple[str, Path, Any], model_tag: str, local_server, tmp_path: Path
) -> None:
    base, _, _ = served
    for _ in range(5):
        assert post(f"{base}/score", {ONE: example_record()})[0] == 200
    # The shipped configuration and rules, with this test's service as the only target.
    shipped = ROOT / "deploy" / "prometheus"
    config = yaml.safe_load((shipped / "prometheus.yml").read_text())
    targets = tmp_path / "targets.json"
    address = urllib.parse.urlsplit(base).netloc
    targets.write_text(json.dumps([{"targets": [address], "labels": {"environment": "test"}}]))
    config["global"]["scrape_interval"] = "1s"
    config["rule_files"] = [str(shipped / name) for name in config["rule_files"]]
    config["scrape_configs"][0]["file_sd_configs"] = [{"files": [str(targets)]}]
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    command = [str(PROMETHEUS), f"--config.file={config_file}",
               f"--storage.tsdb.path={tmp_path / 'tsdb'}",
               "--web.listen-address=127.0.0.1:{port}"]  # fmt: skip
    with local_server(command, tmp_path, tmp_path / "prometheus.log", "/-/ready") as prometheus:
        query = urllib.parse.quote('model_probability_count{environment="test"}')
        deadline, series = time.monotonic() + SCRAPE_WAIT_SECONDS, []
        while not series and time.monotonic() < deadline:
            series = get_json(f"{prometheus}/api/v1/query?query={query}")["data"]["result"]
            time.sleep(0.5)
        assert series, (tmp_path / "prometheus.log").read_text()[-2000:]
        labels = [entry["metric"] for entry in series]
        assert {label["model_version"] for label in labels} == {model_tag}
        assert sum(float(entry["value"][1]) for entry in series) >= 5
        groups = get_json(f"{prometheus}/api/v1/rules")["data"]["groups"]
        alerts = {rule["name"] for group in groups for rule in group["rules"]}
        assert {"ServiceErrors", "ScoringSlow", "ScoreDistributionShift"} <= alerts
        assert all(rule["health"] != "err" for g in groups for rule in g["rules"])


def test_a_killed_server_loses_no_acknowledged_score(served: tuple[str, Path, Any]) -> None:
    """Clients score throughout; the server and all its workers are SIGKILLed mid-load. The log
    reads without error and holds every request that was answered 200."""
    base, log, server = served
    acknowledged: set[str] = set()
    sent: set[str] = set()  # a request sent and never acknowledged is one the kill cut short
    killed, stop = threading.Event(), threading.Event()
    failures: list[BaseException] = []  # what no client expected: raised in the test's thread

    def client(number: int) -> None:
        try:
            score_until_stopped(number)
        except BaseException as problem:
            failures.append(problem)

    def score_until_stopped(number: int) -> None:
        for turn in itertools.count():
            if stop.is_set():
                return
            request_id = f"drill-{number}-{turn}"
            sent.add(request_id)
            batch = turn % 3 == 0
            path, payload = (
                ("/score_batch", {MANY: [example_record()] * 5})
                if batch
                else ("/score", {ONE: example_record()})
            )
            try:
                status, _ = post(f"{base}{path}", payload, request_id)
            except (OSError, http.client.HTTPException):
                # The kill refuses or resets connections (OSError) and cuts responses short
                # (http.client's IncompleteRead, not an OSError): the request stays
                # unacknowledged. Before the kill, the server failed under load.
                if killed.is_set():
                    return
                raise
            if status == 200:
                acknowledged.add(request_id)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    time.sleep(LOAD_SECONDS)
    # BentoML's workers run in sessions of their own: kill the whole tree, by pid, at once.
    root = psutil.Process(server.process.pid)
    family = [root, *root.children(recursive=True)]
    killed.set()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.process.pid, signal.SIGKILL)
    for process in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(family, timeout=10)
    stop.set()
    for thread in threads:
        thread.join(timeout=20)
    assert not any(thread.is_alive() for thread in threads), "a client hangs after the kill"
    if failures:
        raise failures[0]

    frame = read_predictions(log)
    logged = set(frame["request_id"])
    missing = acknowledged - logged
    in_flight = sent - acknowledged
    print(
        f"\ndurability drill: {len(acknowledged)} acknowledged, {len(logged)} logged "
        f"({len(logged & in_flight)} of {len(in_flight)} unanswered ones among them), "
        f"{len(missing)} acknowledged but missing; {len(prediction_files(log))} files"
    )
    assert len(acknowledged) >= 50, "too little load to mean anything"
    assert not missing
    assert logged <= sent
    # A batch is logged whole or (cut short by the kill) as its first rows, never out of order.
    rows = frame.groupby("request_id")["row"].apply(list)
    assert all(found == list(range(len(found))) for found in rows)
