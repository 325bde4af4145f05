"""The synthetic generator: contract, determinism, realistic relations, shifts and the CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from credit_risk.config import CategoricalShift, NumericShift, Synthetic
from credit_risk.errors import ConfigError
from credit_risk.schema import BAD, TARGET, CreditApplications, column_specs, feature_columns
from credit_risk.synthetic import CATEGORY_COUNTS, DURATION_COUNTS, generate, parse_shift

ROWS = 50_000
SEED = 11


@pytest.fixture(scope="module")
def base() -> pd.DataFrame:
    return generate(ROWS, SEED)


def bad_rate(df: pd.DataFrame, mask: pd.Series | None = None) -> float:
    rows = df if mask is None else df[mask]
    return float((rows[TARGET] == BAD).mean())


def assert_other_features_unchanged(shifted: pd.DataFrame, base: pd.DataFrame, moved: str) -> None:
    # Draws do not depend on the shift, so the untouched features match value for value.
    others = [c for c in feature_columns() if c != moved]
    pd.testing.assert_frame_equal(shifted[others], base[others])


# --- the contract -----------------------------------------------------------------------------
def test_passes_the_contract_with_schema_order_and_types(base: pd.DataFrame) -> None:
    CreditApplications.validate(base, lazy=True)
    specs = column_specs()
    assert list(base.columns) == list(specs)
    for name, spec in specs.items():
        if spec.python_type is int:
            assert base[name].dtype == np.int64, name
        else:
            assert pd.api.types.is_string_dtype(base[name]), name


def test_smallest_frame_the_contract_accepts_passes_it() -> None:
    CreditApplications.validate(generate(50, 0), lazy=True)


def test_same_seed_same_frame_and_different_seed_different_frame() -> None:
    pd.testing.assert_frame_equal(generate(2_000, 3), generate(2_000, 3))
    assert not generate(2_000, 3).equals(generate(2_000, 4))


@pytest.mark.parametrize("rows", [0, -5])
def test_fewer_than_one_row_is_a_config_error(rows: int) -> None:
    with pytest.raises(ConfigError, match="rows"):
        generate(rows, 0)


def test_negative_seed_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="seed"):
        generate(100, -1)


# --- realism ----------------------------------------------------------------------------------
def test_categorical_marginals_follow_the_real_counts(base: pd.DataFrame) -> None:
    for name, counts in CATEGORY_COUNTS.items():
        expected = pd.Series(counts, dtype=float) / sum(counts.values())
        observed = base[name].value_counts(normalize=True).reindex(expected.index, fill_value=0)
        assert np.allclose(observed, expected, atol=0.01), name


def test_numeric_distributions_look_like_german_credit(base: pd.DataFrame) -> None:
    age, duration, amount = base["age"], base["duration"], base["credit_amount"]
    assert 30 <= age.median() <= 36 and age.min() >= 18 and age.quantile(0.99) <= 75
    assert age.mean() > age.median()  # right-skewed
    assert set(duration.unique()) <= set(DURATION_COUNTS)
    assert set(duration.value_counts().index[:2]) == {12, 24}
    assert 1_800 <= amount.median() <= 3_000
    assert np.corrcoef(np.log(amount), duration)[0, 1] > 0.4


def test_bad_share_is_about_thirty_percent(base: pd.DataFrame) -> None:
    assert abs(bad_rate(base) - 0.30) < 0.015


def test_risk_relations_point_the_way_the_real_data_does(base: pd.DataFrame) -> None:
    def higher(riskier: pd.Series, safer: pd.Series) -> bool:
        return bad_rate(base, riskier) > bad_rate(base, safer) + 0.03

    assert higher(base["duration"] >= 36, base["duration"] <= 12)
    assert higher(base["credit_amount"] >= 8_000, base["credit_amount"] <= 1_500)
    assert higher(base["checking_account"] == "little", base["checking_account"] == "not_known")
    assert higher(base["saving_accounts"] == "little", base["saving_accounts"].isin(["rich"]))
    assert higher(base["housing"] == "rent", base["housing"] == "own")
    assert higher(base["age"] <= 25, base["age"] >= 50)


def test_sex_has_no_effect_beyond_noise(base: pd.DataFrame) -> None:
    female = base["sex"] == "female"
    p, n_f, n_m = bad_rate(base), int(female.sum()), int((~female).sum())
    standard_error = math.sqrt(p * (1 - p) * (1 / n_f + 1 / n_m))
    assert abs(bad_rate(base, female) - bad_rate(base, ~female)) < 3 * standard_error


# --- shifts -----------------------------------------------------------------------------------
def test_numeric_shift_moves_the_mean_by_add_and_nothing_else(base: pd.DataFrame) -> None:
    shifted = generate(ROWS, SEED, {"age": NumericShift(add=5)})
    assert shifted["age"].mean() - base["age"].mean() == pytest.approx(5, abs=0.1)
    assert_other_features_unchanged(shifted, base, "age")
    assert bad_rate(shifted) < bad_rate(base)  # older applicants: lower risk, as in the model


def test_numeric_scale_shift_and_the_bad_rate_follows(base: pd.DataFrame) -> None:
    shifted = generate(ROWS, SEED, {"duration": NumericShift(scale=1.5)})
    ratio = shifted["duration"].mean() / base["duration"].mean()
    assert ratio == pytest.approx(1.5, abs=0.02)
    assert_other_features_unchanged(shifted, base, "duration")
    assert bad_rate(shifted) > bad_rate(base) + 0.03


def test_numeric_shift_is_clipped_to_the_contract_range() -> None:
    spec = column_specs()["age"]
    high = generate(1_000, 0, {"age": NumericShift(add=1_000)})
    low = generate(1_000, 0, {"age": NumericShift(scale=0.01)})
    assert (high["age"] == spec.maximum).all() and (low["age"] == spec.minimum).all()
    assert high["age"].dtype == np.int64
    CreditApplications.validate(high, lazy=True)


def test_categorical_shift_gives_the_requested_proportions(base: pd.DataFrame) -> None:
    shift = {"housing": CategoricalShift(weights={"rent": 3, "free": 1})}
    shifted = generate(ROWS, SEED, shift)
    shares = shifted["housing"].value_counts(normalize=True)
    assert shares.get("rent") == pytest.approx(0.75, abs=0.01)
    assert shares.get("free") == pytest.approx(0.25, abs=0.01)
    assert "own" not in shares
    assert_other_features_unchanged(shifted, base, "housing")
    assert bad_rate(shifted) > bad_rate(base) + 0.02  # nobody owns a home: riskier


def test_categorical_shift_of_an_integer_coded_column() -> None:
    shifted = generate(1_000, 0, {"job": CategoricalShift(weights={"3": 1})})
    assert (shifted["job"] == 3).all() and shifted["job"].dtype == np.int64


def test_shifts_config_accepts_are_accepted_here() -> None:
    raw = {"age": {"add": 10}, "housing": {"weights": {"rent": 1}}}
    settings = Synthetic.model_validate({"rows": 100, "seed": 0, "shift": raw})
    frame = generate(settings.rows, settings.seed, settings.shift)
    assert (frame["housing"] == "rent").all()


@pytest.mark.parametrize(
    ("shift", "named"),
    [
        ({"agee": NumericShift(add=1)}, "agee"),
        ({TARGET: NumericShift(add=1)}, TARGET),
        ({"sex": NumericShift(add=1)}, "sex"),
        ({"age": CategoricalShift(weights={"old": 1})}, "age"),
        ({"housing": CategoricalShift(weights={"castle": 1})}, "castle"),
        ({"housing": CategoricalShift(weights={"rent": 0})}, "housing"),
        ({"age": NumericShift(add=math.nan)}, "age"),
        ({"age": {"add": 1}}, "age"),  # a plain dict instead of a NumericShift
    ],
)
def test_invalid_shift_is_a_config_error_naming_the_column(shift: dict, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        generate(100, 0, shift)


def test_cli_shift_parsing_uses_configs_types_and_names_the_key() -> None:
    assert Synthetic.model_fields["shift"].annotation == dict[str, NumericShift | CategoricalShift]
    parsed = parse_shift('{"age": {"add": 10}, "housing": {"weights": {"rent": 1}}}')
    assert parsed == {"age": NumericShift(add=10), "housing": CategoricalShift(weights={"rent": 1})}
    with pytest.raises(ConfigError, match=r"age\..*add"):
        parse_shift('{"age": {"add": "ten"}}')
    with pytest.raises(ConfigError, match="not valid JSON"):
        parse_shift('{"age": ')
    with pytest.raises(ConfigError, match="JSON object"):
        parse_shift("[1, 2]")


# --- command line -----------------------------------------------------------------------------
class CliRun:
    """One ``python -m credit_risk.synthetic`` process, started now and awaited on demand."""

    def __init__(self, out: Path, shift: dict) -> None:
        self.out = out
        command = [sys.executable, "-m", "credit_risk.synthetic", "--rows", "500", "--seed", "7"]
        command += ["--out", str(out), "--shift", json.dumps(shift)]
        self._proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        self._stderr: str | None = None

    def finish(self) -> tuple[int, str]:
        """Wait for the process; its exit code and standard error."""
        if self._stderr is None:
            _, self._stderr = self._proc.communicate(timeout=120)
        return self._proc.returncode, self._stderr


@pytest.fixture(scope="module", autouse=True)
def cli_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, CliRun]]:
    """Start both CLI runs as the module starts, so interpreter start-up overlaps other tests."""
    tmp = tmp_path_factory.mktemp("synthetic_cli")
    runs = {
        "good": CliRun(tmp / "good.csv", {"age": {"add": 10}, "housing": {"weights": {"rent": 1}}}),
        "bad": CliRun(tmp / "bad.csv", {"agee": {"add": 10}}),
    }
    yield runs
    for run in runs.values():
        run.finish()


def test_cli_writes_a_csv_that_reads_back_and_validates(cli_runs: dict[str, CliRun]) -> None:
    code, stderr = cli_runs["good"].finish()
    assert code == 0, stderr
    out = cli_runs["good"].out
    frame = pd.read_csv(out)
    CreditApplications.validate(frame, lazy=True)
    assert list(frame.columns) == list(column_specs()) and len(frame) == 500
    assert (frame["housing"] == "rent").all()
    assert not list(out.parent.glob(".*.tmp"))  # the atomic write left nothing behind


def test_cli_bad_shift_exits_1_naming_the_problem(cli_runs: dict[str, CliRun]) -> None:
    code, stderr = cli_runs["bad"].finish()
    assert code == 1
    assert "agee" in stderr and "not a feature" in stderr
    assert "Traceback" not in stderr
    assert not cli_runs["bad"].out.exists()
