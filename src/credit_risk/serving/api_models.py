"""The service's request and response types, derived from the data contract.

Each applicant field has the contract's type, range and allowed categories. Requests are
strict: unknown fields, wrong JSON types (no "1.5" for a number), NaN and infinity are
rejected, and batches must hold between 1 and ``serve.max_batch_size`` applicants. Features
the model does not use (``train.drop_features``) are accepted but optional.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model

from credit_risk.schema import EXAMPLE_APPLICANT, ColumnSpec, column_specs, feature_columns

STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


def _integer_only(value: Any) -> Any:
    # A Literal of integers would take true for 1 and 2.0 for 2, even in strict mode.
    if type(value) is not int:
        raise ValueError(f"expected an integer, got {type(value).__name__}")
    return value


def _field_type(spec: ColumnSpec) -> Any:
    if spec.allowed is not None and spec.python_type is int:
        return Annotated[Literal[spec.allowed], BeforeValidator(_integer_only)]
    if spec.allowed is not None:
        return Literal[spec.allowed]
    if spec.python_type is int:
        return Annotated[int, Field(ge=spec.minimum, le=spec.maximum)]
    if spec.python_type is float:
        return Annotated[float, Field(ge=spec.minimum, le=spec.maximum)]
    return str


def applicant_model(optional: set[str]) -> type[BaseModel]:
    """A pydantic model of one applicant; the ``optional`` features may be left out."""
    specs = column_specs()
    fields: dict[str, Any] = {}
    for name in feature_columns():
        spec = specs[name]
        kind = _field_type(spec)
        example = EXAMPLE_APPLICANT[name]
        if name in optional:
            fields[name] = (
                kind | None,
                Field(None, description=f"{spec.description} (optional: not used to score)"),
            )
        else:
            fields[name] = (kind, Field(description=spec.description, examples=[example]))
    return create_model(
        "Applicant",
        __config__=ConfigDict(**STRICT, json_schema_extra={"example": EXAMPLE_APPLICANT}),
        **fields,
    )


class Score(BaseModel):
    """One applicant's score, decision and the exact model that produced it."""

    probability_bad: float = Field(ge=0.0, le=1.0, description="Probability of a bad credit risk")
    decision: Literal["approve", "decline"] = Field(
        description="decline when probability_bad is at or above the threshold"
    )
    threshold: float = Field(description="The model's decision threshold")
    model_version: str = Field(description="BentoML model tag; its metadata names the MLflow run")


class Scores(BaseModel):
    scores: list[Score]


class Contribution(BaseModel):
    feature: str
    value: int | float | str
    contribution: float = Field(description="Added log-odds of bad risk (negative: safer)")


class ScoreExplanation(BaseModel):
    """How the score came about: each feature's additive share of the log-odds."""

    score: Score
    baseline_log_odds: float = Field(description="Mean log-odds over the reference applicants")
    log_odds: float = Field(description="This applicant's log-odds: baseline + contributions")
    contributions: list[Contribution] = Field(description="Largest effect first")
    method: str
