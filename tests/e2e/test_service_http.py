"""The service as a client meets it: `bentoml serve` on a loopback port, real HTTP."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.generation.modes import GenerationMode

from credit_risk.schema import EXAMPLE_APPLICANT

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
FUZZ_EXAMPLES = 150  # per operation: several hundred requests over the service's endpoints


def request(url: str, body: bytes | None = None, content_type: str = "application/json"):
    """(status, headers, body) of one HTTP call; 4xx/5xx are answers, not exceptions."""
    headers = {"Content-Type": content_type} if body is not None else {}
    call = urllib.request.Request(
        url, data=body, headers=headers, method="POST" if body is not None else "GET"
    )
    try:
        with urllib.request.urlopen(call, timeout=30) as response:
            return (
                response.status,
                {k.lower(): v for k, v in response.headers.items()},
                response.read(),
            )
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


def post_json(url: str, payload: object) -> tuple[int, dict]:
    status, _, body = request(url, json.dumps(payload).encode())
    return status, json.loads(body)


@pytest.fixture(scope="module")
def server(model_tag: str, local_server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`bentoml serve` of the test model on a free loopback port."""
    command = ["bentoml", "serve", "credit_risk.serving.service:CreditRiskService",
               "--host", "127.0.0.1", "--port", "{port}"]  # fmt: skip
    log_file = tmp_path_factory.mktemp("serve") / "serve.log"
    with local_server(
        command, ROOT, log_file, "/readyz",
        CREDIT_RISK_MODEL_TAG=model_tag, CREDIT_RISK_PARAMS=str(ROOT / "params.yaml"),
    ) as base:  # fmt: skip
        yield base


def test_scores_over_http(server: str, model_tag: str) -> None:
    status, body = post_json(f"{server}/score", {"applicant": EXAMPLE_APPLICANT})
    assert status == 200
    assert body["model_version"] == model_tag and body["decision"] in ("approve", "decline")


def test_served_scores_equal_offline_predictions(server: str, trained, german_split) -> None:
    _, test = german_split
    rows = test.drop(columns="risk")
    status, body = post_json(f"{server}/score_batch", {"applicants": rows.to_dict("records")})
    assert status == 200
    served = np.array([s["probability_bad"] for s in body["scores"]])
    offline = trained.predict_proba(rows.drop(columns="sex"))[:, 1]
    np.testing.assert_allclose(served, offline, rtol=0, atol=1e-12)
    assert [s["decision"] == "decline" for s in body["scores"]] == list(offline >= 0.5)


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b'{"applicant": {"age": 30}}', "application/json", 400),
        (b'{"applicant": ', "application/json", 400),
        (b"", "application/json", 400),
        (b"age=30", "application/x-www-form-urlencoded", 415),
        (b"--x\r\n", "multipart/form-data", 415),
        (b"{}", "text/plain", 415),
        (b'{"applicant": "' + b"x" * 2_000_000 + b'"}', "application/json", 413),
    ],
)
def test_bad_requests_are_4xx_with_a_reason(
    server: str, body: bytes, content_type: str, status: int
) -> None:
    answered, _, text = request(f"{server}/score", body, content_type)
    assert answered == status
    assert json.loads(text)["error"]


def test_health_metrics_and_ids(server: str) -> None:
    assert request(f"{server}/livez")[0] == 200
    _, headers, _ = request(
        f"{server}/score", json.dumps({"applicant": EXAMPLE_APPLICANT}).encode()
    )
    assert headers["x-request-id"] and headers["x-model-version"].startswith("credit-risk:")
    status, _, metrics = request(f"{server}/metrics")
    text = metrics.decode()
    assert status == 200
    assert "credit_risk_probability_bad_bucket" in text
    assert "credit_risk_decisions_total" in text
    assert "bentoml_service_request_total" in text


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_fuzzed_requests_never_get_a_server_error(server: str, mode: GenerationMode) -> None:
    """Requests generated from the service's own OpenAPI document, valid ones and invalid ones:
    no response is a 5xx, and every response matches the documented schema."""
    api = schemathesis.openapi.from_url(f"{server}/docs.json")
    sent: list[str] = []
    for result in api.get_all_operations():
        operation = result.ok()
        if mode is GenerationMode.NEGATIVE and operation.method.upper() != "POST":
            continue  # nothing to get wrong in a GET without parameters

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=FUZZ_EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def call(case: schemathesis.Case) -> None:
            sent.append(case.operation.label)
            case.call_and_validate(base_url=server)

        call()
    scored = [label for label in sent if label.startswith("POST")]
    assert len(scored) >= 100, f"only {len(scored)} requests reached the scoring endpoints"
