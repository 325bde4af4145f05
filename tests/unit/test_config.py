from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from credit_risk.config import MODEL_TYPES, ModelParams, NumericShift, load_params
from credit_risk.errors import ConfigError
from credit_risk.schema import column_specs, feature_columns

ROOT = Path(__file__).resolve().parents[2]
SPECS = column_specs()
NUMERIC = next((n for n in feature_columns() if SPECS[n].kind == "numeric"), None)
CATEGORY = next((n for n in feature_columns() if SPECS[n].kind == "categorical"), None)


def write_params(tmp_path: Path, change: dict) -> Path:
    """The repository's params.yaml with ``change`` merged in (dotted keys; None deletes)."""
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    for dotted, value in change.items():
        *parents, last = dotted.split(".")
        node = data
        for key in parents:
            node = node[key]
        if value is None:
            node.pop(last)
        else:
            node[last] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_shipped_params_load(params) -> None:
    assert params.train.model in MODEL_TYPES
    assert set(params.train.drop_features) < set(feature_columns())
    assert params.validate_.max_examples >= 1


def test_every_model_type_has_its_section_and_estimator(params) -> None:
    for name in MODEL_TYPES:
        section = getattr(params.train, name)
        assert isinstance(section, ModelParams) and isinstance(section.estimator, type), name


def test_params_are_frozen(params) -> None:
    with pytest.raises(ValueError, match="frozen"):
        params.split.seed = 1


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"train.logistic_regression.CC": 1.0}, "train.logistic_regression.CC: unknown key"),
        ({"trian": {"model": "x"}}, "trian: unknown key"),
        ({"split.test_size": 1.5}, "split.test_size"),
        ({"train.model": "xgboost"}, "train.model"),
        ({"train.drop_features": ["salary"]}, "unknown features ['salary']"),
        ({"split.seed": None}, "split.seed: Field required"),
        ({"train.decision_threshold": "high"}, "train.decision_threshold"),
        ({"evaluate.protected_attributes": {NUMERIC: [50, 25]}}, "strictly increasing"),
        ({"evaluate.protected_attributes": {CATEGORY: [1]}}, "categorical"),
        ({"ingest.synthetic.shift": {"income?": {"add": 1}}}, "'income?' is not a feature"),
        ({"ingest.synthetic.shift": {NUMERIC: {"weights": {"x": 1}}}}, f"{NUMERIC} is numeric"),
        ({"ingest.synthetic.shift": {CATEGORY: {"weights": {"castle?": 1}}}}, "castle?"),
        ({"monitor.window_days": 0}, "monitor.window_days"),
        ({"monitor.reference": "data/processed/train.parquet"}, "monitor.reference"),
        ({"monitor.min_rows": 1}, "monitor.min_rows"),
        ({"monitor.report": None}, "monitor.report: Field required"),
        ({"monitor.drift.p_value": 0.9}, "monitor.drift.p_value"),
        ({"monitor.drift.numeric_effect": -0.1}, "monitor.drift.numeric_effect"),
        ({"monitor.drift.categorical_effect": 0}, "monitor.drift.categorical_effect"),
        ({"monitor.drift.alarm_features": 0}, "monitor.drift.alarm_features"),
        ({"monitor.drift.alpha": 0.05}, "monitor.drift.alpha: unknown key"),
        ({"monitor.performance.min_outcomes": 5}, "monitor.performance.min_outcomes"),
        ({"monitor.performance.max_roc_auc_drop": 1.5}, "monitor.performance.max_roc_auc_drop"),
        ({"monitor.performance.max_brier_rise": -0.01}, "monitor.performance.max_brier_rise"),
        ({"monitor.performance.max_fairness_gap": 0}, "monitor.performance.max_fairness_gap"),
        ({"monitor.performance.min_group_rows": 0}, "monitor.performance.min_group_rows"),
    ],
)
def test_bad_params_name_the_key(tmp_path: Path, change: dict, named: str) -> None:
    if None in {key for value in change.values() if isinstance(value, dict) for key in value}:
        pytest.skip("the contract has no feature of the kind this case needs")
    path = write_params(tmp_path, change)
    with pytest.raises(ConfigError) as error:
        load_params(path)
    assert named in str(error.value)
    assert str(path) in str(error.value)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_params(tmp_path / "params.yaml")


def test_invalid_yaml_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(path)


def test_shift_parses_by_kind(tmp_path: Path) -> None:
    if NUMERIC is None or CATEGORY is None:
        pytest.skip("needs a numeric and a categorical feature")
    category = str(SPECS[CATEGORY].allowed[0])
    path = write_params(
        tmp_path,
        {"ingest.synthetic.shift": {NUMERIC: {"add": 5}, CATEGORY: {"weights": {category: 1}}}},
    )
    shift = load_params(path).ingest.synthetic.shift
    assert shift[NUMERIC] == NumericShift(add=5)
    assert shift[CATEGORY].weights == {category: 1}
