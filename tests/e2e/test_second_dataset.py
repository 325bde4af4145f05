"""The template on a second, differently shaped data set: adopt it, then run everything.

In a fresh copy of the repository, `python -m credit_risk.adopt` takes a generated customer-churn
file (another target name and type, boolean and integer-coded categories, fractional ages,
column names that are not Python identifiers, twice the rows). Then, with no other edit: the
pipeline runs, the test suite (every test that follows the contract) passes on it, and the
service serves it in the contract's words.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
ADOPT = [
    *("--target", "churned", "--positive", "yes", "--protected", "gender", "--protected", "age"),
    *("--entity", "customer", "--decisions", "contact", "keep"),
]
MAX_FILES_TOUCHED = 4  # params.yaml plus three files, the goal for a new data set


def sh(workspace: Path, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command against the workspace's own package (its contract, its params)."""
    env = {
        **os.environ,
        "PYTHONPATH": str(workspace / "src"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    done = subprocess.run(command, cwd=workspace, env=env, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        )
    return done


@pytest.fixture(scope="module")
def adopted(tmp_path_factory: pytest.TempPathFactory, churn_writer, repository_copy) -> Path:
    """A fresh copy of the repository that adopted the churn data and ran `dvc repro`."""
    workspace = repository_copy(tmp_path_factory.mktemp("adopted"))
    data = churn_writer(tmp_path_factory.mktemp("elsewhere") / "churn.csv")
    done = sh(workspace, sys.executable, "-m", "credit_risk.adopt", "--data", str(data), *ADOPT)
    assert "Review before you commit" in done.stdout
    sh(workspace, "dvc", "repro")
    return workspace


def test_adopting_touches_params_and_at_most_three_files(adopted: Path) -> None:
    # dvc.lock, reports/ and the Kubernetes manifests are generated (by dvc repro, and by adopt
    # through `make manifests`): only what a person wrote or should review counts.
    generated = (":!dvc.lock", ":!reports", ":!deploy/kubernetes")
    status = sh(adopted, "git", "status", "--porcelain", "--", ".", *generated)
    touched = sorted(line[3:] for line in status.stdout.splitlines())
    assert touched == ["data/external/churn.csv", "params.yaml", "src/credit_risk/contract.yaml"]
    assert len(touched) <= MAX_FILES_TOUCHED


def test_the_manifests_follow_the_adopted_name(adopted: Path) -> None:
    name = yaml.safe_load((adopted / "params.yaml").read_text())["serve"]["model_name"]
    deployment = yaml.safe_load((adopted / "deploy/kubernetes/base/deployment.yaml").read_text())
    assert deployment["metadata"]["name"] == name
    sh(adopted, sys.executable, "-m", "credit_risk.deploy.kubernetes", "check")


def test_the_pipeline_runs_on_the_adopted_data(adopted: Path) -> None:
    params = yaml.safe_load((adopted / "params.yaml").read_text())
    paths = params["paths"]
    metrics = json.loads((adopted / paths["metrics"]).read_text())
    assert metrics["roc_auc"] >= params["gate"]["min_roc_auc"]
    assert json.loads((adopted / paths["validation_report"]).read_text())["valid"] is True
    fairness = json.loads((adopted / paths["fairness"]).read_text())
    assert set(fairness) == {"gender", "age_band"}
    assert sh(adopted, "dvc", "repro").stdout.count("Running stage") == 0


def test_the_contract_following_tests_pass_on_the_adopted_data(adopted: Path) -> None:
    done = sh(adopted, sys.executable, "-m", "pytest", "-m", "not slow", "-q", "-p",
              "no:cacheprovider", check=False)  # fmt: skip
    summary = done.stdout.strip().splitlines()[-1]
    assert done.returncode == 0, done.stdout[-6000:]
    assert " passed" in summary and "failed" not in summary, summary


def call(url: str, payload: object | None = None) -> tuple[int, dict]:
    body = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


@pytest.fixture(scope="module")
def served(adopted: Path, local_server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tag = sh(adopted, sys.executable, "-m", "credit_risk.serving.model_store", "--from-pipeline")
    command = ["bentoml", "serve", "credit_risk.serving.service:CreditRiskService",
               "--host", "127.0.0.1", "--port", "{port}"]  # fmt: skip
    log_file = tmp_path_factory.mktemp("serve-adopted") / "serve.log"
    with local_server(command, adopted, log_file, "/readyz", PYTHONPATH=str(adopted / "src"),
                      CREDIT_RISK_MODEL_TAG=tag.stdout.strip(),
                      CREDIT_RISK_PARAMS=str(adopted / "params.yaml")) as base:  # fmt: skip
        yield base


def test_the_service_speaks_the_adopted_contract(served: str, adopted: Path) -> None:
    contract = yaml.safe_load((adopted / "src/credit_risk/contract.yaml").read_text())
    example = contract["example"]
    status, body = call(f"{served}/score", {"customer": example})
    assert status == 200, body
    assert 0.0 <= body["probability_yes"] <= 1.0
    assert body["decision"] in {"contact", "keep"}
    status, body = call(f"{served}/score_batch", {"customers": [example, example]})
    assert status == 200 and len(body["scores"]) == 2
    status, body = call(f"{served}/score", {"customer": {**example, "class": "gold"}})
    assert status == 400 and "class" in json.dumps(body)
    status, body = call(f"{served}/score", {"customer": {**example, "is_senior": 1}})
    assert status == 400 and "is_senior" in json.dumps(body)
    status, body = call(f"{served}/score", {"applicant": example})
    assert status == 400 and "customer" in json.dumps(body)
