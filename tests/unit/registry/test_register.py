"""register: only a fresh, passing verdict for the dvc.lock model; the same model, one version."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
import yaml

from credit_risk.config import Params
from credit_risk.errors import CreditRiskError
from credit_risk.files import md5
from credit_risk.gate import report
from credit_risk.gate.check import judge
from credit_risk.registry.register import CONTENT_VERSION_TAG, register
from credit_risk.registry.trace import find, lineage
from credit_risk.train import log_run


def lock_for(params: Params, folder: Path) -> Path:
    """A dvc.lock that records ``params``' model file, as `dvc repro` would."""
    lock = folder / "dvc.lock"
    outs = [{"path": str(params.paths.model), "md5": md5(params.paths.model)}]
    lock.write_text(yaml.safe_dump({"stages": {"train": {"outs": outs}}}), encoding="utf-8")
    return lock


@pytest.fixture
def gated(model_workspace) -> tuple[Params, Path]:
    """The default model, trained (with its run) and judged: ready to register."""
    pipeline = model_workspace.fit()
    params = model_workspace.candidate(pipeline)
    log_run(pipeline, model_workspace.train_rows, params, params.paths.model)
    verdict = judge(params)
    report.write(verdict, params.paths.gate_report, params.paths.gate_summary)
    return params, lock_for(params, model_workspace.folder)


def test_registers_once_with_lineage_and_the_candidate_alias(gated) -> None:
    params, lock = gated
    first = register(params, lock)
    again = register(params, lock)
    assert first.version == again.version
    name = params.serve.model_name
    client = mlflow.MlflowClient()
    assert client.get_model_version_by_alias(name, "candidate").version == first.version
    tags = client.get_model_version(name, first.version).tags
    verdict = report.read(params.paths.gate_report)
    assert tags["gate.passed"] == "true"
    assert tags["lineage.model_files"] == verdict.model_fingerprint
    assert tags["lineage.model_md5"] == md5(params.paths.model)
    assert json.loads(tags["lineage.params"])["train"]["model"] == params.train.model
    assert len(client.search_model_versions(f"name = '{name}'")) == 1

    # From the model_version a score carries, back to this version and its lineage.
    served = f"{name}:{tags[CONTENT_VERSION_TAG]}"
    traced = lineage(find(client, name, served))
    assert traced["registry_version"] == int(first.version)
    assert traced["aliases"] == ["candidate"]
    assert traced["training_data_md5"] == md5(params.paths.train)


def test_a_stale_verdict_is_refused(gated, model_workspace) -> None:
    params, lock = gated
    model_workspace.test_rows.head(len(model_workspace.test_rows) // 2).to_parquet(
        params.paths.test
    )
    with pytest.raises(CreditRiskError, match="stale: the held-out rows changed"):
        register(params, lock)
    assert not mlflow.MlflowClient().search_model_versions(f"name = '{params.serve.model_name}'")


def test_production_moving_after_the_verdict_makes_it_stale(gated, model_workspace) -> None:
    params, lock = gated
    model_workspace.into_production(model_workspace.fit(), params)
    with pytest.raises(CreditRiskError, match="production moved"):
        register(params, lock)


def test_a_blocked_model_is_not_registered(gated) -> None:
    params, lock = gated
    verdict = report.read(params.paths.gate_report)
    rules = [dict(rule, status="fail") if i == 0 else rule for i, rule in enumerate(verdict.rules)]
    blocked = verdict.model_copy(update={"passed": False, "rules": rules})
    report.write(blocked, params.paths.gate_report, params.paths.gate_summary)
    with pytest.raises(CreditRiskError, match="the gate blocked this model"):
        register(params, lock)


def test_a_model_other_than_the_locked_one_is_refused(gated, tmp_path: Path) -> None:
    params, _ = gated
    other = tmp_path / "other.lock"
    outs = [{"path": str(params.paths.model), "md5": "0" * 32}]
    other.write_text(yaml.safe_dump({"stages": {"train": {"outs": outs}}}), encoding="utf-8")
    with pytest.raises(CreditRiskError, match=r"not the model dvc\.lock records"):
        register(params, other)


def test_missing_verdict_says_to_run_the_gate(gated) -> None:
    params, lock = gated
    params.paths.gate_report.unlink()
    with pytest.raises(CreditRiskError, match="run `make gate` first"):
        register(params, lock)
