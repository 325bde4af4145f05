"""The lock comparison: data and code exact, the model's numbers within the tolerance."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from credit_risk.reproducibility import (
    MODEL_OUTPUT_TOLERANCE,
    compare_locks,
    differences_in_numbers,
)


def lock(paths) -> dict:
    return {
        "schema": "2.0",
        "stages": {
            "split": {
                "cmd": "python -m credit_risk.split",
                "deps": [{"path": "src/credit_risk/split.py", "md5": "code1"}],
                "params": {"params.yaml": {"split.seed": 42}},
                "outs": [{"path": paths.train.as_posix(), "md5": "data1"}],
            },
            "train": {
                "cmd": "python -m credit_risk.train",
                "deps": [{"path": paths.train.as_posix(), "md5": "data1"}],
                "outs": [{"path": paths.model.as_posix(), "md5": "model-on-this-cpu"}],
            },
            "evaluate": {
                "cmd": "python -m credit_risk.evaluate",
                "deps": [{"path": paths.model.as_posix(), "md5": "model-on-this-cpu"}],
                "outs": [{"path": paths.metrics.as_posix(), "md5": "metrics1"}],
            },
        },
    }


@pytest.fixture
def committed_metrics() -> bytes:
    return json.dumps({"roc_auc": 0.763201, "brier": 0.198}).encode()


def compare(params, current: dict, root: Path, metrics: bytes, committed_metrics: bytes):
    (root / params.paths.metrics).parent.mkdir(parents=True, exist_ok=True)
    (root / params.paths.metrics).write_bytes(metrics)

    def read(path: str) -> bytes:
        if path != params.paths.metrics.as_posix():
            raise FileNotFoundError(path)
        return committed_metrics

    return compare_locks(lock(params.paths), current, params.paths, root, read)


def test_another_cpu_model_with_the_same_numbers_passes(params, tmp_path, committed_metrics):
    current = lock(params.paths)
    for stage in ("train", "evaluate"):
        for kind in ("outs", "deps"):
            for entry in current["stages"][stage].get(kind, []):
                if entry["path"] == params.paths.model.as_posix():
                    entry["md5"] = "model-on-another-cpu"
    current["stages"]["evaluate"]["outs"][0]["md5"] = "metrics-rounded-otherwise"
    nudged = json.dumps({"roc_auc": 0.763201 + MODEL_OUTPUT_TOLERANCE / 2, "brier": 0.198})
    assert compare(params, current, tmp_path, nudged.encode(), committed_metrics) == []


def test_changed_metrics_beyond_the_tolerance_fail(params, tmp_path, committed_metrics):
    current = lock(params.paths)
    current["stages"]["evaluate"]["outs"][0]["md5"] = "metrics2"
    moved = json.dumps({"roc_auc": 0.75, "brier": 0.198}).encode()
    (problem,) = compare(params, current, tmp_path, moved, committed_metrics)
    assert "roc_auc is 0.75 (committed 0.763201)" in problem


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (
            lambda s: s["split"]["deps"][0].update(md5="code2"),
            "split deps src/credit_risk/split.py",
        ),
        (lambda s: s["split"]["params"]["params.yaml"].update({"split.seed": 1}), "split params"),
        (lambda s: s["split"]["outs"][0].update(md5="data2"), "split outs"),
        (lambda s: s["train"].update(cmd="python -m other"), "train cmd"),
    ],
)
def test_stale_code_params_or_data_fail(params, tmp_path, committed_metrics, change, named):
    current = copy.deepcopy(lock(params.paths))
    change(current["stages"])
    problems = compare(params, current, tmp_path, committed_metrics, committed_metrics)
    assert any(named in problem for problem in problems), problems


def test_csv_numbers_and_text_are_compared() -> None:
    assert differences_in_numbers("a.csv", b"x,y\n0.1,good\n", b"x,y\n0.1000001,good\n") == []
    assert differences_in_numbers("a.csv", b"x,y\n0.1,good\n", b"x,y\n0.2,good\n")
    assert differences_in_numbers("a.csv", b"x,y\n0.1,good\n", b"x,y\n0.1,bad\n")
    assert differences_in_numbers("a.csv", b"x\n0.1\n", b"x\n0.1\n0.2\n")
