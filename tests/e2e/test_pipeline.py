"""The whole pipeline, as a user runs it: `dvc repro` in a fresh copy of the repository."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml

from credit_risk.config import load_params
from credit_risk.reproducibility import compare_locks

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


QUEUE_SECONDS = 600  # two queued experiments on two workers take about a minute here


def sh(
    cwd: Path, *command: str, check: bool = True, unset: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.invalid",
    }
    for name in unset:
        env.pop(name, None)
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    return done


def post_json(url: str, payload: object) -> dict:
    body = json.dumps(payload).encode()
    call = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(call, timeout=30) as response:
        return dict(json.load(response))


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory: pytest.TempPathFactory, repository_copy) -> Path:
    """A fresh clone-like copy of the repository after one full `dvc repro`."""
    workspace = repository_copy(tmp_path_factory.mktemp("clone"))
    sh(workspace, "dvc", "repro")
    return workspace


def copy_of(workspace: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(workspace, target, symlinks=True)
    return target


def test_repro_produces_every_output(reproduced: Path) -> None:
    params = yaml.safe_load((reproduced / "params.yaml").read_text())
    for key in ("raw", "validated", "train", "test", "model", "model_info", "metrics", "fairness"):
        assert (reproduced / params["paths"][key]).is_file(), key
    metrics = json.loads((reproduced / params["paths"]["metrics"]).read_text())
    assert metrics["roc_auc"] >= params["gate"]["min_roc_auc"]
    figures = {p.name for p in (reproduced / params["paths"]["figures"]).iterdir()}
    assert {"roc.png", "calibration.png", "confusion_matrix.png"} <= figures


def test_repro_matches_the_committed_lock(reproduced: Path) -> None:
    """Same code, data and params: the data bit for bit, the model's numbers within tolerance.

    Fails when dvc.lock is stale (code, params or data changed and nobody reran `make repro`),
    not when this CPU's BLAS kernel trains a model file with other bytes.
    """
    committed = yaml.safe_load(sh(reproduced, "git", "show", "HEAD:dvc.lock").stdout)
    current = yaml.safe_load((reproduced / "dvc.lock").read_text())

    def read(path: str) -> bytes:
        shown = subprocess.run(["git", "show", f"HEAD:{path}"], cwd=reproduced, capture_output=True)
        if shown.returncode:
            raise FileNotFoundError(path)
        return shown.stdout

    problems = compare_locks(committed, current, load_params(reproduced / "params.yaml").paths,
                             reproduced, read)  # fmt: skip
    assert not problems, "dvc.lock is stale (run `make repro`, commit it):\n" + "\n".join(problems)


def test_second_repro_does_nothing(reproduced: Path) -> None:
    done = sh(reproduced, "dvc", "repro")
    assert "Data and pipelines are up to date." in done.stdout
    assert "Running stage" not in done.stdout


def test_corrupted_source_stops_at_validate(reproduced: Path, tmp_path: Path, roles) -> None:
    workspace = copy_of(reproduced, tmp_path)
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    model = workspace / params["paths"]["model"]
    metrics = workspace / params["paths"]["metrics"]
    before = model.read_bytes(), metrics.read_bytes()

    numeric, category = roles.bounded_numeric(), roles.first("categorical", str)
    frame = pd.read_csv(workspace / params["paths"]["raw"], dtype=str, keep_default_na=False)
    frame.loc[4, numeric] = str(roles.too_large(numeric))  # CSV line 6
    frame.loc[8, category] = "spaceship"  # CSV line 10
    frame.to_csv(workspace / "data/external/corrupt.csv", index=False)
    params["ingest"]["file"] = "data/external/corrupt.csv"
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    done = sh(workspace, "dvc", "repro", check=False)

    assert done.returncode != 0
    assert "validate stage failed" in done.stderr
    too_large = roles.too_large(numeric)
    assert f"column '{numeric}': less_than_or_equal_to(" in done.stderr
    assert f"fails for 1 row, e.g. line 6: '{too_large}'" in done.stderr
    assert f"column '{category}': isin(" in done.stderr and "line 10: 'spaceship'" in done.stderr
    assert "Running stage 'train'" not in done.stdout
    assert (model.read_bytes(), metrics.read_bytes()) == before
    report = json.loads((workspace / params["paths"]["validation_report"]).read_text())
    assert report["valid"] is False and len(report["problems"]) == 2


def test_experiment_with_a_changed_param(reproduced: Path, tmp_path: Path) -> None:
    workspace = copy_of(reproduced, tmp_path)
    sh(workspace, "dvc", "exp", "run", "-S", "train.logistic_regression.C=0.01")
    shown = json.loads(sh(workspace, "dvc", "exp", "show", "--json").stdout)
    experiments = [
        exp
        for commit in shown
        for exp in (commit.get("experiments") or [])
        for revision in exp.get("revs", [])
        if revision.get("data", {})
        .get("params", {})
        .get("params.yaml", {})
        .get("data", {})
        .get("train", {})
        .get("logistic_regression", {})
        .get("C")
        == 0.01
    ]
    assert experiments, shown


def test_mlflow_server_shows_the_tracked_run(
    reproduced: Path, isolated_mlflow: str, local_server, tmp_path: Path
) -> None:
    """An experiment run seen through `mlflow server`: params, train and test metrics, lineage."""
    workspace = copy_of(reproduced, tmp_path)
    sh(workspace, "dvc", "exp", "run", "-S", "train.logistic_regression.C=0.05")
    command = ["mlflow", "server", "--backend-store-uri", isolated_mlflow,
               "--host", "127.0.0.1", "--port", "{port}", "--workers", "1"]  # fmt: skip
    with local_server(command, workspace, tmp_path / "mlflow.log", "/health") as server:
        base = f"{server}/api/2.0/mlflow"
        experiment_name = load_params(workspace / "params.yaml").tracking.experiment
        found = post_json(
            f"{base}/experiments/search",
            {"filter": f"name = '{experiment_name}'", "max_results": 10},
        )
        (experiment,) = found["experiments"]
        ids = [experiment["experiment_id"]]
        runs = post_json(f"{base}/runs/search", {"experiment_ids": ids, "max_results": 100})["runs"]
        (run,) = [
            r for r in runs
            if {"key": "train.logistic_regression.C", "value": "0.05"} in r["data"]["params"]
        ]  # fmt: skip
        metrics = {m["key"] for m in run["data"]["metrics"]}
        assert {"train_roc_auc", "test_roc_auc"} <= metrics
        assert any(name.startswith("gap_") for name in metrics)
        tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
        assert len(tags["lineage.git_commit"]) == 40
        assert tags["lineage.train_data_md5"] and tags["lineage.model_md5"]


def test_queued_parallel_experiments_land_in_the_project_store(
    reproduced: Path, tmp_path: Path
) -> None:
    """`dvc exp run --queue` + `dvc queue start -j 2` run in temporary copies that DVC deletes;
    their MLflow runs must land in the project's own default store all the same."""
    workspace = copy_of(reproduced, tmp_path)
    default_store = ("MLFLOW_TRACKING_URI",)  # the project's own mlruns/, as a user has it
    values = ("0.05", "0.5")
    for value in values:
        sh(workspace, "dvc", "exp", "run", "--queue", "-S",
           f"train.logistic_regression.C={value}", unset=default_store)  # fmt: skip
    sh(workspace, "dvc", "queue", "start", "-j", "2", unset=default_store)
    try:
        deadline = time.monotonic() + QUEUE_SECONDS
        while True:
            status = sh(workspace, "dvc", "queue", "status", unset=default_store).stdout
            if not re.search(r"\b(Queued|Running)\b", status):
                break
            assert time.monotonic() < deadline, f"queue still busy:\n{status}"
            time.sleep(3)
        assert status.count("Success") >= 2, status
    finally:
        sh(workspace, "dvc", "queue", "stop", "--kill", check=False, unset=default_store)
    store = workspace / "mlruns" / "mlflow.db"
    assert store.is_file(), "no MLflow store in the project"
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{store}")
    experiment = client.get_experiment_by_name(
        load_params(workspace / "params.yaml").tracking.experiment
    )
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    by_value = {run.data.params.get("train.logistic_regression.C"): run for run in runs}
    for value in values:
        assert value in by_value, sorted(by_value)
        assert "test_roc_auc" in by_value[value].data.metrics  # evaluate found its run too
