from __future__ import annotations

import math

import pandas as pd
import pytest

from credit_risk.config import Split
from credit_risk.errors import DataError
from credit_risk.schema import positive_labels
from credit_risk.split import split


def test_sizes_and_no_overlap(source: pd.DataFrame) -> None:
    train, test = split(source, Split(test_size=0.25, seed=1))
    assert len(test) == math.ceil(0.25 * len(source)) and len(train) + len(test) == len(source)
    joined = pd.concat([train, test]).drop_duplicates()
    assert len(joined) == len(source.drop_duplicates())


def test_outcome_share_is_preserved(source: pd.DataFrame) -> None:
    train, test = split(source, Split(test_size=0.25, seed=1))
    assert positive_labels(train).mean() == pytest.approx(positive_labels(source).mean(), abs=0.005)
    assert positive_labels(test).mean() == pytest.approx(positive_labels(source).mean(), abs=0.005)


def test_same_seed_same_split_other_seed_other_split(source: pd.DataFrame) -> None:
    first, _ = split(source, Split(test_size=0.25, seed=1))
    again, _ = split(source, Split(test_size=0.25, seed=1))
    other, _ = split(source, Split(test_size=0.25, seed=2))
    pd.testing.assert_frame_equal(first, again)
    assert not first.equals(other)


def test_too_few_rows_of_an_outcome(source: pd.DataFrame) -> None:
    positive = positive_labels(source) == 1
    lonely = pd.concat([source[~positive], source[positive].head(1)])
    with pytest.raises(DataError, match="at least two rows"):
        split(lonely, Split(test_size=0.25, seed=1))
