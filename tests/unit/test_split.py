from __future__ import annotations

import pandas as pd
import pytest

from credit_risk.config import Split
from credit_risk.errors import DataError
from credit_risk.schema import bad_risk
from credit_risk.split import split


def test_sizes_and_no_overlap(german: pd.DataFrame) -> None:
    train, test = split(german, Split(test_size=0.25, seed=1))
    assert (len(train), len(test)) == (750, 250)
    joined = pd.concat([train, test]).drop_duplicates()
    assert len(joined) == len(german.drop_duplicates())


def test_outcome_share_is_preserved(german: pd.DataFrame) -> None:
    train, test = split(german, Split(test_size=0.25, seed=1))
    assert bad_risk(train).mean() == pytest.approx(bad_risk(german).mean(), abs=0.005)
    assert bad_risk(test).mean() == pytest.approx(bad_risk(german).mean(), abs=0.005)


def test_same_seed_same_split_other_seed_other_split(german: pd.DataFrame) -> None:
    first, _ = split(german, Split(test_size=0.25, seed=1))
    again, _ = split(german, Split(test_size=0.25, seed=1))
    other, _ = split(german, Split(test_size=0.25, seed=2))
    pd.testing.assert_frame_equal(first, again)
    assert not first.equals(other)


def test_too_few_rows_of_an_outcome(german: pd.DataFrame) -> None:
    lonely = pd.concat([german[german["risk"] == 1], german[german["risk"] == 0].head(1)])
    with pytest.raises(DataError, match="at least two rows"):
        split(lonely, Split(test_size=0.25, seed=1))
