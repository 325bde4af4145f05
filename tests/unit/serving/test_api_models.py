"""The request and response types: derived from the contract, strict, in the contract's words."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from credit_risk.schema import column_specs, contract, example_record, feature_columns
from credit_risk.serving.api_models import (
    as_row,
    probability_field,
    record_model,
    score_model,
)


@pytest.fixture(scope="module")
def optional() -> str:
    """One feature the record model treats as optional: the last one."""
    return feature_columns()[-1]


@pytest.fixture(scope="module")
def Record(optional: str):  # noqa: N802 - a model class
    return record_model(optional={optional})


def required(roles, optional: str, kind: str, python_type: type | None = None) -> list[str]:
    return [name for name in roles.features(kind, python_type) if name != optional]


def test_the_example_is_a_valid_record(Record) -> None:
    assert as_row(Record.model_validate(example_record())) == example_record()


def test_fields_follow_the_contract(Record, optional: str, roles) -> None:
    schema = Record.model_json_schema()
    assert list(schema["properties"]) == feature_columns()  # column names, not Python names
    for name in feature_columns():
        spec, field = column_specs()[name], schema["properties"][name]
        if "anyOf" in field:  # an optional field: its type or null
            field = next(option for option in field["anyOf"] if option.get("type") != "null")
        if spec.kind == "numeric":
            assert (field.get("minimum"), field.get("maximum")) == (spec.minimum, spec.maximum)
        elif spec.python_type is not bool:
            assert field["enum"] == list(spec.allowed), name
    assert optional not in schema["required"]
    assert set(schema["required"]) == set(feature_columns()) - {optional}
    assert schema["additionalProperties"] is False
    assert schema["example"] == example_record()


def bad_values(roles, optional: str) -> list[tuple[str, object, str]]:
    """(column, value, pydantic error type) for each kind of bad value the contract implies."""
    cases: list[tuple[str, object, str]] = []
    for numeric in required(roles, optional, "numeric")[:2]:
        spec = column_specs()[numeric]
        kind = f"{spec.python_type.__name__}_type"
        if spec.maximum is not None:
            cases.append((numeric, roles.too_large(numeric), "less_than_equal"))
        cases += [(numeric, str(spec.maximum or 1), kind), (numeric, None, kind)]
        if spec.python_type is int:
            cases.append((numeric, 1.5, "int_type"))
    for name in required(roles, optional, "categorical", str)[:1]:
        cases.append((name, "no-such-category", "literal_error"))
    for name in required(roles, optional, "categorical", int)[:1]:
        allowed = column_specs()[name].allowed
        cases += [(name, str(allowed[0]), "value_error"), (name, float(allowed[0]), "value_error")]
        cases.append((name, True, "value_error"))
    for name in required(roles, optional, "categorical", bool)[:1]:
        cases += [(name, 1, "bool_type"), (name, "true", "bool_type")]
    assert cases, "the contract offers no field to get wrong"
    return cases


def test_bad_values_are_refused_for_that_reason(Record, roles, optional: str) -> None:
    for column, value, kind in bad_values(roles, optional):
        with pytest.raises(ValidationError) as error:
            Record.model_validate_json(json.dumps({**example_record(), column: value}))
        (problem,) = error.value.errors()
        assert (problem["loc"], problem["type"]) == ((column,), kind), (column, value, problem)


def test_unknown_field_is_named(Record) -> None:
    with pytest.raises(ValidationError) as error:
        Record.model_validate({**example_record(), "not a field": 1})
    (problem,) = error.value.errors()
    assert (problem["loc"], problem["type"]) == (("not a field",), "extra_forbidden")


def test_missing_required_field_is_named(Record, optional: str) -> None:
    needed = feature_columns()[0]
    assert needed != optional
    fields = {k: v for k, v in example_record().items() if k != needed}
    with pytest.raises(ValidationError) as error:
        Record.model_validate(fields)
    (problem,) = error.value.errors()
    assert (problem["loc"], problem["type"]) == ((needed,), "missing")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_are_refused_as_such(Record, roles, optional, literal: str) -> None:
    numeric = required(roles, optional, "numeric")[0]
    text = json.dumps({**example_record(), numeric: 0}).replace(
        f"{json.dumps(numeric)}: 0", f"{json.dumps(numeric)}: {literal}"
    )
    assert literal in text
    with pytest.raises(ValidationError) as error:
        Record.model_validate_json(text)
    (problem,) = error.value.errors()
    assert problem["loc"] == (numeric,)
    # A float column says "finite"; an integer column refuses any non-integer JSON number.
    assert problem["type"] in {"finite_number", "int_type", "int_from_float"}


def test_optional_feature_may_be_left_out(Record, optional: str) -> None:
    fields = {k: v for k, v in example_record().items() if k != optional}
    assert as_row(Record.model_validate(fields))[optional] is None


def test_score_speaks_the_contracts_words() -> None:
    terms = contract()
    Score = score_model()
    field = probability_field()
    assert field == f"probability_{terms.target.positive_label}"
    decisions = Score.model_json_schema()["properties"]["decision"]["enum"]
    assert decisions == [terms.decisions.at_or_above_threshold, terms.decisions.below_threshold]
    with pytest.raises(ValidationError):
        Score(**{field: 1.5, "decision": decisions[0], "threshold": 0.5, "model_version": "m:1"})
