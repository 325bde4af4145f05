"""The monitor: section of params.yaml: every bad value is an error naming its key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from credit_risk.config import load_params
from credit_risk.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]


def with_monitor(tmp_path: Path, dotted: str, value: object) -> Path:
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    *parents, last = dotted.split(".")
    node = data["monitor"]
    for key in parents:
        node = node[key]
    if value is None:
        node.pop(last)
    else:
        node[last] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("window_days", 0),
        ("window_days", "a week"),
        ("reference", "data/processed/train.parquet"),
        ("min_rows", 1),
        ("drift.p_value", 0.0),
        ("drift.p_value", 0.9),
        ("drift.numeric_effect", -0.1),
        ("drift.categorical_effect", 0),
        ("drift.alarm_features", 0),
        ("drift.alpha", 0.05),
        ("performance.min_outcomes", 5),
        ("performance.max_roc_auc_drop", 1.5),
        ("performance.max_brier_rise", -0.01),
        ("performance.max_fairness_gap", 0),
        ("performance.min_group_rows", 0),
        ("report", None),
    ],
)
def test_a_bad_monitor_setting_names_its_key(tmp_path: Path, key: str, value: object) -> None:
    path = with_monitor(tmp_path, key, value)
    with pytest.raises(ConfigError) as error:
        load_params(path)
    assert f"monitor.{key}" in str(error.value)


def test_the_shipped_monitor_settings_load(params) -> None:
    settings = params.monitor
    assert getattr(params.paths, settings.reference).suffix == ".parquet"
    assert settings.drift.alarm_features >= 1
    assert {settings.report.suffix, settings.html.suffix, settings.summary.suffix} == {
        ".json",
        ".html",
        ".md",
    }
