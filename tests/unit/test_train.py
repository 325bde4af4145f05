from __future__ import annotations

from pathlib import Path

import joblib
import mlflow
import pandas as pd
import pytest

from credit_risk.config import MODEL_TYPES, Params
from credit_risk.errors import CreditRiskError, DataError
from credit_risk.files import md5, write_json
from credit_risk.lineage import model_fingerprint
from credit_risk.model import build_pipeline, model_features, predict_positive
from credit_risk.schema import positive_labels
from credit_risk.tracking import MODEL_FILES_TAG, MODEL_MD5_TAG, run_for_model, use_experiment
from credit_risk.train import explain_background, fit, flat_params, log_run, model_info


def test_every_model_type_fits_and_scores(source_split, each_model) -> None:
    _, test = source_split
    chosen, pipeline = each_model
    scores = predict_positive(pipeline, test[model_features(chosen.train)])
    assert scores.between(0, 1).all() and scores.nunique() > 10


def test_dropped_features_are_not_inputs(params: Params) -> None:
    assert not set(params.train.drop_features) & set(model_features(params.train))
    transformer = build_pipeline(params.train).named_steps["preprocess"]
    used = {name for _, _, columns in transformer.transformers for name in columns}
    assert used == set(model_features(params.train))


def test_training_is_deterministic(source_split, params: Params, tmp_path: Path) -> None:
    first, second = tmp_path / "a.joblib", tmp_path / "b.joblib"
    joblib.dump(fit(source_split[0], params), first)
    joblib.dump(fit(source_split[0], params), second)
    assert md5(first) == md5(second)


def test_single_outcome_cannot_be_trained(source: pd.DataFrame, params: Params) -> None:
    with pytest.raises(DataError, match="only one outcome"):
        fit(source[positive_labels(source) == 1], params)


def test_model_info_travels_with_the_model(trained, params: Params) -> None:
    info = model_info(params, rows=750, train_md5="abc")
    assert info["decision_threshold"] == params.train.decision_threshold
    assert info["features"] == model_features(params.train)
    assert info["training_data_md5"] == "abc"


def test_flat_params_hold_only_the_chosen_model(params: Params) -> None:
    flat = flat_params(params)
    chosen = params.train.model
    for key, value in params.train.model_params().items():
        assert flat[f"train.{chosen}.{key}"] == value
    others = [name for name in MODEL_TYPES if name != chosen]
    assert others and not any(key.startswith(tuple(f"train.{o}." for o in others)) for key in flat)


def logged_model(trained, source_split, params: Params, tmp_path: Path, experiment: str):
    """The train stage's files for ``trained``, and params that log to ``experiment``."""
    train, _ = source_split
    train_file = tmp_path / "train.parquet"
    train.to_parquet(train_file, index=False)
    model_file = tmp_path / "model.joblib"
    joblib.dump(trained, model_file)
    info_file, background_file = tmp_path / "model.json", tmp_path / "background.parquet"
    write_json(info_file, model_info(params, len(train), md5(train_file)))
    explain_background(train, params).to_parquet(background_file)
    paths = params.paths.model_copy(
        update={"train": train_file, "model_info": info_file, "background": background_file}
    )
    tracking = params.tracking.model_copy(update={"experiment": experiment})
    local = params.model_copy(update={"paths": paths, "tracking": tracking})
    return train, train_file, model_file, local


def fingerprint_of(model_file: Path, local: Params) -> str:
    return model_fingerprint(model_file, local.paths.model_info, local.paths.background)


def test_run_is_logged_with_lineage(trained, source_split, params: Params, tmp_path: Path) -> None:
    train, train_file, model_file, local = logged_model(
        trained, source_split, params, tmp_path, "lineage"
    )

    run_id = log_run(trained, train, local, model_file)

    run = mlflow.get_run(run_id)
    assert run.data.tags["lineage.train_data_md5"] == md5(train_file)
    assert run.data.tags[MODEL_MD5_TAG] == md5(model_file)
    assert run.data.tags[MODEL_FILES_TAG] == fingerprint_of(model_file, local)
    assert len(run.data.tags["lineage.git_commit"]) in (40, len("unknown"))
    assert run.data.params["train.model"] == params.train.model
    assert run.data.metrics["train_roc_auc"] > 0.5
    logged = mlflow.sklearn.load_model(f"runs:/{run_id}/model")
    features = train[model_features(params.train)].head(20)
    pd.testing.assert_series_equal(
        predict_positive(logged, features), predict_positive(trained, features)
    )
    served = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="serving")
    assert sorted(p.name for p in Path(served).iterdir()) == [
        "background.parquet",
        "model.joblib",
        "model.json",
    ]
    found = run_for_model(use_experiment("lineage"), fingerprint_of(model_file, local))
    assert found is not None and found.info.run_id == run_id


def test_the_same_model_file_is_tracked_by_one_run(
    trained, source_split, params: Params, tmp_path: Path
) -> None:
    train, _, model_file, local = logged_model(trained, source_split, params, tmp_path, "rerun")
    first = log_run(trained, train, local, model_file)
    again = log_run(trained, train, local, model_file)
    assert again == first
    assert len(mlflow.search_runs(experiment_names=["rerun"], output_format="list")) == 1


def test_a_new_threshold_is_a_new_run_though_the_pipeline_file_is_the_same(
    trained, source_split, params: Params, tmp_path: Path
) -> None:
    train, train_file, model_file, local = logged_model(
        trained, source_split, params, tmp_path, "cutoff"
    )
    first = log_run(trained, train, local, model_file)
    threshold = round(params.train.decision_threshold / 2, 3)
    moved = local.model_copy(
        update={"train": local.train.model_copy(update={"decision_threshold": threshold})}
    )
    write_json(local.paths.model_info, model_info(moved, len(train), md5(train_file)))
    assert log_run(trained, train, local, model_file) != first


def test_a_run_that_failed_part_way_is_nobodys_lineage(
    trained, source_split, params: Params, tmp_path: Path
) -> None:
    """Training that fails after tagging its run (while logging the model, say) leaves a run
    without the model's files; the next training logs a complete run instead of reusing it."""
    train, _, model_file, local = logged_model(trained, source_split, params, tmp_path, "failed")
    experiment = use_experiment("failed")
    fingerprint = fingerprint_of(model_file, local)
    with mlflow.start_run(experiment_id=experiment) as broken:
        mlflow.set_tag(MODEL_FILES_TAG, fingerprint)
    mlflow.MlflowClient().set_terminated(broken.info.run_id, status="FAILED")
    assert run_for_model(experiment, fingerprint) is None
    complete = log_run(trained, train, local, model_file)
    assert complete != broken.info.run_id
    served = mlflow.artifacts.download_artifacts(run_id=complete, artifact_path="serving")
    assert len(list(Path(served).iterdir())) == 3


def test_two_runs_claiming_one_model_file_are_refused(params: Params) -> None:
    experiment = use_experiment("ambiguous")
    ids = []
    for _ in range(2):
        with mlflow.start_run(experiment_id=experiment) as run:
            mlflow.set_tag(MODEL_FILES_TAG, "0" * 64)
            ids.append(run.info.run_id)
    with pytest.raises(CreditRiskError, match="2 MLflow runs claim the model ") as error:
        run_for_model(experiment, "0" * 64)
    assert all(run_id in str(error.value) for run_id in ids)


def test_explain_background_is_a_seeded_sample(source_split, params: Params) -> None:
    train, _ = source_split
    first, again = explain_background(train, params), explain_background(train, params)
    pd.testing.assert_frame_equal(first, again)
    assert len(first) == params.train.explain_background_rows
    assert list(first.columns) == model_features(params.train)


def test_lineage_outside_git_says_unknown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from credit_risk.lineage import lineage_tags

    data = tmp_path / "train.parquet"
    data.write_bytes(b"rows")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    tags = lineage_tags({"train_data": data})
    assert tags["lineage.git_commit"] == "unknown" and tags["lineage.git_dirty"] == "unknown"
    assert tags["lineage.train_data_md5"] == md5(data)


def test_two_runs_racing_for_one_model_file_settle_on_the_first(
    trained, source_split, params: Params, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both check before either has logged (parallel queued experiments): the first stays."""
    train, _, model_file, local = logged_model(trained, source_split, params, tmp_path, "race")
    experiment = use_experiment("race")
    with mlflow.start_run(experiment_id=experiment) as rival:
        mlflow.set_tag(MODEL_FILES_TAG, fingerprint_of(model_file, local))  # first, after our check
    monkeypatch.setattr("credit_risk.train.run_for_model", lambda *_: None)
    assert log_run(trained, train, local, model_file) == rival.info.run_id
    assert [r.info.run_id for r in mlflow.search_runs([experiment], output_format="list")] == [
        rival.info.run_id
    ]
