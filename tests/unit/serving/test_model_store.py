from __future__ import annotations

import json
from pathlib import Path

import bentoml
import joblib
import mlflow
import pytest

from credit_risk.config import Params
from credit_risk.errors import CreditRiskError
from credit_risk.serving.model_store import (
    content_version,
    import_from_registry,
    store,
)
from credit_risk.serving.scorer import ModelFiles, Scorer
from credit_risk.train import log_run


def test_tag_is_derived_from_the_model_files(
    model_tag: str, model_files: ModelFiles, params: Params
) -> None:
    assert model_tag == f"{params.serve.model_name}:{content_version(model_files)}"
    stored = bentoml.models.get(model_tag)
    assert stored.info.metadata["decision_threshold"] == params.train.decision_threshold
    assert stored.info.labels == {"source": "test", "model_type": params.train.model}


def test_a_changed_threshold_is_a_new_version(
    model_files: ModelFiles, tmp_path, params: Params
) -> None:
    changed = ModelFiles(model_files.model, tmp_path / "model.json", model_files.background)
    info = json.loads(model_files.info.read_text()) | {"decision_threshold": 0.3}
    changed.info.write_text(json.dumps(info))
    assert content_version(changed) != content_version(model_files)
    stored = store(params.serve.model_name, changed, {"source": "test"})
    assert stored.info.metadata["decision_threshold"] == 0.3


def test_storing_again_is_a_no_op(model_tag: str, model_files: ModelFiles, params: Params) -> None:
    again = store(params.serve.model_name, model_files, {"source": "test"})
    assert str(again.tag) == model_tag
    assert len([m for m in bentoml.models.list() if str(m.tag) == model_tag]) == 1


def test_missing_files_are_named(tmp_path, params: Params) -> None:
    with pytest.raises(CreditRiskError, match=r"model\.joblib not found"):
        store(params.serve.model_name, ModelFiles.in_folder(tmp_path), {"source": "test"})


def test_import_from_registry_by_alias_and_version(
    trained, source_split, model_files: ModelFiles, params: Params, tmp_path
) -> None:
    train, _ = source_split
    train_file = tmp_path / "train.parquet"
    train.to_parquet(train_file)
    paths = params.paths.model_copy(
        update={
            "train": train_file,
            "model_info": model_files.info,
            "background": model_files.background,
        }
    )
    local = params.model_copy(update={"paths": paths})
    run_id = log_run(trained, train, local, model_files.model)
    version = mlflow.register_model(f"runs:/{run_id}/model", "credit-risk-test")
    mlflow.MlflowClient().set_registered_model_alias("credit-risk-test", "staging", version.version)

    by_alias = import_from_registry(params, "credit-risk-test", "staging", None)
    by_version = import_from_registry(params, "credit-risk-test", None, int(version.version))

    assert by_alias.tag == by_version.tag
    # The registry holds the pipeline's exact files: the same model, the same tag.
    assert by_alias.tag == bentoml.Tag.from_taglike(
        f"{params.serve.model_name}:{content_version(model_files)}"
    )
    metadata = by_alias.info.metadata
    assert metadata["mlflow_run_id"] == run_id
    assert metadata["registry_version"] == int(version.version)
    assert metadata["source"] == "registry"
    scorer = Scorer.load(ModelFiles.in_folder(Path(by_alias.path)))
    rows = scorer.frame(train.head(5).to_dict("records"))
    assert list(scorer.probabilities(rows)) == pytest.approx(
        list(trained.predict_proba(rows)[:, 1])
    )


def test_unknown_alias_or_version_is_a_clear_error(params: Params) -> None:
    with pytest.raises(CreditRiskError, match="models:/nobody@production: no version"):
        import_from_registry(params, "nobody", "production", None)
    with pytest.raises(CreditRiskError, match=r"models:/nobody/7 does not exist"):
        import_from_registry(params, "nobody", None, 7)


def test_pipeline_model_file_loads(model_files: ModelFiles) -> None:
    assert hasattr(joblib.load(model_files.model), "predict_proba")
