"""The service class in process (ASGI, no server): requests, errors, health and metrics."""

from __future__ import annotations

import importlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from starlette.testclient import TestClient

from credit_risk.schema import EXAMPLE_APPLICANT
from credit_risk.serving.scorer import ModelFiles, Scorer

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def service(model_tag: str) -> ModuleType:
    os.environ["CREDIT_RISK_MODEL_TAG"] = model_tag
    os.environ["CREDIT_RISK_PARAMS"] = str(ROOT / "params.yaml")
    return importlib.import_module("credit_risk.serving.service")


@pytest.fixture(scope="module")
def client(service: ModuleType) -> Iterator[TestClient]:
    with TestClient(service.CreditRiskService.to_asgi()) as client:
        deadline = time.monotonic() + 30
        while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        yield client


def test_scores_one_applicant(client: TestClient, model_tag: str, model_files: ModelFiles) -> None:
    response = client.post("/score", json={"applicant": EXAMPLE_APPLICANT})
    assert response.status_code == 200
    body = response.json()
    expected = Scorer.load(model_files)
    probability = expected.probabilities(expected.frame([EXAMPLE_APPLICANT]))[0]
    assert body["probability_bad"] == pytest.approx(probability, abs=1e-12)
    assert body["decision"] == ("decline" if probability >= 0.5 else "approve")
    assert body["model_version"] == model_tag == response.headers["x-model-version"]


def test_scores_a_batch_in_order(client: TestClient, source_split) -> None:
    rows = source_split[1].drop(columns="risk").head(50).to_dict("records")
    response = client.post("/score_batch", json={"applicants": rows})
    assert response.status_code == 200
    scores = response.json()["scores"]
    assert len(scores) == 50
    singles = [client.post("/score", json={"applicant": r}).json() for r in rows[:3]]
    # Batch and single-row arithmetic may differ in the last bit; nothing more.
    assert [s["probability_bad"] for s in scores[:3]] == pytest.approx(
        [s["probability_bad"] for s in singles], abs=1e-12
    )


def test_explains_a_score(client: TestClient) -> None:
    body = client.post("/explain", json={"applicant": EXAMPLE_APPLICANT}).json()
    contributions = [c["contribution"] for c in body["contributions"]]
    assert body["log_odds"] == pytest.approx(
        body["baseline_log_odds"] + sum(contributions), abs=1e-4
    )
    assert [abs(c) for c in contributions] == sorted((abs(c) for c in contributions), reverse=True)
    assert {c["feature"] for c in body["contributions"]} == set(EXAMPLE_APPLICANT) - {"sex"}


def test_client_request_id_is_echoed(client: TestClient) -> None:
    response = client.post(
        "/score", json={"applicant": EXAMPLE_APPLICANT}, headers={"x-request-id": "loan-42"}
    )
    assert response.headers["x-request-id"] == "loan-42"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"applicant": {**EXAMPLE_APPLICANT, "age": 12}}, ["applicant", "age"]),
        ({"applicant": {**EXAMPLE_APPLICANT, "purpose": "yacht"}}, ["applicant", "purpose"]),
        (
            {"applicant": {**EXAMPLE_APPLICANT, "credit_amount": "5000"}},
            ["applicant", "credit_amount"],
        ),
        ({"applicant": {**EXAMPLE_APPLICANT, "extra": 1}}, ["applicant", "extra"]),
        ({"applicant": EXAMPLE_APPLICANT, "debug": True}, ["debug"]),
        ({}, ["applicant"]),
        ([EXAMPLE_APPLICANT], []),
    ],
)
def test_bad_requests_get_400_naming_the_field(
    client: TestClient, payload: object, field: list
) -> None:
    response = client.post("/score", json=payload)
    assert response.status_code == 400
    assert [d["loc"] for d in response.json()["detail"]] == [field]


def test_batch_limits(client: TestClient, service: ModuleType) -> None:
    empty = client.post("/score_batch", json={"applicants": []})
    assert empty.status_code == 400 and empty.json()["detail"][0]["type"] == "too_short"
    limit = service.SETTINGS.max_batch_size
    over = client.post("/score_batch", json={"applicants": [EXAMPLE_APPLICANT] * (limit + 1)})
    assert over.status_code in (400, 413)


def test_health(client: TestClient) -> None:
    # /metrics needs the server's multiprocess set-up: tests/e2e/test_service_http.py covers it.
    assert client.get("/livez").status_code == 200
    assert client.get("/readyz").status_code == 200


def test_openapi_documents_a_working_example(client: TestClient) -> None:
    spec = client.get("/docs.json").json()
    applicant = spec["components"]["schemas"]["Applicant"]
    assert applicant["example"] == EXAMPLE_APPLICANT
    example_response = client.post("/score", json={"applicant": applicant["example"]})
    assert example_response.status_code == 200
    assert spec["paths"]["/score"]["post"]["requestBody"]["required"] is True


def test_rejected_requests_are_logged_without_their_values(service: ModuleType) -> None:
    try:
        service.Applicant.model_validate({**EXAMPLE_APPLICANT, "purpose": "secret-yacht"})
    except Exception as error:
        exc_info = (type(error), error, error.__traceback__)
    record = logging.LogRecord(
        "x", logging.ERROR, __file__, 1, "Exception on %s", ("/score",), exc_info
    )
    assert service.RejectedRequestFilter().filter(record)
    text = logging.Formatter().format(record)
    assert "secret-yacht" not in text and "purpose: literal_error" in text
    assert record.levelname == "WARNING"
