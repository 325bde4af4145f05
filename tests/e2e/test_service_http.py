"""The service as a client meets it: `bentoml serve` on a loopback port, real HTTP."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.generation.modes import GenerationMode

from credit_risk.monitoring.predictions import logged_features, read_outcomes, read_predictions
from credit_risk.schema import contract, example_record, outcome_names
from credit_risk.serving.api_models import probability_field

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
FUZZ_EXAMPLES = 150  # per operation: several hundred requests over the service's endpoints
ONE, MANY = contract().entity, contract().entity_plural


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
def prediction_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The served test model's prediction log (never the repository's)."""
    return tmp_path_factory.mktemp("predictions")


@pytest.fixture(scope="module")
def server(
    model_tag: str, local_server, tmp_path_factory: pytest.TempPathFactory, prediction_log: Path
) -> Iterator[str]:
    """`bentoml serve` of the test model on a free loopback port."""
    command = ["bentoml", "serve", "credit_risk.serving.service:CreditRiskService",
               "--arg", f"model_tag={model_tag}",
               "--host", "127.0.0.1", "--port", "{port}"]  # fmt: skip
    log_file = tmp_path_factory.mktemp("serve") / "serve.log"
    with local_server(
        command, ROOT, log_file, "/readyz",
        CREDIT_RISK_MODEL_TAG=None, CREDIT_RISK_PARAMS=str(ROOT / "params.yaml"),
        CREDIT_RISK_PREDICTION_LOG=str(prediction_log),
    ) as base:  # fmt: skip
        yield base


def test_scores_over_http(server: str, model_tag: str) -> None:
    status, body = post_json(f"{server}/score", {ONE: example_record()})
    assert status == 200
    decisions = contract().decisions
    assert body["model_version"] == model_tag
    assert body["decision"] in (decisions.at_or_above_threshold, decisions.below_threshold)


def test_served_scores_equal_offline_predictions(
    server: str, trained, source_split, params, roles
) -> None:
    _, test = source_split
    rows = test.drop(columns=roles.target)
    status, body = post_json(f"{server}/score_batch", {MANY: rows.to_dict("records")})
    assert status == 200
    served = np.array([s[probability_field()] for s in body["scores"]])
    offline = trained.predict_proba(rows.drop(columns=params.train.drop_features))[:, 1]
    # The same model in the same process kind: equal up to the last bits of the arithmetic.
    np.testing.assert_allclose(served, offline, rtol=0, atol=1e-12)
    above = contract().decisions.at_or_above_threshold
    threshold = params.train.decision_threshold
    assert [s["decision"] == above for s in body["scores"]] == list(offline >= threshold)


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (json.dumps({ONE: {}}).encode(), "application/json", 400),
        (f'{{"{ONE}": '.encode(), "application/json", 400),
        (b"", "application/json", 400),
        (b"x=30", "application/x-www-form-urlencoded", 415),
        (b"--x\r\n", "multipart/form-data", 415),
        (b"{}", "text/plain", 415),
        (f'{{"{ONE}": "'.encode() + b"x" * 2_000_000 + b'"}', "application/json", 413),
    ],
)
def test_bad_requests_are_4xx_with_a_reason(
    server: str, body: bytes, content_type: str, status: int
) -> None:
    answered, headers, text = request(f"{server}/score", body, content_type)
    assert answered == status
    assert json.loads(text)["error"]
    assert headers["x-request-id"] and headers["x-model-version"]


def test_refusals_over_http_carry_the_clients_id(server: str, model_tag: str) -> None:
    for path, body, status in (("/no-such-page", None, 404), ("/score", b"{}", 400)):
        call = urllib.request.Request(
            f"{server}{path}", data=body, method="POST" if body else "GET",
            headers={"X-Request-ID": "client-7", "Content-Type": "application/json"},
        )  # fmt: skip
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(call, timeout=30)
        assert refused.value.code == status
        assert refused.value.headers["X-Request-ID"] == "client-7"
        assert refused.value.headers["X-Model-Version"] == model_tag


def test_health_metrics_and_ids(server: str, model_tag: str) -> None:
    assert request(f"{server}/livez")[0] == 200
    _, headers, _ = request(f"{server}/score", json.dumps({ONE: example_record()}).encode())
    assert headers["x-request-id"] and headers["x-model-version"] == model_tag
    status, _, metrics = request(f"{server}/metrics")
    text = metrics.decode()
    assert status == 200
    version = f'model_version="{model_tag}"'
    assert any(
        line.startswith("model_probability_bucket") and version in line
        for line in text.splitlines()
    )
    assert any(
        line.startswith("model_decisions_total") and version in line for line in text.splitlines()
    )
    assert "bentoml_service_request_total" in text


def test_the_docs_page_names_no_outside_host(server: str, model_tag: str) -> None:
    """The page, and everything it links to on the service, names no other host."""
    status, headers, page = request(f"{server}/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    text = page.decode()
    assert model_tag in text
    linked = set(re.findall(r"(?:href|src)=['\"]([^'\"]+)['\"]", text))
    assert linked and all(link.startswith("/") and not link.startswith("//") for link in linked)
    texts = [text]
    for link in sorted(linked):
        answered, _, body = request(f"{server}{link}")
        assert answered == 200, link
        texts.append(body.decode(errors="replace"))
    for content in texts:
        assert not re.search(r"(?i)(https?:)?//(?!127\.0\.0\.1)[a-z0-9-]+(\.[a-z0-9-]+)+", content)


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


# --- the prediction log and outcomes -----------------------------------------------------------


def scored_id(server: str, path: str, payload: object) -> str:
    status, headers, _ = request(f"{server}{path}", json.dumps(payload).encode())
    assert status == 200
    return headers["x-request-id"]


def test_every_scored_record_is_logged_with_its_request_id(
    server: str, prediction_log: Path, model_tag: str, params
) -> None:
    example = example_record()
    one = scored_id(server, "/score", {ONE: example})
    batch = scored_id(server, "/score_batch", {MANY: [example, example, example]})
    explained = scored_id(server, "/explain", {ONE: example})
    frame = read_predictions(prediction_log)
    mine = frame[frame["request_id"].isin([one, batch, explained])]
    assert sorted(zip(mine["request_id"], mine["row"], mine["endpoint"], strict=True)) == sorted(
        [(one, 0, "score"), (batch, 0, "score_batch"), (batch, 1, "score_batch"),
         (batch, 2, "score_batch"), (explained, 0, "explain")]
    )  # fmt: skip
    assert (mine["model_version"] == model_tag).all()
    _, body = post_json(f"{server}/score", {ONE: example})
    assert mine["probability"].round(12).nunique() == 1
    assert abs(mine["probability"].iloc[0] - body[probability_field()]) < 1e-12
    assert set(mine["decision"]) == {body["decision"]}
    settings = params.serve.prediction_log
    logged = logged_features(params.evaluate.protected_attributes, settings.keep_attributes)
    features = [c for c in frame.columns if c in example]
    assert features == logged
    for name in logged:
        assert (mine[name] == example[name]).all()


def outcomes(server: str, items: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    return post_json(f"{server}/outcomes", {"outcomes": items})


def test_outcomes_are_stored_once_and_all_or_nothing(server: str, prediction_log: Path) -> None:
    bad, good = outcome_names()[1], outcome_names()[0]
    one = scored_id(server, "/score", {ONE: example_record()})
    batch = scored_id(server, "/score_batch", {MANY: [example_record()] * 2})
    before = len(read_outcomes(prediction_log))

    status, body = outcomes(server, [{"request_id": one, "outcome": bad},
                                     {"request_id": "no-such-id", "outcome": good}])  # fmt: skip
    assert status == 404 and "no-such-id" in body["error"]
    status, body = outcomes(server, [{"request_id": batch, "row": 5, "outcome": bad}])
    assert status == 404 and "row 5" in body["error"]
    status, body = outcomes(server, [{"request_id": one, "outcome": "perhaps"}])
    assert status == 422 and "outcomes.0.outcome" in body["error"]
    status, body = outcomes(server, [{"request_id": one, "outcome": bad}, {"outcome": bad}])
    assert status == 422 and "outcomes.1.request_id" in body["error"]
    assert len(read_outcomes(prediction_log)) == before  # nothing stored by a refusal

    items = [{"request_id": one, "outcome": bad}, {"request_id": batch, "row": 1, "outcome": good}]
    assert outcomes(server, items) == (200, {"stored": 2})
    status, body = outcomes(server, [{"request_id": batch, "row": 0, "outcome": good},
                                     {"request_id": one, "outcome": good}])  # fmt: skip
    assert status == 409 and one in body["error"]
    stored = read_outcomes(prediction_log)
    assert len(stored) == before + 2
    assert sorted(stored[["request_id", "row", "outcome"]].values.tolist()[-2:]) == sorted(
        [[one, 0, bad], [batch, 1, good]]
    )


def test_outcomes_find_scores_from_every_worker(server: str, prediction_log: Path, params) -> None:
    """The service runs several workers, each with a file of its own: an outcome finds a score
    whichever worker wrote it."""
    ids = [scored_id(server, "/score", {ONE: example_record()}) for _ in range(40)]
    writers = {
        path.name for path in prediction_log.rglob("*.jsonl") if "outcomes" not in path.parts
    }
    items = [{"request_id": rid, "outcome": outcome_names()[0]} for rid in ids]
    assert outcomes(server, items) == (200, {"stored": len(ids)})
    # 40 requests on fresh connections reach every worker (each has its own file).
    assert len(writers) >= min(2, params.serve.workers)
