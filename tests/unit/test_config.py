from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from credit_risk.config import NumericShift, load_params
from credit_risk.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


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
    assert params.train.model == "logistic_regression"
    assert "sex" in params.train.drop_features
    assert params.validate_.max_examples >= 1


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
        ({"evaluate.protected_attributes": {"age": [50, 25]}}, "strictly increasing"),
        ({"evaluate.protected_attributes": {"housing": [1]}}, "categorical"),
        ({"ingest.synthetic.shift": {"income": {"add": 1}}}, "'income' is not a feature"),
        ({"ingest.synthetic.shift": {"age": {"weights": {"x": 1}}}}, "age is numeric"),
        ({"ingest.synthetic.shift": {"housing": {"weights": {"castle": 1}}}}, "castle"),
    ],
)
def test_bad_params_name_the_key(tmp_path: Path, change: dict, named: str) -> None:
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
    path = write_params(
        tmp_path,
        {"ingest.synthetic.shift": {"age": {"add": 5}, "housing": {"weights": {"rent": 1}}}},
    )
    shift = load_params(path).ingest.synthetic.shift
    assert shift["age"] == NumericShift(add=5)
    assert shift["housing"].weights == {"rent": 1}
