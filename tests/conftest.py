"""Shared fixtures: the repository's own params, contract and data, and an isolated MLflow store.

Tests follow the contract, not the example data: columns, categories, ranges and the target
come from `roles` (read from the contract), row counts from the data itself.
"""

from __future__ import annotations

import gzip
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from credit_risk.config import MODEL_TYPES, Params, load_params
from credit_risk.files import write_json
from credit_risk.schema import ColumnSpec, column_specs, contract, feature_columns
from credit_risk.serving.model_store import store
from credit_risk.serving.scorer import ModelFiles
from credit_risk.split import split
from credit_risk.train import explain_background, fit, log_run, model_info
from credit_risk.validate import read_csv, validate

ROOT = Path(__file__).resolve().parents[1]
READY_SECONDS = 90

# BentoML reads its home once, on first use: point it at a throw-away store before any test
# (or a server a test starts) can touch the user's ~/bentoml.
os.environ["BENTOML_HOME"] = tempfile.mkdtemp(prefix="credit-risk-bentoml-")


@pytest.fixture(scope="session", autouse=True)
def isolated_mlflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Every test logs to a throw-away SQLite store, never to the repository's mlruns/."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    yield uri
    if previous is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = previous


@pytest.fixture(scope="session")
def params() -> Params:
    return load_params(ROOT / "params.yaml")


@pytest.fixture(scope="session")
def source_text(params: Params) -> str:
    """The configured source data set (ingest.file) as CSV text."""
    path = ROOT / params.ingest.file
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return handle.read()


@pytest.fixture
def source_csv(tmp_path: Path, source_text: str) -> Path:
    """A fresh plain-CSV copy of the source data that a test may corrupt."""
    path = tmp_path / "source.csv"
    path.write_text(source_text, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def source(source_text: str, tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """The source data, validated and typed by the contract."""
    path = tmp_path_factory.mktemp("source") / "source.csv"
    path.write_text(source_text, encoding="utf-8")
    typed, problems = validate(read_csv(path))
    assert typed is not None, problems
    return typed


@pytest.fixture(scope="session")
def source_split(source: pd.DataFrame, params: Params) -> tuple[pd.DataFrame, pd.DataFrame]:
    return split(source, params.split)


@pytest.fixture(scope="session")
def trained(source_split: tuple[pd.DataFrame, pd.DataFrame], params: Params) -> Pipeline:
    """The configured model fitted on the source's training split."""
    return fit(source_split[0], params)


@pytest.fixture(scope="session", params=MODEL_TYPES)
def each_model(
    request: pytest.FixtureRequest, source_split: tuple[pd.DataFrame, pd.DataFrame], params: Params
) -> tuple[Params, Pipeline]:
    """Every model type the params offer, fitted on the source's training split."""
    train = params.train.model_copy(update={"model": request.param})
    chosen = params.model_copy(update={"train": train})
    return chosen, fit(source_split[0], chosen)


@dataclass(frozen=True)
class Roles:
    """Columns picked by what the contract says of them, for tests that need one of a kind."""

    target: str
    positive: Any
    negative: Any
    specs: dict[str, ColumnSpec]

    def features(self, kind: str, python_type: type | None = None) -> list[str]:
        return [
            name
            for name in feature_columns()
            if self.specs[name].kind == kind
            and (python_type is None or self.specs[name].python_type is python_type)
        ]

    def first(self, kind: str, python_type: type | None = None) -> str:
        found = self.features(kind, python_type)
        if not found:
            pytest.skip(f"the contract has no {kind} {python_type or ''} feature")
        return found[0]

    def bounded_numeric(self) -> str:
        """A numeric feature with a maximum (so a value above it breaks the contract)."""
        for name in self.features("numeric"):
            if self.specs[name].maximum is not None:
                return name
        pytest.skip("the contract has no numeric feature with a maximum")

    def too_large(self, name: str) -> int | float:
        spec = self.specs[name]
        assert spec.maximum is not None
        return int(spec.maximum) + 1 if spec.python_type is int else float(spec.maximum) + 0.5

    def unknown_category(self, name: str) -> Any:
        allowed = self.specs[name].allowed or ()
        if self.specs[name].python_type is str:
            return "no-such-category"
        if self.specs[name].python_type is bool:
            pytest.skip("a boolean column has no unknown category")
        return max(allowed) + 1


@pytest.fixture(scope="session")
def roles() -> Roles:
    terms = contract()
    specs = column_specs()
    target = terms.target
    negative = next(v for v in specs[target.column].allowed or () if v != target.positive)
    return Roles(target.column, target.positive, negative, specs)


@pytest.fixture(scope="session")
def model_files(
    trained: Pipeline,
    source_split: tuple[pd.DataFrame, pd.DataFrame],
    params: Params,
    tmp_path_factory: pytest.TempPathFactory,
) -> ModelFiles:
    """The three files the train stage writes, for the configured model on the source data."""
    folder = tmp_path_factory.mktemp("model")
    files = ModelFiles.in_folder(folder)
    train = source_split[0]
    joblib.dump(trained, files.model)
    write_json(files.info, model_info(params, len(train), "test-data-md5"))
    explain_background(train, params).to_parquet(files.background, index=False)
    return files


@pytest.fixture(scope="session")
def model_tag(model_files: ModelFiles, params: Params) -> str:
    """The default model, stored in the test session's BentoML store."""
    return str(store(params.serve.model_name, model_files, {"source": "test"}).tag)


class ModelWorkspace:
    """A model's three files, the held-out rows and the gate's reports in a folder of their
    own, with params pointing at them and a registered model name of their own (so tests that
    move aliases do not meet), in the session's throw-away MLflow store."""

    def __init__(self, folder: Path, params: Params, split_rows: tuple[pd.DataFrame, ...]) -> None:
        self.folder = folder
        self.train_rows, self.test_rows = split_rows
        test_file = folder / "test.parquet"
        self.test_rows.to_parquet(test_file)
        paths = params.paths.model_copy(
            update={
                "test": test_file,
                "train": folder / "train.parquet",
                "gate_report": folder / "gate.json",
                "gate_summary": folder / "gate.md",
            }
        )
        self.train_rows.to_parquet(paths.train)
        serve = params.serve.model_copy(update={"model_name": f"m-{folder.name.lower()}"[:60]})
        self.params = params.model_copy(update={"paths": paths, "serve": serve})

    def with_train(self, **changes: Any) -> Params:
        """These params with train settings changed (model files of their own)."""
        train = self.params.train.model_copy(update=changes)
        return self.params.model_copy(update={"train": train})

    def candidate(
        self, pipeline: Any, params: Params | None = None, name: str = "candidate"
    ) -> Params:
        """Write ``pipeline``'s model files; return params whose model paths point at them."""
        chosen = params or self.params
        files = ModelFiles.in_folder(self.folder / name)
        files.model.parent.mkdir(exist_ok=True)
        joblib.dump(pipeline, files.model)
        write_json(files.info, model_info(chosen, len(self.train_rows), "test-data-md5"))
        explain_background(self.train_rows, chosen).to_parquet(files.background, index=False)
        paths = chosen.paths.model_copy(
            update={"model": files.model, "model_info": files.info, "background": files.background}
        )
        return chosen.model_copy(update={"paths": paths})

    def fit(self, params: Params | None = None) -> Pipeline:
        return fit(self.train_rows, params or self.params)

    def into_production(self, pipeline: Pipeline, params: Params | None = None) -> int:
        """Log ``pipeline`` as a run, register it and give it the production alias."""
        placed = self.candidate(pipeline, params, name="production")
        run_id = log_run(pipeline, self.train_rows, placed, placed.paths.model)
        name = placed.serve.model_name
        version = mlflow.register_model(f"runs:/{run_id}/model", name)
        mlflow.MlflowClient().set_registered_model_alias(name, "production", version.version)
        return int(version.version)


@pytest.fixture
def model_workspace(
    tmp_path: Path, params: Params, source_split: tuple[pd.DataFrame, pd.DataFrame]
) -> ModelWorkspace:
    return ModelWorkspace(tmp_path, params, source_split)


GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
}


def fresh_copy(workspace: Path) -> Path:
    """A clone-like copy of the repository as it is now (tracked and new, unignored files),
    committed in a git repository of its own."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    for name in filter(None, listed.stdout.split("\0")):
        if (ROOT / name).is_file():
            (workspace / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, workspace / name)
    env = {**os.environ, **GIT_IDENTITY}
    for command in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "clone"]):
        subprocess.run(["git", *command], cwd=workspace, env=env, check=True, capture_output=True)
    return workspace


@pytest.fixture(scope="session")
def repository_copy() -> Callable[[Path], Path]:
    """``fresh_copy``: a committed copy of the repository in the given folder."""
    return fresh_copy


class LocalServer:
    """A server command on a free loopback port, in its own process group, stopped by its pid.

    ``command`` may contain "{port}". Entering waits until GET ``ready_path`` answers 200 and
    gives the base URL; the server's output goes to ``log_file`` and is shown if it fails.
    ``env`` adds variables to this process's environment; a None value removes one.
    """

    def __init__(
        self, command: list[str], cwd: Path, log_file: Path, ready_path: str, **env: str | None
    ) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.command = [part.replace("{port}", str(self.port)) for part in command]
        self.cwd, self.log_file, self.ready_path = cwd, log_file, ready_path
        venv_bin = Path(sys.executable).parent
        merged = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}", **env}
        self.env = {name: value for name, value in merged.items() if value is not None}
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> str:
        with self.log_file.open("wb") as log:
            self.process = subprocess.Popen(
                self.command, cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + READY_SECONDS
        while not self._ready(base):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"{self.command[0]} never became ready:\n{self.log_file.read_text()}")
            time.sleep(0.25)
        return base

    def _ready(self, base: str) -> bool:
        try:
            with urllib.request.urlopen(f"{base}{self.ready_path}", timeout=5) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def __exit__(self, *_: object) -> None:
        self.stop()


@pytest.fixture(scope="session")
def local_server() -> type[LocalServer]:
    return LocalServer


def write_churn_data(path: Path, rows: int = 2000, seed: int = 3) -> Path:
    """A second, differently shaped data set (not credit): customers who churn or stay.

    It differs from the example in every way adoption must handle: another target name and type
    (text "yes"/"no"), boolean and integer-coded categories, fractional ages, column names that
    are not Python identifiers ("class", "tenure-months", "monthly charge"), and twice the rows.
    """
    rng = np.random.default_rng(seed)
    tenure = rng.integers(0, 73, rows)
    charge = np.round(rng.uniform(10, 120, rows), 2)
    plan = rng.choice(["basic", "plus", "premium"], rows, p=[0.5, 0.3, 0.2])
    senior = rng.random(rows) < 0.2
    region = rng.choice([1, 2, 3, 4], rows)
    age = np.round(rng.uniform(18, 90, rows) * 2) / 2
    gender = rng.choice(["f", "m", "x"], rows, p=[0.48, 0.48, 0.04])
    logit = (
        0.8
        - 0.06 * tenure
        + 0.02 * (charge - 60)
        + np.select([plan == "basic", plan == "premium"], [0.6, -0.7], 0.0)
        + 0.5 * senior
        + 0.3 * (region == 4)
    )
    churned = np.where(rng.random(rows) < 1 / (1 + np.exp(-logit)), "yes", "no")
    frame = pd.DataFrame(
        {
            "tenure-months": tenure,
            "class": plan,
            "monthly charge": charge,
            "is_senior": np.where(senior, "true", "false"),
            "region code": region,
            "age": age,
            "gender": gender,
            "churned": churned,
        }
    )
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def churn_writer() -> Callable[..., Path]:
    """``write_churn_data``, for tests that place the file themselves."""
    return write_churn_data


@pytest.fixture
def churn_csv(tmp_path: Path) -> Path:
    return write_churn_data(tmp_path / "churn.csv")


@pytest.fixture(scope="session")
def registry_stack() -> Iterator[Any]:
    """The shared registry stack (mlflow server on PostgreSQL, artifacts in moto's S3), started
    for the session through the same function as ``make registry-up`` and stopped by its pids.

    Yields the ``Stack``: ``.tracking_uri``, ``.bucket``, ``.s3_endpoint``, ``.state_dir``. The
    autouse ``isolated_mlflow`` store stays the default: a test points MLflow at the stack itself
    (monkeypatch ``MLFLOW_TRACKING_URI`` and call ``mlflow.set_tracking_uri``).
    """
    from credit_risk.registry import stack

    # Not under pytest's tmp_path: run as root, PostgreSQL runs as the 'postgres' user, which
    # must be able to reach its data directory (pytest's base directory is private to root).
    folder = Path(tempfile.mkdtemp(prefix="credit-risk-stack-"))
    folder.chmod(0o755)
    try:
        yield stack.up(folder / "state")
    finally:
        stack.down(folder / "state", purge=True)
        shutil.rmtree(folder, ignore_errors=True)
