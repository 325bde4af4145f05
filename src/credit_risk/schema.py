"""The data contract for raw applicant data: one pandera model, used everywhere.

The schema is the single source of truth for column names, types, ranges and allowed
categories. The pipeline validates raw data with it; the feature lists, the synthetic
generator and the service's request model are all derived from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

SEXES = ("female", "male")
JOBS = (0, 1, 2, 3)  # 0 unskilled non-resident, 1 unskilled resident, 2 skilled, 3 highly skilled
HOUSING = ("free", "own", "rent")
SAVING_ACCOUNTS = ("little", "moderate", "not_known", "quite rich", "rich")
CHECKING_ACCOUNTS = ("little", "moderate", "not_known", "rich")
PURPOSES = (
    "business",
    "car",
    "domestic appliances",
    "education",
    "furniture/equipment",
    "radio/TV",
    "repairs",
    "vacation/others",
)

TARGET = "risk"
GOOD, BAD = 1, 0  # values of TARGET; the model predicts the probability of BAD


class CreditApplications(pa.DataFrameModel):
    """One row per past loan applicant, with the observed credit risk."""

    risk: Series[int] = pa.Field(isin=[GOOD, BAD], description="1 = good credit risk, 0 = bad")
    sex: Series[str] = pa.Field(isin=list(SEXES), description="Applicant's sex (protected)")
    job: Series[int] = pa.Field(isin=list(JOBS), description="Skill level of the job, 0-3")
    housing: Series[str] = pa.Field(isin=list(HOUSING), description="Housing situation")
    saving_accounts: Series[str] = pa.Field(
        isin=list(SAVING_ACCOUNTS), description="Savings account balance band"
    )
    checking_account: Series[str] = pa.Field(
        isin=list(CHECKING_ACCOUNTS), description="Checking account balance band"
    )
    credit_amount: Series[int] = pa.Field(ge=100, le=100_000, description="Loan amount")
    duration: Series[int] = pa.Field(ge=1, le=120, description="Loan duration in months")
    purpose: Series[str] = pa.Field(isin=list(PURPOSES), description="What the loan is for")
    age: Series[int] = pa.Field(ge=18, le=100, description="Applicant's age in years (protected)")

    class Config:
        coerce = True
        strict = True
        ordered = False

    @pa.dataframe_check(error="the data set has fewer than 50 rows")
    @classmethod
    def enough_rows(cls, df: pd.DataFrame) -> bool:
        return len(df) >= 50

    @pa.dataframe_check(error="both outcomes (risk 0 and 1) must occur, each in 5% to 95% of rows")
    @classmethod
    def both_outcomes_present(cls, df: pd.DataFrame) -> bool:
        share_bad = float((df[TARGET] == BAD).mean()) if len(df) else 0.0
        return 0.05 <= share_bad <= 0.95


# One realistic applicant, used as the API's documented example and in smoke tests.
EXAMPLE_APPLICANT: dict[str, Any] = {
    "sex": "female",
    "job": 2,
    "housing": "rent",
    "saving_accounts": "little",
    "checking_account": "little",
    "credit_amount": 4500,
    "duration": 36,
    "purpose": "car",
    "age": 28,
}


@dataclass(frozen=True)
class ColumnSpec:
    """What the contract says about one column, in plain values."""

    name: str
    kind: str  # "numeric" or "categorical"
    python_type: type
    description: str
    minimum: float | None = None
    maximum: float | None = None
    allowed: tuple[Any, ...] | None = None


def column_specs() -> dict[str, ColumnSpec]:
    """Read names, types, ranges and categories back out of the pandera schema."""
    schema = CreditApplications.to_schema()
    specs: dict[str, ColumnSpec] = {}
    for name, column in schema.columns.items():
        stats: dict[str, Any] = {}
        for check in column.checks:
            stats.update(check.statistics)
        dtype = str(column.dtype)
        python_type: type = int if dtype.startswith("int") else float if "float" in dtype else str
        allowed = stats.get("allowed_values")
        specs[name] = ColumnSpec(
            name=name,
            kind="categorical" if allowed is not None or python_type is str else "numeric",
            python_type=python_type,
            description=column.description or "",
            minimum=stats.get("min_value"),
            maximum=stats.get("max_value"),
            allowed=tuple(sorted(allowed)) if allowed is not None else None,
        )
    return specs


def feature_columns() -> list[str]:
    """Every contract column except the target, in schema order."""
    return [name for name in column_specs() if name != TARGET]


def bad_risk(df: pd.DataFrame) -> pd.Series:
    """The model's label: 1 where the applicant turned out a bad credit risk."""
    return (df[TARGET] == BAD).astype(int)
