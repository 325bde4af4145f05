"""`bentoml build`: a self-contained bento (its model, settings, hashed packages, container
recipe) that `bentoml serve <bento>` runs with nothing else."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import urllib.request
from pathlib import Path

import bentoml
import pytest
import yaml

from credit_risk.errors import CreditRiskError
from credit_risk.schema import contract, example_record
from credit_risk.serving.api_models import probability_field
from credit_risk.serving.bento import SERVICE_MODULE, build, pinned_model

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
PIPELINE_ONLY = {"mlflow", "dvc", "matplotlib", "pytest", "fairlearn", "ruff", "mypy"}
UV = (
    shutil.which("uv", path=str(Path(sys.executable).parent)) or "uv"
)  # as requirements.lock pins it


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
    assert info["args"] == {
        "model_tag": model_tag,
        "serve": params.serve.model_dump(mode="json"),
        "protected_attributes": list(params.evaluate.protected_attributes),
    }
    assert (bento / "src" / "credit_risk" / "contract.yaml").is_file()
    assert (bento / "src" / "credit_risk" / "serving" / "service.py").is_file()


def pins(requirements: str) -> dict[str, tuple[str, frozenset[str]]]:
    """name: (version, hashes) for each ``name==version`` of a requirements file."""
    found: dict[str, tuple[str, frozenset[str]]] = {}
    for entry in re.split(r"\n(?=[A-Za-z0-9])", requirements):
        pin = re.match(r"([A-Za-z0-9_.-]+)==([^\s\\;]+)", entry)
        if pin:
            name = re.sub(r"[-_.]+", "-", pin[1]).lower()
            hashes = frozenset(re.findall(r"--hash=sha256:([0-9a-f]{64})", entry))
            if name in found:  # a repeated pin must agree, and adds its hashes
                assert found[name][0] == pin[2], entry
                hashes |= found[name][1]
            found[name] = (pin[2], hashes)
    return found


def test_the_bento_installs_exactly_the_hashed_serving_lock(bento: Path) -> None:
    bundled = (bento / "env" / "python" / "requirements.txt").read_text()
    locked = pins((ROOT / "requirements-serve.lock").read_text())
    assert {"scikit-learn", "pandas", "pandera", "bentoml"} <= locked.keys()
    assert not PIPELINE_ONLY & locked.keys(), "pipeline/dev packages in the serving lock"
    assert all(hashes for _, hashes in locked.values()), "a serving pin without hashes"
    # The same packages, versions and hashes. BentoML appends its own pin (`bentoml==<its
    # version>`, without hashes): it must name the locked version, whose hashes then apply.
    assert pins(bundled) == locked
    assert bundled.rstrip().splitlines()[-1] == f"bentoml=={locked['bentoml'][0]}"


def run_commands(dockerfile: str) -> list[str]:
    """The Dockerfile's RUN commands, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", dockerfile)
    return [line[4:].strip() for line in joined.splitlines() if line.startswith("RUN ")]


def test_the_container_recipe_installs_only_the_bento_requirements(bento: Path) -> None:
    dockerfile = (bento / "env" / "docker" / "Dockerfile").read_text()
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["bentoml"]["build"]
    (base,) = re.findall(r"^FROM (\S+)", dockerfile, re.M)
    assert base == settings["docker"]["base_image"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+", base), "base image not pinned"
    installs = [command for command in run_commands(dockerfile) if "install" in command]
    python = [command for command in installs if "pip install" in command]
    # BentoML's recipe: uv when the image has none (the one package not from the lock: BentoML
    # writes this line whatever the options), then the bento's requirements, nothing else.
    assert python[0] == "command -v uv >/dev/null || pip install uv", python
    assert len(python) == 2 and python[1].endswith(
        "pip install -r $BENTO_PATH/env/python/requirements.txt"
    ), python
    assert not [c for c in run_commands(dockerfile) if "compile" in c or " lock" in c]
    assert re.search(r'^ENTRYPOINT \[ "[^"]+/env/docker/entrypoint.sh" \]', dockerfile, re.M)


@pytest.fixture(scope="module")
def serving_only(bento: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment with the bento's packages and nothing else, installed by the
    container recipe's own command (with uv from this environment, and its cache)."""
    venv = tmp_path_factory.mktemp("serving-only") / "venv"
    subprocess.run([UV, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    dockerfile = (bento / "env" / "docker" / "Dockerfile").read_text()
    (install,) = [c for c in run_commands(dockerfile) if c.endswith("python/requirements.txt")]
    env = {
        **os.environ,
        "PATH": f"{venv / 'bin'}{os.pathsep}{Path(UV).parent}{os.pathsep}/usr/bin:/bin",
        "VIRTUAL_ENV": str(venv),
        "BENTO_PATH": str(bento),
    }
    # From uv's cache (`make setup` filled it with these very files), else from the index.
    for attempt in ({**env, "UV_OFFLINE": "1"}, env):
        done = subprocess.run(
            ["bash", "-c", install], cwd=bento, env=attempt, capture_output=True, text=True
        )
        if done.returncode == 0:
            break
    assert done.returncode == 0, done.stderr[-3000:]
    return venv


def test_the_environment_holds_only_locked_packages(serving_only: Path) -> None:
    frozen = subprocess.run(
        [UV, "pip", "freeze", "--python", str(serving_only / "bin" / "python")],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    locked = pins((ROOT / "requirements-serve.lock").read_text())
    installed = {name: version for name, (version, _) in pins(frozen).items()}
    assert installed == {name: version for name, (version, _) in locked.items()}


def test_bentoml_serve_needs_nothing_but_the_bento(
    bento: Path, serving_only: Path, model_tag: str, local_server, tmp_path: Path
) -> None:
    """`bentoml serve <tag>` from the serving-only environment, in an unrelated folder, with
    none of the development variables: the bento alone says what to serve and how."""
    tag = f"{bento.parent.name}:{bento.name}"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    bentoml_cli = str(serving_only / "bin" / "bentoml")
    command = [bentoml_cli, "serve", tag, "--host", "127.0.0.1", "--port", "{port}"]
    isolated = {
        "CREDIT_RISK_MODEL_TAG": None,
        "CREDIT_RISK_PARAMS": None,
        "VIRTUAL_ENV": None,
        "PYTHONPATH": None,
        "PATH": f"{serving_only / 'bin'}{os.pathsep}/usr/bin:/bin",
    }
    with local_server(command, elsewhere, tmp_path / "serve.log", "/readyz", **isolated) as base:
        body = json.dumps({contract().entity: example_record()}).encode()
        call = urllib.request.Request(
            f"{base}/score", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(call, timeout=30) as response:
            answer = json.load(response)
    assert answer["model_version"] == model_tag
    assert 0 <= answer[probability_field()] <= 1
    assert list(elsewhere.iterdir()) == []  # and it wrote nothing where it was started


def test_unknown_bento_is_a_clear_error() -> None:
    with pytest.raises(CreditRiskError, match="no bento no-such-bento:nope"):
        pinned_model("no-such-bento:nope")


def test_a_second_build_in_one_process_pins_its_own_model(
    bento: Path, model_tag: str, model_files, params, tmp_path: Path
) -> None:
    """The service module reads its model when imported: each build must import it afresh."""
    other = tmp_path / "other"
    other.mkdir()
    shutil.copyfile(model_files.model, other / model_files.model.name)
    shutil.copyfile(model_files.background, other / model_files.background.name)
    info = json.loads(model_files.info.read_text())
    info["decision_threshold"] = round(info["decision_threshold"] / 2, 3)
    (other / model_files.info.name).write_text(json.dumps(info))
    from credit_risk.model import ModelFiles
    from credit_risk.serving.model_store import store

    second = str(store(params.serve.model_name, ModelFiles.in_folder(other), {"source": "t"}).tag)
    assert second != model_tag
    before = vars(bentoml.use_arguments())
    previous = Path.cwd()
    try:
        os.chdir(ROOT)
        tag = build(second, params.serve)
    finally:
        os.chdir(previous)
    assert pinned_model(tag) == second
    # The process is left as it was: a later import of the service serves what it did before.
    assert vars(bentoml.use_arguments()) == before
    service = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["bentoml"]["build"]
    assert service["service"].split(":")[0] == SERVICE_MODULE
