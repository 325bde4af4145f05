"""The service class in process (ASGI, no server): requests, errors, ids, docs and health.

Every request is built from the contract (its example, its words), so these tests hold for an
adopted data set.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest
from starlette.testclient import TestClient

from credit_risk.errors import ConfigError
from credit_risk.schema import contract, example_record, feature_columns
from credit_risk.serving.api_models import probability_field
from credit_risk.serving.scorer import ModelFiles, Scorer

ROOT = Path(__file__).resolve().parents[3]
ONE, MANY = contract().entity, contract().entity_plural
EXAMPLE = example_record()


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


def test_scores_one_record(client: TestClient, model_tag: str, model_files: ModelFiles) -> None:
    response = client.post("/score", json={ONE: EXAMPLE})
    assert response.status_code == 200
    body = response.json()
    expected = Scorer.load(model_files)
    probability = expected.probabilities(expected.frame([EXAMPLE]))[0]
    assert body[probability_field()] == pytest.approx(probability, abs=1e-12)
    decisions = contract().decisions
    above = probability >= expected.threshold
    assert body["decision"] == (
        decisions.at_or_above_threshold if above else decisions.below_threshold
    )
    assert body["model_version"] == model_tag == response.headers["x-model-version"]


def test_scores_a_batch_in_order(client: TestClient, source_split, roles) -> None:
    rows = source_split[1].drop(columns=roles.target).head(50).to_dict("records")
    response = client.post("/score_batch", json={MANY: rows})
    assert response.status_code == 200
    scores = response.json()["scores"]
    assert len(scores) == 50
    singles = [client.post("/score", json={ONE: r}).json() for r in rows[:3]]
    # Batch and single-row arithmetic may differ in the last bit; nothing more.
    field = probability_field()
    assert [s[field] for s in scores[:3]] == pytest.approx([s[field] for s in singles], abs=1e-12)


def test_explains_a_score(client: TestClient, params) -> None:
    body = client.post("/explain", json={ONE: EXAMPLE}).json()
    contributions = [c["contribution"] for c in body["contributions"]]
    assert body["log_odds"] == pytest.approx(
        body["baseline_log_odds"] + sum(contributions), abs=1e-4
    )
    assert [abs(c) for c in contributions] == sorted((abs(c) for c in contributions), reverse=True)
    used = set(feature_columns()) - set(params.train.drop_features)
    assert {c["feature"] for c in body["contributions"]} == used
    assert "Shapley" in body["method"]


def test_client_request_id_is_echoed_and_a_new_one_given_otherwise(client: TestClient) -> None:
    response = client.post("/score", json={ONE: EXAMPLE}, headers={"x-request-id": "case-42"})
    assert response.headers["x-request-id"] == "case-42"
    generated = client.post("/score", json={ONE: EXAMPLE}).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{16}", generated)
    forged = client.post("/score", json={ONE: EXAMPLE}, headers={"x-request-id": "a\tb c"})
    assert forged.headers["x-request-id"] != "a\tb c"


def bad_payloads(roles) -> list[tuple[object, list]]:
    """(payload, the location the 400 must name): one per kind of mistake."""
    numeric, category = roles.bounded_numeric(), roles.first("categorical")
    return [
        ({ONE: {**EXAMPLE, numeric: roles.too_large(numeric)}}, [ONE, numeric]),
        ({ONE: {**EXAMPLE, category: roles.unknown_category(category)}}, [ONE, category]),
        ({ONE: {**EXAMPLE, numeric: str(EXAMPLE[numeric])}}, [ONE, numeric]),
        ({ONE: {**EXAMPLE, "not a field": 1}}, [ONE, "not a field"]),
        ({ONE: EXAMPLE, "debug": True}, ["debug"]),
        ({}, [ONE]),
        ([EXAMPLE], []),
    ]


def test_bad_requests_get_400_naming_the_field(client: TestClient, roles) -> None:
    for payload, field in bad_payloads(roles):
        response = client.post("/score", json=payload, headers={"x-request-id": "bad-1"})
        assert response.status_code == 400, payload
        assert [d["loc"] for d in response.json()["detail"]] == [field], payload
        assert response.headers["x-request-id"] == "bad-1"  # refused responses carry it too


def test_every_refusal_carries_the_ids_and_is_logged_with_its_id(
    client: TestClient, service: ModuleType, model_tag: str, caplog: pytest.LogCaptureFixture
) -> None:
    too_big = b"{" + b" " * service.SETTINGS.max_body_bytes + b"}"
    refusals = [
        ("POST", "/score", b"x=1", "text/plain", 415),
        ("POST", "/score", too_big, "application/json", 413),
        ("POST", "/score", b"{}", "application/json", 400),
        ("GET", "/no-such-page", None, None, 404),
        ("GET", "/score", None, None, 405),
    ]
    for number, (method, path, body, content_type, status) in enumerate(refusals):
        headers = {"x-request-id": f"refused-{number}"}
        if content_type:
            headers["content-type"] = content_type
        caplog.clear()
        with caplog.at_level(logging.INFO):
            response = client.request(method, path, content=body, headers=headers)
        assert response.status_code == status, path
        assert response.headers["x-request-id"] == f"refused-{number}", status
        assert response.headers["x-model-version"] == model_tag, status
        (line,) = [r.getMessage() for r in caplog.records if '"rejected"' in r.getMessage()]
        assert json.loads(line) | {"problems": []} == {
            "event": "rejected", "request_id": f"refused-{number}", "path": path,
            "status": status, "problems": [],
        }  # fmt: skip
    generated = client.get("/no-such-page").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{16}", generated)


@pytest.mark.parametrize("tag", ["credit-risk:latest", "credit-risk", " "])
def test_the_model_to_serve_must_be_named_exactly(
    service: ModuleType, tag: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "latest" (or no version) would serve whichever model was stored last: refused."""
    monkeypatch.delenv("CREDIT_RISK_MODEL_TAG")
    monkeypatch.setattr(service.bentoml, "use_arguments", lambda: SimpleNamespace(model_tag=tag))
    with pytest.raises(ConfigError, match="name the exact model to serve"):
        service._release()


def test_batch_limits(client: TestClient, service: ModuleType) -> None:
    empty = client.post("/score_batch", json={MANY: []})
    assert empty.status_code == 400 and empty.json()["detail"][0]["type"] == "too_short"
    limit = service.SETTINGS.max_batch_size
    over = client.post("/score_batch", json={MANY: [EXAMPLE] * (limit + 1)})
    assert over.status_code in (400, 413)


def test_health(client: TestClient) -> None:
    # /metrics needs the server's multiprocess set-up: tests/e2e/test_service_http.py covers it.
    assert client.get("/livez").status_code == 200
    assert client.get("/readyz").status_code == 200


def test_openapi_documents_a_working_example(
    client: TestClient, service: ModuleType, model_tag: str
) -> None:
    spec = client.get("/docs.json").json()
    info = spec["info"]
    assert info["version"] == model_tag and model_tag in info["description"]
    assert info["title"] == f"{service.SETTINGS.model_name} scoring service"
    assert not re.search(r"https?://", json.dumps(spec)), "the document names an outside host"
    request = spec["paths"]["/score"]["post"]["requestBody"]
    assert request["required"] is True
    body = request["content"]["application/json"]["schema"]
    assert body["required"] == [ONE] and body["additionalProperties"] is False
    record = spec["components"]["schemas"][body["properties"][ONE]["$ref"].split("/")[-1]]
    assert record["example"] == EXAMPLE
    assert client.post("/score", json={ONE: record["example"]}).status_code == 200


def test_the_docs_page_is_the_projects_own(client: TestClient, model_tag: str) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    text = page.text
    assert model_tag in text and probability_field() in text
    for name in feature_columns():
        assert f"<code>{name}</code>" in text or name in text
    # No outside host: no absolute URL, no protocol-relative one, no script at all.
    assert not re.search(r"(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text), "an outside host"
    assert "<script" not in text.lower() and "<img" not in text.lower()
    assert client.get("/docs").text == text


def test_a_rejected_request_is_logged_once_without_its_values(
    client: TestClient, roles, caplog: pytest.LogCaptureFixture
) -> None:
    category = roles.first("categorical")
    secret = "secret-value-" + "x" * 8
    with caplog.at_level(logging.INFO):
        response = client.post(
            "/score", json={ONE: {**EXAMPLE, category: secret}}, headers={"x-request-id": "r-7"}
        )
    assert response.status_code == 400
    assert secret not in caplog.text
    (line,) = [r.getMessage() for r in caplog.records if '"rejected"' in r.getMessage()]
    entry = json.loads(line)
    assert entry["request_id"] == "r-7" and entry["status"] == 400
    assert any(problem.startswith(f"{ONE}.{category}:") for problem in entry["problems"])
