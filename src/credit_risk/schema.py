"""The data contract: ``contract.yaml`` beside this module, parsed strictly, used everywhere.

The contract is the single source of truth for column names, types, ranges and categories, the
target and which of its values the model predicts, and the words the service uses. `validate`
checks raw data with the pandera schema built here; the feature lists, the model's encoders,
the synthetic source, the service's request model and the tests all derive from it. Adopting a
new data set (``python -m credit_risk.adopt``) writes a new contract; nothing else here changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
import pandera.pandas as pa
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    model_validator,
)

from credit_risk.yamlfile import load_yaml_model

CONTRACT_FILE = Path(__file__).with_name("contract.yaml")
POSITIVE_CLASS = 1  # the model's label for the contract's positive outcome (0 for the other)

ColumnType = Literal["int", "float", "str", "bool"]
PYTHON_TYPES: dict[str, type] = {"int": int, "float": float, "str": str, "bool": bool}
PANDAS_DTYPES = {"int": "int64", "float": "float64", "str": str, "bool": "bool"}
Value = StrictBool | StrictInt | StrictFloat | StrictStr
Word = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=40)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _fits(value: object, kind: str) -> bool:
    """Whether a value from the YAML file is of a column's type (YAML reads yes/no as bool)."""
    if kind == "bool":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind == "int":
        return isinstance(value, int)
    if kind == "float":
        return isinstance(value, int | float) and math.isfinite(value)
    return isinstance(value, str)


class ColumnRule(_Strict):
    """One column: its type, and either its allowed values or its inclusive range."""

    type: ColumnType
    allowed: list[Value] | None = None
    min: StrictInt | StrictFloat | None = None
    max: StrictInt | StrictFloat | None = None
    description: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> ColumnRule:
        if self.allowed is not None:
            if not self.allowed:
                raise ValueError("allowed: list at least one value")
            wrong = [v for v in self.allowed if not _fits(v, self.type)]
            if wrong:
                hint = " (quote words such as 'yes' or 'no': YAML reads them as true/false)"
                raise ValueError(f"allowed: {wrong} are not {self.type} values{hint}")
            if len(set(self.allowed)) != len(self.allowed):
                raise ValueError("allowed: values repeat")
            if self.min is not None or self.max is not None:
                raise ValueError("give either allowed values or a min/max range, not both")
        elif self.type == "str":
            raise ValueError(
                "a text column needs its categories under 'allowed' (free text is "
                "not a model input)"
            )
        for bound in (self.min, self.max):
            if bound is None:
                continue
            if self.type in {"str", "bool"}:
                raise ValueError(f"min/max do not apply to a {self.type} column")
            if not math.isfinite(bound) or (self.type == "int" and not float(bound).is_integer()):
                raise ValueError(f"min/max must be finite {self.type} values (got {bound})")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self

    def admits(self, value: object) -> bool:
        """Whether one value satisfies this rule."""
        if not _fits(value, self.type):
            return False
        if self.allowed is not None:
            return value in self.allowed
        number = float(value)  # type: ignore[arg-type]
        low = self.min if self.min is not None else -math.inf
        high = self.max if self.max is not None else math.inf
        return low <= number <= high


class Target(_Strict):
    column: str
    positive: Value  # the value whose probability the model predicts
    positive_label: Word
    negative_label: Word


class Decisions(_Strict):
    at_or_above_threshold: Word
    below_threshold: Word


class Direction(_Strict):
    """Moving ``feature`` from ``from`` to ``to`` raises the probability of the positive outcome."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    feature: str
    from_: Value = Field(alias="from")
    to: Value


class Contract(_Strict):
    entity: Word
    entity_plural: Word
    target: Target
    decisions: Decisions
    min_rows: Annotated[int, Field(ge=2)]
    min_outcome_share: Annotated[float, Field(gt=0.0, le=0.5)]
    columns: dict[str, ColumnRule]
    example: dict[str, Value]
    raises_probability: list[Direction] = []

    @model_validator(mode="after")
    def _consistent(self) -> Contract:
        if self.entity == self.entity_plural:
            raise ValueError("entity and entity_plural must differ (they name request fields)")
        if self.target.positive_label == self.target.negative_label:
            raise ValueError("target: positive_label and negative_label must differ")
        if self.decisions.at_or_above_threshold == self.decisions.below_threshold:
            raise ValueError("decisions: the two decisions must differ")
        rule = self.columns.get(self.target.column)
        if rule is None:
            raise ValueError(f"target.column {self.target.column!r} is not under columns")
        if rule.allowed is None or len(rule.allowed) != 2:
            raise ValueError(
                f"columns.{self.target.column}: the target needs exactly two allowed "
                "values (a binary outcome)"
            )
        if self.target.positive not in rule.allowed or not _fits(self.target.positive, rule.type):
            raise ValueError(
                f"target.positive {self.target.positive!r} is not one of "
                f"columns.{self.target.column}.allowed {rule.allowed}"
            )
        features = [name for name in self.columns if name != self.target.column]
        if not features:
            raise ValueError("columns: list at least one feature besides the target")
        missing = [name for name in features if name not in self.example]
        extra = [name for name in self.example if name not in features]
        if missing or extra:
            raise ValueError(
                f"example: must give every feature once (missing {missing}, not features {extra})"
            )
        for name, value in self.example.items():
            if not self.columns[name].admits(value):
                raise ValueError(f"example.{name}: {value!r} breaks the column's rule")
        for number, direction in enumerate(self.raises_probability):
            where = f"raises_probability.{number}"
            if direction.feature not in features:
                raise ValueError(f"{where}: {direction.feature!r} is not a feature")
            column = self.columns[direction.feature]
            for value in (direction.from_, direction.to):
                if not column.admits(value):
                    raise ValueError(f"{where}: {value!r} breaks {direction.feature}'s rule")
            if direction.from_ == direction.to:
                raise ValueError(f"{where}: from and to are the same value")
        return self


def load_contract(path: Path = CONTRACT_FILE) -> Contract:
    """Read and check a contract file; every problem is a ConfigError naming the key."""
    return load_yaml_model(path, Contract, "data contract", "the data contract is missing")


@cache
def contract() -> Contract:
    """The project's contract (read once per process, on first use)."""
    return load_contract()


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


def column_specs(terms: Contract | None = None) -> dict[str, ColumnSpec]:
    """Every column of a contract (the project's by default; target included), in order."""
    return _project_specs() if terms is None else specs_of(terms)


@cache
def _project_specs() -> dict[str, ColumnSpec]:
    return specs_of(contract())


def specs_of(terms: Contract) -> dict[str, ColumnSpec]:
    specs = {}
    for name, rule in terms.columns.items():
        allowed = rule.allowed
        if allowed is None and rule.type == "bool":
            allowed = [False, True]
        categorical = allowed is not None
        specs[name] = ColumnSpec(
            name=name,
            kind="categorical" if categorical else "numeric",
            python_type=PYTHON_TYPES[rule.type],
            description=rule.description,
            minimum=rule.min,
            maximum=rule.max,
            allowed=tuple(sorted(allowed, key=_order)) if allowed is not None else None,
        )
    return specs


def _order(value: Any) -> tuple[str, Any]:
    return (type(value).__name__, value)


def target_column() -> str:
    return contract().target.column


def feature_columns() -> list[str]:
    """Every contract column except the target, in contract order."""
    return [name for name in contract().columns if name != target_column()]


def example_record() -> dict[str, Any]:
    """The contract's example record (features only), in feature order."""
    example = contract().example
    return {name: example[name] for name in feature_columns()}


def positive_labels(df: pd.DataFrame) -> pd.Series:
    """The model's label: POSITIVE_CLASS where the target holds the contract's positive value."""
    return (df[target_column()] == contract().target.positive).astype(int)


def positive_outcome() -> str:
    """The positive outcome in words, e.g. ``risk = 0 (bad)``."""
    target = contract().target
    return f"{target.column} = {target.positive!r} ({target.positive_label})"


def outcome_names() -> dict[int, str]:
    """The model's labels named in the contract's words, e.g. {1: "bad", 0: "good"}."""
    target = contract().target
    return {POSITIVE_CLASS: target.positive_label, 1 - POSITIVE_CLASS: target.negative_label}


def data_schema(terms: Contract | None = None) -> pa.DataFrameSchema:
    """The pandera schema for raw data: types, ranges, categories, no missing values, and two
    table checks (enough rows; both outcomes present in a sensible share)."""
    terms = terms or contract()
    columns = {}
    for name, spec in column_specs(terms).items():
        checks = []
        if spec.allowed is not None and spec.python_type is not bool:
            checks.append(pa.Check.isin(list(spec.allowed)))
        if spec.minimum is not None:
            checks.append(pa.Check.greater_than_or_equal_to(spec.minimum))
        if spec.maximum is not None:
            checks.append(pa.Check.less_than_or_equal_to(spec.maximum))
        rule = terms.columns[name]
        columns[name] = pa.Column(
            PANDAS_DTYPES[rule.type],
            checks,
            nullable=False,
            coerce=True,
            description=spec.description or None,
        )
    target, share = terms.target, terms.min_outcome_share

    def enough_rows(df: pd.DataFrame) -> bool:
        return len(df) >= terms.min_rows

    def both_outcomes(df: pd.DataFrame) -> bool:
        positive = float((df[target.column] == target.positive).mean()) if len(df) else 0.0
        return share <= positive <= 1 - share

    return pa.DataFrameSchema(
        columns,
        checks=[
            pa.Check(enough_rows, error=f"the data set has fewer than {terms.min_rows} rows"),
            pa.Check(
                both_outcomes,
                error=f"both outcomes of {target.column!r} must occur, each in "
                f"{share:.0%} to {1 - share:.0%} of rows",
            ),
        ],
        strict=True,
        ordered=False,
    )
