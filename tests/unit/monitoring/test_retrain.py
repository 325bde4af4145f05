"""`make retrain-data`: a window's labelled predictions appended to the rows the model learned
from, as the next training source that params.yaml's ingest reads; refusals write nothing."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from credit_risk.config import Params, load_params
from credit_risk.errors import ConfigError, DataError
from credit_risk.monitoring import retrain
from credit_risk.monitoring.predictions import LOG_VARIABLE, logged_features, read_predictions
from credit_risk.monitoring.simulate import Model, write_log, write_outcomes
from credit_risk.schema import contract, positive_labels, target_column
from credit_risk.synthetic import generate
from credit_risk.validate import read_csv, validate

ROOT = Path(__file__).resolve().parents[3]
NOW = datetime.now(UTC)
MINUTE = timedelta(minutes=1)


def at(minutes: int) -> str:
    """A time ``minutes`` after NOW, as the command line takes it."""
    return (NOW + minutes * MINUTE).isoformat()


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, params: Params) -> Path:
    """params.yaml and the training rows ingest reads (its source file)."""
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    (tmp_path / params.ingest.file).parent.mkdir(parents=True)
    shutil.copy(ROOT / params.ingest.file, tmp_path / params.ingest.file)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(LOG_VARIABLE, raising=False)
    return tmp_path


def log_window(
    folder: Path,
    params: Params,
    model: Model,
    source: pd.DataFrame,
    rows: int,
    share: float,
    seed: int,
    features: list[str] | None = None,
    received: datetime = NOW,
) -> pd.DataFrame:
    """Log ``rows`` drawn from the source over the day before NOW; a ``share`` of them get their
    true outcome, received at ``received``. Returns the drawn rows with request_id and row."""
    frame = generate(source, rows, seed)
    kept = features or logged_features(
        params.evaluate.protected_attributes, params.serve.prediction_log.keep_attributes
    )
    keys = write_log(folder, frame, model, kept, NOW, days=1, batch=40, prefix=f"r{seed}")
    write_outcomes(folder, keys, positive_labels(frame), share, 0.0, seed, received)
    return pd.concat([frame.reset_index(drop=True), keys[["request_id", "row"]]], axis=1)


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not {"log", "partial"} & set(path.relative_to(root).parts)
    }


def test_labelled_rows_are_appended_to_the_raw_rows_and_ingest_reads_them(
    workspace, params, model, source
) -> None:
    subprocess.run(["git", "init", "-q"], cwd=workspace, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=workspace, check=True)
    folder = workspace / "log"
    drawn = log_window(folder, params, model, source, 800, share=0.5, seed=51)
    retrain.main(["--log", str(folder), "--until", at(1)])

    updated = load_params(workspace / "params.yaml")
    new_file = updated.ingest.file
    assert updated.ingest.source == "file"
    assert new_file.parent == params.monitor.retrain.folder
    assert new_file.name.startswith(retrain.PREFIX) and new_file.name.endswith(".csv.gz")
    text = (workspace / "params.yaml").read_text()
    assert "# Every setting of the pipeline." in text  # comments kept
    assert (
        yaml.safe_load(text)["monitor"]
        == yaml.safe_load((ROOT / "params.yaml").read_text())["monitor"]
    )  # nothing else changed

    source_bytes = (ROOT / params.ingest.file).read_bytes()  # plain CSV or gzip, as ingest takes
    raw = gzip.decompress(source_bytes) if params.ingest.file.suffix == ".gz" else source_bytes
    written = gzip.decompress((workspace / new_file).read_bytes())
    assert written.startswith(raw)  # the rows learned from, byte for byte
    both = read_csv(workspace / new_file)
    old = pd.read_csv(io.BytesIO(raw), dtype=str)
    fresh = both.iloc[len(old) :].reset_index(drop=True)
    typed, problems = validate(both)
    assert problems == [] and typed is not None  # the contract holds for old and new rows

    outcomes = pd.read_json(
        io.StringIO("".join(p.read_text() for p in sorted((folder / "outcomes").rglob("*.jsonl")))),
        lines=True,
    )
    labelled = sum(len(line) for line in outcomes["outcomes"])
    assert len(fresh) == labelled and 300 < labelled < 500  # about half of 800

    # Each fresh row is a logged applicant with its true outcome, in the contract's values.
    logged = read_predictions(folder, NOW - timedelta(days=2), NOW + timedelta(minutes=1))
    assert len(logged) == len(drawn)
    target = target_column()
    expected_targets = set(map(str, {contract().target.positive, *drawn[target].unique()}))
    assert set(fresh[target]) <= expected_targets
    labelled_keys = [
        (entry["request_id"], entry["row"]) for line in outcomes["outcomes"] for entry in line
    ]
    chosen = drawn.set_index(["request_id", "row"]).loc[labelled_keys]
    positives = int((fresh[target] == str(contract().target.positive)).sum())
    assert positives == int(positive_labels(chosen).sum())
    # Each column holds the labelled applicants' values, as the contract types them (numbers
    # within float rounding: a CSV writes them as text).
    added = typed.iloc[len(old) :]
    for name in (name for name in old.columns if name != target):
        if pd.api.types.is_numeric_dtype(added[name]):
            got, want = np.sort(added[name].to_numpy(float)), np.sort(chosen[name].to_numpy(float))
            assert np.allclose(got, want, rtol=1e-9, atol=0), name
        else:
            assert sorted(map(str, added[name])) == sorted(map(str, chosen[name])), name

    record = json.loads(retrain.record_of(workspace / new_file).read_text())
    assert record["rows"] == len(both) and record["fresh"]["rows"] == len(fresh)
    assert record["base"]["rows"] == len(old) and len(record["windows"]) == 1
    assert sum(record["fresh"]["outcomes"].values()) == len(fresh)
    assert (workspace / f"{new_file}.dvc").is_file()  # git keeps the pointer, not the rows
    assert new_file.name in (workspace / new_file.parent / ".gitignore").read_text()

    # Nothing new since: nothing to do (not a failure). Outcomes already learned: refused.
    with pytest.raises(SystemExit) as stop:
        retrain.main(["--log", str(folder), "--until", at(2)])
    assert stop.value.code == retrain.NOTHING_TO_DO
    with pytest.raises(DataError, match="overlap a window the training source already holds"):
        retrain.main(["--log", str(folder), "--since", at(-60), "--until", at(3)])

    # Outcomes that arrive later are added on top of the first file, with both windows.
    log_window(folder, params, model, source, 400, share=0.6, seed=52, received=NOW + 5 * MINUTE)
    retrain.main(["--log", str(folder), "--until", at(10)])
    second = load_params(workspace / "params.yaml").ingest.file
    assert second != new_file
    assert gzip.decompress((workspace / second).read_bytes()).startswith(written)
    record2 = json.loads(retrain.record_of(workspace / second).read_text())
    assert record2["windows"] == [record["windows"][0], record2["fresh"]["received"]]
    assert record2["base"]["rows"] == record["rows"]
    assert 150 < record2["fresh"]["rows"] < 330  # about 0.6 of 400


def test_refusals_write_nothing(workspace, params, model, source, caplog) -> None:
    folder = workspace / "log"
    log_window(folder, params, model, source, 300, share=0.1, seed=53)
    before = snapshot(workspace)
    with pytest.raises(SystemExit) as stop:
        retrain.main(["--log", str(folder), "--until", at(1)])
    assert stop.value.code == retrain.NOTHING_TO_DO  # not a failure: nothing to learn yet
    assert "arrived in the window (monitor.retrain.min_rows" in caplog.text
    assert snapshot(workspace) == before

    protected = [
        name
        for name in params.evaluate.protected_attributes
        if name in params.serve.prediction_log.keep_attributes
    ]
    if not protected:
        pytest.skip("the log keeps no protected attribute to leave out")
    every = logged_features(
        params.evaluate.protected_attributes, params.serve.prediction_log.keep_attributes
    )
    partial = workspace / "partial"
    log_window(partial, params, model, source, 400, share=0.9, seed=54,
               features=[n for n in every if n != protected[0]])  # fmt: skip
    with pytest.raises(ConfigError, match=rf"does not keep \['{protected[0]}'\].*keep_attributes"):
        retrain.main(["--log", str(partial), "--until", at(1)])
    assert snapshot(workspace) == before

    (workspace / params.ingest.file).unlink()
    with pytest.raises(DataError, match=r"not here \(ingest\.file\)"):
        retrain.main(["--log", str(folder), "--until", at(1)])
