"""The synthetic source: contract, determinism, shifts that do what they say, and the CLI.

Every column and value comes from the contract and the source data, so the tests hold for any
adopted data set.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from credit_risk.config import CategoricalShift, NumericShift, Synthetic
from credit_risk.errors import ConfigError, DataError
from credit_risk.schema import column_specs, data_schema, positive_labels
from credit_risk.synthetic import generate, load_source, parse_shift, write_csv
from credit_risk.validate import read_csv, validate

ROOT = Path(__file__).resolve().parents[2]
ROWS = 20_000


@pytest.fixture(scope="module")
def base(source: pd.DataFrame) -> pd.DataFrame:
    return generate(source, ROWS, 11)


def test_rows_satisfy_the_contract_in_order_and_type(base: pd.DataFrame, source) -> None:
    data_schema().validate(base, lazy=True)
    assert list(base.columns) == list(column_specs())
    assert (base.dtypes == source.dtypes).all()
    assert len(base) == ROWS


def test_same_seed_same_frame_and_different_seed_different_frame(source) -> None:
    pd.testing.assert_frame_equal(generate(source, 2_000, 3), generate(source, 2_000, 3))
    assert not generate(source, 2_000, 3).equals(generate(source, 2_000, 4))


def test_rows_are_whole_source_rows(base: pd.DataFrame, source) -> None:
    """Resampling keeps each row intact, so every relation in the data survives."""
    known = set(source.itertuples(index=False, name=None))
    assert set(base.head(500).itertuples(index=False, name=None)) <= known


def test_unshifted_rows_keep_the_outcome_rate(base: pd.DataFrame, source) -> None:
    rate = positive_labels(source).mean()
    standard_error = np.sqrt(rate * (1 - rate) / ROWS)
    assert abs(positive_labels(base).mean() - rate) < 4 * standard_error


def test_numeric_shift_moves_only_its_column_within_the_contract(source, roles) -> None:
    name = roles.first("numeric")
    spec = column_specs()[name]
    change = NumericShift(add=(spec.maximum or 10) - (spec.minimum or 0))  # pushes to the top
    base, shifted = generate(source, 3000, 5), generate(source, 3000, 5, {name: change})
    others = [c for c in column_specs() if c != name]
    pd.testing.assert_frame_equal(shifted[others], base[others])
    assert shifted[name].mean() > base[name].mean()
    data_schema().validate(shifted, lazy=True)  # clipped to the contract's range


def test_numeric_scale(source, roles) -> None:
    name = roles.first("numeric")
    spec = column_specs()[name]
    base, shifted = (
        generate(source, 3000, 5),
        generate(source, 3000, 5, {name: NumericShift(scale=2.0)}),
    )
    expected = np.clip(base[name] * 2.0, spec.minimum, spec.maximum)
    if spec.python_type is int:
        expected = np.rint(expected).astype(np.int64)
    np.testing.assert_array_equal(shifted[name].to_numpy(), np.asarray(expected))


def test_categorical_weights_set_the_share_and_move_the_outcome(source, roles) -> None:
    name = roles.first("categorical")
    counts = source[name].astype(str).value_counts()
    rare, common = counts.index[-1], counts.index[0]
    shifted = generate(source, 20_000, 9, {name: CategoricalShift(weights={rare: 3, common: 1})})
    share = (shifted[name].astype(str) == rare).mean()
    assert abs(share - 0.75) < 0.02
    assert set(shifted[name].astype(str)) == {rare, common}
    for category in (rare, common):  # each category keeps its own outcome rate
        inside = source[source[name].astype(str) == category]
        drawn = shifted[shifted[name].astype(str) == category]
        assert abs(positive_labels(drawn).mean() - positive_labels(inside).mean()) < 0.05


def test_weight_on_a_category_the_source_lacks_is_named(source, roles) -> None:
    name = roles.first("categorical")
    present = set(source[name].astype(str))
    absent = [str(v) for v in column_specs()[name].allowed or () if str(v) not in present]
    if not absent:
        thin = source[source[name].astype(str) != str(column_specs()[name].allowed[0])]
        absent = [str(column_specs()[name].allowed[0])]
    else:
        thin = source
    with pytest.raises(ConfigError, match=rf"shift\.{name}\.weights: no source rows have"):
        generate(thin, 100, 1, {name: CategoricalShift(weights={absent[0]: 1})})


@pytest.mark.parametrize(
    ("rows", "seed", "named"),
    [(0, 1, "rows must be"), (True, 1, "rows must be"), (10, -1, "seed must be")],
)
def test_bad_arguments_are_named(source, rows, seed, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        generate(source, rows, seed)


def test_shift_of_an_unknown_column_is_named(source) -> None:
    with pytest.raises(ConfigError, match="'nowhere' is not a feature"):
        generate(source, 10, 1, {"nowhere": NumericShift(add=1)})


def test_an_invalid_source_cannot_be_resampled(tmp_path: Path) -> None:
    path = tmp_path / "broken.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="cannot be resampled"):
        load_source(path)


def test_gzip_output_is_byte_reproducible(source, tmp_path: Path) -> None:
    frame = generate(source, 500, 2)
    write_csv(frame, tmp_path / "a.csv.gz")
    write_csv(frame, tmp_path / "b.csv.gz")
    assert (tmp_path / "a.csv.gz").read_bytes() == (tmp_path / "b.csv.gz").read_bytes()


def test_cli_shift_parsing_uses_configs_types_and_names_the_key(roles) -> None:
    assert Synthetic.model_fields["shift"].annotation == dict[str, NumericShift | CategoricalShift]
    name = roles.first("numeric")
    assert parse_shift(json.dumps({name: {"add": 10}})) == {name: NumericShift(add=10)}
    with pytest.raises(ConfigError, match="add"):
        parse_shift(json.dumps({name: {"add": "ten"}}))
    with pytest.raises(ConfigError, match="not valid JSON"):
        parse_shift('{"x": ')
    with pytest.raises(ConfigError, match="JSON object"):
        parse_shift("[1, 2]")


def cli(*arguments: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "credit_risk.synthetic", *arguments]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_cli_writes_rows_that_validate_and_rejects_a_bad_shift(tmp_path: Path, roles) -> None:
    category = roles.first("categorical")
    value = str(column_specs()[category].allowed[0])
    good = tmp_path / "good.csv"
    done = cli("--rows", "300", "--seed", "7", "--out", str(good),
               "--shift", json.dumps({category: {"weights": {value: 1}}}))  # fmt: skip
    assert done.returncode == 0, done.stderr
    typed, problems = validate(read_csv(good))
    assert typed is not None, problems
    assert len(typed) == 300 and (typed[category].astype(str) == value).all()
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left nothing behind

    bad = tmp_path / "bad.csv"
    done = cli("--rows", "10", "--seed", "1", "--out", str(bad),
               "--shift", json.dumps({"nowhere": {"add": 1}}))  # fmt: skip
    assert done.returncode == 1
    assert "'nowhere' is not a feature" in done.stderr and "Traceback" not in done.stderr
    assert not bad.exists()
