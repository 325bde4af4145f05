"""`bentoml build`: a self-contained bento (its model, settings, hashed packages, container
recipe) that `bentoml serve <bento>` runs with nothing else."""

from __future__ import annotations

import json
import os
import re
import urllib.request
from pathlib import Path

import bentoml
import pytest
import yaml

from credit_risk.errors import CreditRiskError
from credit_risk.schema import contract, example_record
from credit_risk.serving.api_models import probability_field
from credit_risk.serving.bento import build, pinned_model

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
PIPELINE_ONLY = {"mlflow", "dvc", "matplotlib", "pytest", "fairlearn", "ruff", "mypy"}


@pytest.fixture(scope="module")
def bento(model_tag: str, params) -> Path:
    previous = Path.cwd()
    try:
        os.chdir(ROOT)  # the build context: pyproject.toml's [tool.bentoml.build]
        tag = build(model_tag, params.serve)
    finally:
        os.chdir(previous)
    assert pinned_model(tag) == model_tag
    return Path(bentoml.get(tag).path)


def test_the_bento_carries_its_model_and_settings(bento: Path, model_tag: str, params) -> None:
    info = yaml.safe_load((bento / "bento.yaml").read_text())
    assert info["args"] == {"model_tag": model_tag, "serve": params.serve.model_dump()}
    assert (bento / "src" / "credit_risk" / "contract.yaml").is_file()
    assert (bento / "src" / "credit_risk" / "serving" / "service.py").is_file()


def test_only_hash_pinned_serving_packages(bento: Path) -> None:
    requirements = (bento / "env" / "python" / "requirements.txt").read_text()
    pins = {line.split("==")[0] for line in requirements.splitlines() if "==" in line}
    assert {"scikit-learn", "pandas", "pandera", "bentoml"} <= pins
    assert not PIPELINE_ONLY & pins, "pipeline/dev packages leaked"
    hashed = re.findall(r"^([A-Za-z0-9_.-]+)==\S+ \\\n\s+--hash=sha256:", requirements, re.M)
    assert set(hashed) == pins, sorted(pins - set(hashed))  # every package pinned with its hash


def test_the_container_recipe_installs_only_those_packages(bento: Path) -> None:
    dockerfile = (bento / "env" / "docker" / "Dockerfile").read_text()
    (base,) = re.findall(r"^FROM (\S+)", dockerfile, re.M)
    assert ":" in base and not base.endswith(":latest"), base
    assert "env/python/requirements.txt" in dockerfile
    assert "ENTRYPOINT" in dockerfile


def test_bentoml_serve_needs_nothing_but_the_bento(
    bento: Path, model_tag: str, local_server, tmp_path: Path
) -> None:
    tag = f"{bento.parent.name}:{bento.name}"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    command = ["bentoml", "serve", tag, "--host", "127.0.0.1", "--port", "{port}"]
    unset = {"CREDIT_RISK_MODEL_TAG": None, "CREDIT_RISK_PARAMS": None}
    with local_server(command, elsewhere, tmp_path / "serve.log", "/readyz", **unset) as base:
        body = json.dumps({contract().entity: example_record()}).encode()
        call = urllib.request.Request(
            f"{base}/score", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(call, timeout=30) as response:
            answer = json.load(response)
    assert answer["model_version"] == model_tag
    assert 0 <= answer[probability_field()] <= 1


def test_unknown_bento_is_a_clear_error() -> None:
    with pytest.raises(CreditRiskError, match="no bento no-such-bento:nope"):
        pinned_model("no-such-bento:nope")
