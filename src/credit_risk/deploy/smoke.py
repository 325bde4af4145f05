"""The smoke test a release passes before it takes traffic, run against one running server.

``check(base_url, model_tag)`` asks the server, over HTTP:

- to score known rows (the model's own background rows from the BentoML store, or the caller's)
  with /score_batch, and one of them with /score; every probability must equal the one this
  process computes offline with the same stored model (``Scorer``), within
  ``MODEL_OUTPUT_TOLERANCE``, with the same decision;
- to score an empty record, which must be refused with a 4xx (never a 5xx);
- and every answer must name ``model_tag`` in its X-Model-Version header.

The first failed check raises a SmokeError naming it.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bentoml
import pandas as pd

from credit_risk.deploy.targets import DeployError
from credit_risk.reproducibility import MODEL_OUTPUT_TOLERANCE
from credit_risk.schema import contract
from credit_risk.serving.api_models import probability_field
from credit_risk.serving.guard import MODEL_VERSION_HEADER
from credit_risk.serving.scorer import ModelFiles, Scorer

BATCH_ROWS = 100  # rows per /score_batch request: well under any sensible serve.max_batch_size


class SmokeError(DeployError):
    """A running release answered a smoke-test request wrongly; the message names the check."""


@dataclass(frozen=True)
class SmokeReport:
    rows: int  # rows scored and compared
    requests: int
    max_difference: float  # largest |served - offline| probability


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def call(url: str, payload: object | None = None, timeout: float = 30.0) -> Answer:
    """One GET (no payload) or JSON POST; an HTTP error status is an answer, not an exception."""
    data = None if payload is None else json.dumps(payload, default=_plain).encode()
    headers = {"Content-Type": "application/json"} if data is not None else {}
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Answer(response.status, _lower(response.headers.items()), response.read())
    except urllib.error.HTTPError as error:
        return Answer(error.code, _lower(error.headers.items()), error.read())


def _lower(items: Any) -> dict[str, str]:
    return {str(key).lower(): str(value) for key, value in items}


def _plain(value: Any) -> Any:
    """numpy scalars (from a data frame) as plain JSON values."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def stored_model_folder(model_tag: str) -> Path:
    try:
        return Path(bentoml.models.get(model_tag).path)
    except bentoml.exceptions.NotFound:
        raise SmokeError(f"model {model_tag} is not in the local BentoML store") from None


def background_rows(model_tag: str) -> list[dict[str, Any]]:
    """The rows the stored model keeps to explain scores: real rows it was trained on."""
    files = ModelFiles.in_folder(stored_model_folder(model_tag))
    frame = pd.read_parquet(files.background)
    return [{str(key): value for key, value in row.items()} for row in frame.to_dict("records")]


def check(
    base_url: str,
    model_tag: str,
    rows: Sequence[Mapping[str, Any]] | None = None,
    timeout: float = 30.0,
) -> SmokeReport:
    """Run every smoke check against the server at ``base_url``; raise SmokeError on the first
    failure. ``rows`` default to the stored model's background rows."""
    given = [dict(row) for row in (rows if rows is not None else background_rows(model_tag))]
    if not given:
        raise SmokeError("no rows to smoke-test with")
    scorer = Scorer.load(ModelFiles.in_folder(stored_model_folder(model_tag)))
    features = set(scorer.features)
    expected = scorer.score([{k: v for k, v in row.items() if k in features} for row in given])
    decisions = scorer.decisions(expected)
    terms, probability = contract(), probability_field()
    requests = 0

    def answered(path: str, payload: object) -> Answer:
        nonlocal requests
        requests += 1
        answer = call(f"{base_url}{path}", payload, timeout)
        version = answer.headers.get(MODEL_VERSION_HEADER)
        if version != model_tag:
            raise SmokeError(
                f"POST {path} answered with X-Model-Version {version!r}, expected {model_tag!r}"
            )
        return answer

    served: list[tuple[float, str]] = []
    for start in range(0, len(given), BATCH_ROWS):
        batch = given[start : start + BATCH_ROWS]
        answer = answered("/score_batch", {terms.entity_plural: batch})
        if answer.status != 200:
            raise SmokeError(f"POST /score_batch answered {answer.status}: {answer.body[:300]!r}")
        served += [(s[probability], s["decision"]) for s in answer.json()["scores"]]
    single = answered("/score", {terms.entity: given[0]})
    if single.status != 200:
        raise SmokeError(f"POST /score answered {single.status}: {single.body[:300]!r}")
    body = single.json()
    served_one = (body[probability], body["decision"])
    if served_one != served[0]:
        raise SmokeError(f"POST /score gave {served_one}, /score_batch {served[0]} for one row")

    worst = 0.0
    for index, ((got, decision), want, wanted) in enumerate(
        zip(served, expected, decisions, strict=True)
    ):
        gap = abs(float(got) - float(want))
        worst = max(worst, gap)
        if not math.isfinite(gap) or gap > MODEL_OUTPUT_TOLERANCE:
            raise SmokeError(
                f"row {index}: served {probability} {got} differs from the offline {want} by "
                f"{gap:.3g} (tolerance {MODEL_OUTPUT_TOLERANCE:g})"
            )
        # A probability within the tolerance of the threshold may fall on either side of it.
        if decision != wanted and abs(float(want) - scorer.threshold) > MODEL_OUTPUT_TOLERANCE:
            raise SmokeError(f"row {index}: served decision {decision!r}, offline {wanted!r}")

    refused = answered("/score", {terms.entity: {}})
    if not 400 <= refused.status < 500:
        raise SmokeError(
            f"an empty {terms.entity} was answered {refused.status}, expected a 4xx refusal"
        )
    return SmokeReport(rows=len(given), requests=requests, max_difference=worst)
