from __future__ import annotations

import json

import pandas as pd
import pytest
from pydantic import ValidationError

from credit_risk.schema import EXAMPLE_APPLICANT, CreditApplications, column_specs
from credit_risk.serving.api_models import applicant_model

Applicant = applicant_model(optional={"sex"})


def test_the_example_satisfies_the_contract() -> None:
    # The table-level checks want 50+ rows with both outcomes; the example fills such a table.
    rows = [{**EXAMPLE_APPLICANT, "risk": i % 2} for i in range(50)]
    CreditApplications.validate(pd.DataFrame(rows))
    assert Applicant.model_validate(EXAMPLE_APPLICANT)


def test_fields_follow_the_contract() -> None:
    schema = Applicant.model_json_schema()
    specs = column_specs()
    assert set(schema["properties"]) == set(specs) - {"risk"}
    assert schema["properties"]["age"]["minimum"] == specs["age"].minimum
    assert schema["properties"]["age"]["maximum"] == specs["age"].maximum
    assert schema["properties"]["housing"]["enum"] == list(specs["housing"].allowed)
    assert "sex" not in schema["required"] and "age" in schema["required"]
    assert schema["additionalProperties"] is False
    assert schema["example"] == EXAMPLE_APPLICANT


@pytest.mark.parametrize(
    ("change", "location", "kind"),
    [
        ({"age": 17}, "age", "greater_than_equal"),
        ({"age": 101}, "age", "less_than_equal"),
        ({"age": "30"}, "age", "int_type"),
        ({"age": 30.5}, "age", "int_type"),
        ({"age": None}, "age", "int_type"),
        ({"housing": "castle"}, "housing", "literal_error"),
        ({"job": "2"}, "job", "value_error"),
        ({"job": True}, "job", "value_error"),
        ({"job": 2.0}, "job", "value_error"),
        ({"income": 1}, "income", "extra_forbidden"),
    ],
)
def test_bad_values_are_named(change: dict, location: str, kind: str) -> None:
    with pytest.raises(ValidationError) as error:
        Applicant.model_validate_json(json.dumps({**EXAMPLE_APPLICANT, **change}))
    (problem,) = error.value.errors()
    assert problem["loc"] == (location,) and problem["type"] == kind


def test_missing_required_field() -> None:
    fields = {k: v for k, v in EXAMPLE_APPLICANT.items() if k != "duration"}
    with pytest.raises(ValidationError, match="duration"):
        Applicant.model_validate(fields)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_are_rejected(literal: str) -> None:
    text = json.dumps({**EXAMPLE_APPLICANT, "credit_amount": 0}).replace(
        '"credit_amount": 0', f'"credit_amount": {literal}'
    )
    with pytest.raises(ValidationError):
        Applicant.model_validate_json(text)


def test_optional_feature_may_be_left_out() -> None:
    fields = {k: v for k, v in EXAMPLE_APPLICANT.items() if k != "sex"}
    assert Applicant.model_validate(fields).model_dump()["sex"] is None
