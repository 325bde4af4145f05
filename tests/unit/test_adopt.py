"""Adopting a data set: the inferred contract, the edited params, and refusals that name why."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from credit_risk.adopt import Choices, adopt, band_edges, infer_contract
from credit_risk.errors import ConfigError, DataError
from credit_risk.schema import load_contract
from credit_risk.validate import read_csv, validate

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = Path("src/credit_risk/contract.yaml")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """The files adopt edits, in a throw-away repository root."""
    root = tmp_path / "repo"
    (root / CONTRACT.parent).mkdir(parents=True)
    shutil.copyfile(ROOT / "params.yaml", root / "params.yaml")
    shutil.copyfile(ROOT / CONTRACT, root / CONTRACT)
    return root


def churn(data: Path, **overrides: object) -> Choices:
    settings: dict = {"data": data, "target": "churned", "positive": "yes",
                      "protected": ("gender", "age"), "entity": "customer"}  # fmt: skip
    return Choices(**{**settings, **overrides})


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_types_ranges_and_categories_are_inferred(churn_csv: Path) -> None:
    terms = infer_contract(read_csv(churn_csv), churn(churn_csv))
    rules = {
        name: (rule.type, rule.allowed, rule.min, rule.max) for name, rule in terms.columns.items()
    }
    frame = pd.read_csv(churn_csv)
    assert rules["tenure-months"] == (
        "int",
        None,
        frame["tenure-months"].min(),
        frame["tenure-months"].max(),
    )
    assert rules["class"] == ("str", ["basic", "plus", "premium"], None, None)
    assert rules["monthly charge"][0] == "float"
    assert rules["is_senior"][:2] == ("bool", None)
    assert rules["region code"] == ("int", [1, 2, 3, 4], None, None)
    assert rules["age"][0] == "float"  # fractional ages
    assert rules["churned"] == ("str", ["no", "yes"], None, None)
    assert terms.target.positive == "yes" and terms.target.positive_label == "yes"
    assert set(terms.example) == set(frame.columns) - {"churned"}


def test_the_data_satisfies_its_inferred_contract(churn_csv: Path) -> None:
    frame = read_csv(churn_csv)
    terms = infer_contract(frame, churn(churn_csv))
    typed, problems = validate(frame, terms=terms)
    assert typed is not None, problems
    assert typed["is_senior"].dtype == bool and typed["age"].dtype.kind == "f"


def test_adopt_writes_the_contract_params_and_data(repo: Path, churn_csv: Path) -> None:
    review = adopt(repo, churn(churn_csv, decisions=("contact", "keep")))
    terms = load_contract(repo / CONTRACT)
    assert terms.entity == "customer" and terms.entity_plural == "customers"
    assert terms.decisions.at_or_above_threshold == "contact"
    copied = repo / "data/external/churn.csv"
    assert copied.read_bytes() == churn_csv.read_bytes()
    text = (repo / "params.yaml").read_text()
    assert "# Every setting of the pipeline" in text  # comments survive
    params = yaml.safe_load(text)
    assert params["ingest"]["file"] == "data/external/churn.csv"
    assert params["ingest"]["synthetic"]["shift"] == {}
    assert params["train"]["drop_features"] == ["gender", "age"]
    protected = params["evaluate"]["protected_attributes"]
    assert protected["gender"] is None and protected["age"] == sorted(protected["age"])
    assert params["tracking"]["experiment"] == params["serve"]["model_name"] == "churn"
    assert any("raises_probability" in item for item in review)


def test_outcome_words_default_to_the_values_or_come_from_labels(churn_csv: Path) -> None:
    frame = read_csv(churn_csv)
    frame["churned"] = (frame["churned"] == "yes").astype(int).astype(str)  # 1/0, not words
    terms = infer_contract(frame, churn(churn_csv, positive="1"))
    assert (terms.target.positive, terms.target.positive_label) == (1, "positive")
    assert terms.target.negative_label == "negative"
    terms = infer_contract(frame, churn(churn_csv, positive="1", labels=("churn", "stay")))
    assert (terms.target.positive_label, terms.target.negative_label) == ("churn", "stay")


def test_data_already_in_the_repository_is_not_copied(repo: Path, churn_csv: Path) -> None:
    inside = repo / "data" / "mine.csv"
    inside.parent.mkdir()
    shutil.copyfile(churn_csv, inside)
    adopt(repo, churn(inside))
    assert yaml.safe_load((repo / "params.yaml").read_text())["ingest"]["file"] == "data/mine.csv"
    assert not (repo / "data/external").exists()


def edited(path: Path, change) -> Path:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    change(frame)
    frame.to_csv(path, index=False)
    return path


def four_outcomes(frame: pd.DataFrame) -> None:
    frame["churned"] = [["a", "b", "c", "d"][i % 4] for i in range(len(frame))]


def one_empty_class(frame: pd.DataFrame) -> None:
    frame.loc[4, "class"] = ""  # CSV line 6


def unique_classes(frame: pd.DataFrame) -> None:
    frame["class"] = [f"id-{i}" for i in range(len(frame))]


@pytest.mark.parametrize(
    ("change", "choices", "error", "named"),
    [
        (None, {"target": "left"}, ConfigError, "--target 'left': no such column"),
        (None, {"positive": "maybe"}, ConfigError, "--positive 'maybe': not a value"),
        (None, {"protected": ("income",)}, ConfigError, "--protected ['income']"),
        (four_outcomes, {"positive": "a"}, DataError, "exactly two outcomes, found 4"),
        (one_empty_class, {}, DataError, "column 'class': 1 empty values (first on line 6)"),
        (unique_classes, {}, DataError, "column 'class': 2000 distinct text values"),
    ],
)
def test_refusals_name_the_problem_and_write_nothing(
    repo: Path, churn_csv: Path, change, choices: dict, error: type, named: str
) -> None:
    if change is not None:
        edited(churn_csv, change)
    before = snapshot(repo)
    with pytest.raises(error) as raised:
        adopt(repo, churn(churn_csv, **choices))
    assert named in str(raised.value)
    assert snapshot(repo) == before


def test_band_edges_are_rounded_quartiles_inside_the_data() -> None:
    values = pd.Series(range(18, 91))
    edges = band_edges(values, integer=True)
    assert edges == sorted(set(edges)) and all(isinstance(e, int) for e in edges)
    assert edges[0] > 18 and edges[-1] <= 90
