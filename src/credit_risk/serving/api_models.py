"""The service's request and response types, derived from the data contract.

Each record field has the contract's name, type, range and allowed categories; the request's
top-level keys (``applicant``/``applicants`` in the example) and the score's wording
(``probability_bad``, ``decline``/``approve``) are the contract's words too. Requests are
strict: unknown fields, wrong JSON types (no "1.5" for a number, no 1 for true), NaN and
infinity are rejected. Features the model does not use (``train.drop_features``) are accepted
but optional. Column names need not be Python identifiers: each field is declared under a
neutral Python name with the column name as its alias, which is what clients send and see.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, create_model

from credit_risk.schema import ColumnSpec, column_specs, contract, example_record, feature_columns

STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


def _integer_only(value: Any) -> Any:
    # A Literal of integers would take true for 1 and 2.0 for 2, even in strict mode.
    if type(value) is not int:
        raise ValueError(f"expected an integer, got {type(value).__name__}")
    return value


def _number_only(value: Any) -> Any:
    if type(value) not in (int, float):
        raise ValueError(f"expected a number, got {type(value).__name__}")
    return value


def _boolean_only(value: Any) -> Any:
    if type(value) is not bool:
        raise ValueError(f"expected true or false, got {type(value).__name__}")
    return value


def _field_type(spec: ColumnSpec) -> Any:
    if spec.python_type is bool:
        if spec.allowed == (False, True):
            return StrictBool
        return Annotated[Literal[spec.allowed], BeforeValidator(_boolean_only)]
    if spec.allowed is not None and spec.python_type is int:
        return Annotated[Literal[spec.allowed], BeforeValidator(_integer_only)]
    if spec.allowed is not None and spec.python_type is float:
        return Annotated[Literal[spec.allowed], BeforeValidator(_number_only)]
    if spec.allowed is not None:
        return Literal[spec.allowed]
    if spec.python_type is int:
        return Annotated[int, Field(ge=spec.minimum, le=spec.maximum)]
    if spec.python_type is float:
        return Annotated[float, Field(ge=spec.minimum, le=spec.maximum)]
    return str


def record_model(optional: set[str]) -> type[BaseModel]:
    """A pydantic model of one record; the ``optional`` features may be left out.

    Fields are named ``f0``, ``f1``, ... in Python with the column names as aliases: read a
    validated record back as a row with ``as_row``.
    """
    specs = column_specs()
    example = example_record()
    fields: dict[str, Any] = {}
    for position, name in enumerate(feature_columns()):
        spec = specs[name]
        kind = _field_type(spec)
        if name in optional:
            described = f"{spec.description} (optional: not used to score)".lstrip()
            fields[f"f{position}"] = (kind | None, Field(None, alias=name, description=described))
        else:
            fields[f"f{position}"] = (
                kind,
                Field(alias=name, description=spec.description, examples=[example[name]]),
            )
    return create_model(
        contract().entity.title().replace("_", ""),
        __config__=ConfigDict(**STRICT, json_schema_extra={"example": example}),
        **fields,
    )


def as_row(record: BaseModel) -> dict[str, Any]:
    """A validated record as ``{column: value}`` (optional features left out are None)."""
    return record.model_dump(by_alias=True)


def probability_field() -> str:
    """The name of the score's probability, e.g. ``probability_bad``."""
    return f"probability_{contract().target.positive_label}"


def score_model() -> type[BaseModel]:
    """One record's score in the contract's words: probability, decision, threshold, model."""
    terms = contract()
    above, below = terms.decisions.at_or_above_threshold, terms.decisions.below_threshold
    target = terms.target
    fields: dict[str, Any] = {
        probability_field(): (
            float,
            Field(
                ge=0.0,
                le=1.0,
                description=f"Probability that {target.column} is {target.positive!r} "
                f"({target.positive_label})",
            ),
        ),
        "decision": (
            Literal[above, below],
            Field(description=f"{above} when the probability is at or above the threshold"),
        ),
        "threshold": (float, Field(description="The model's decision threshold")),
        "model_version": (
            str,
            Field(description="BentoML model tag; its metadata names the MLflow run"),
        ),
    }
    return create_model(
        "Score", __doc__="One record's score, decision and the exact model behind it.", **fields
    )


class Contribution(BaseModel):
    feature: str
    value: bool | int | float | str
    contribution: float = Field(
        description="Added log-odds of the positive outcome (negative: less likely)"
    )


def explanation_model(score: type[BaseModel]) -> type[BaseModel]:
    """How a score came about: each feature's additive share of the log-odds."""
    return create_model(
        "ScoreExplanation",
        score=(score, ...),
        baseline_log_odds=(
            float,
            Field(description="Mean log-odds over the reference records"),
        ),
        log_odds=(float, Field(description="This record's log-odds: baseline + contributions")),
        contributions=(list[Contribution], Field(description="Largest effect first")),
        method=(str, ...),
    )


def scores_model(score: type[BaseModel]) -> type[BaseModel]:
    """A batch's scores, in the order of the request."""
    return create_model("Scores", scores=(list[score], ...))  # type: ignore[valid-type]
