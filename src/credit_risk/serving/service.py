"""The BentoML service: score records, explain a score, report health and metrics.

The service is told which stored model to serve by a bento argument, ``model_tag``, which a
built bento carries with the `serve` settings (`python -m credit_risk.serving.bento build`), so
``bentoml serve <bento>`` needs nothing else. For development, serve a stored model directly::

    bentoml serve credit_risk.serving.service:CreditRiskService --arg model_tag=<name>:<version>

(`make serve` imports the pipeline's model and does this; the settings then come from the
`serve` section of ./params.yaml, or the file CREDIT_RISK_PARAMS names.) The model is a declared
dependency, so `bentoml build` packages exactly the tagged version. "latest" is refused.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import threading
import time
from http import HTTPStatus
from pathlib import Path
from typing import Annotated, Any

import bentoml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema

from credit_risk.config import Serve, load_params
from credit_risk.errors import ConfigError
from credit_risk.monitoring.predictions import (
    OutcomeError,
    PredictionWriter,
    delete_expired,
    log_folder,
    logged_features,
    parse_outcomes,
    record_outcomes,
)
from credit_risk.schema import contract, example_record, feature_columns, outcome_names
from credit_risk.serving import MODEL_TAG_VARIABLE, PARAMS_VARIABLE, PROTECTED_ARGUMENT
from credit_risk.serving.api_models import (
    Contribution,
    as_row,
    explanation_model,
    probability_field,
    record_model,
    score_model,
    scores_model,
)
from credit_risk.serving.docs import docs_page, spec_info
from credit_risk.serving.guard import REQUEST_ID_HEADER, RequestGuard
from credit_risk.serving.metrics import record_scores
from credit_risk.serving.scorer import ModelFiles, Scorer
from credit_risk.serving.timeout import install as install_request_timeout

# Service logs go under bentoml.* so that BentoML's logging set-up shows them at INFO.
log = logging.getLogger("bentoml.credit_risk")
log.setLevel(logging.INFO)


class RejectedRequestFilter(logging.Filter):
    """BentoML logs a client's validation error as an ERROR with a traceback that repeats the
    request's values (personal data). Drop it: the guard logs every rejected request as one
    line with its request id, naming only the fields and problems."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, ValidationError)


logging.getLogger("bentoml._internal.server.http_app").addFilter(RejectedRequestFilter())


def _release() -> tuple[str, Serve, list[str]]:
    """The model to serve, the settings and the protected attributes (evaluate's): the bento's
    arguments, else the development ones."""
    given = vars(bentoml.use_arguments())
    tag = str(given.get("model_tag") or os.environ.get(MODEL_TAG_VARIABLE, "")).strip()
    if not tag or tag.endswith(":latest") or ":" not in tag:
        raise ConfigError(
            "name the exact model to serve: `--arg model_tag=<name>:<version>` (or "
            f"{MODEL_TAG_VARIABLE}); `python -m credit_risk.serving.model_store "
            "--from-pipeline` prints it, and a bento built by `make bento` carries it"
        )
    if given.get("serve") is not None:
        if given.get(PROTECTED_ARGUMENT) is None:
            raise ConfigError(f"the bento carries no {PROTECTED_ARGUMENT}: build it again")
        return tag, Serve.model_validate(given["serve"]), list(given[PROTECTED_ARGUMENT])
    params = load_params(Path(os.environ.get(PARAMS_VARIABLE, "params.yaml")))
    return tag, params.serve, list(params.evaluate.protected_attributes)


MODEL_TAG, SETTINGS, PROTECTED = _release()
# BentoML's request timeout would keep every finished request alive for the whole timeout.
install_request_timeout(MODEL_TAG)
# The request model follows the served model: contract features it does not use are optional.
_STORED: dict[str, Any] = dict(bentoml.models.get(MODEL_TAG).info.metadata)
_USED: list[str] = list(_STORED["features"])
Record: Any = record_model(optional=set(feature_columns()) - set(_USED))
Batch: Any = Annotated[list[Record], Field(min_length=1, max_length=SETTINGS.max_batch_size)]
Score: Any = score_model()
Scores: Any = scores_model(Score)
ScoreExplanation: Any = explanation_model(Score)
PROBABILITY = probability_field()
EXAMPLE = example_record()
# The request's keys are the contract's words ("applicant", "applicants"); in Python they are
# `record` and `records`, the endpoints' argument names.
ENTITY, ENTITIES = contract().entity, contract().entity_plural
# The log line counts the records that got the decision at or above the threshold, by its word.
SCORER_POSITIVE_KEY = contract().decisions.at_or_above_threshold
# The prediction log's columns: the features, less the protected attributes it does not keep.
LOGGED = logged_features(PROTECTED, SETTINGS.prediction_log.keep_attributes)
OUTCOME_WORDS = sorted(outcome_names().values())
OUTCOMES_EXAMPLE = [
    {"request_id": "4f2a9c1e0b7d3a55", "outcome": OUTCOME_WORDS[0]},
    {"request_id": "9d1e6b2f4c8a0e17", "row": 3, "outcome": OUTCOME_WORDS[-1]},
]


class ScoreRequest(bentoml.IODescriptor):
    model_config = ConfigDict(extra="forbid")
    record: Record = Field(alias=ENTITY)


class BatchRequest(bentoml.IODescriptor):
    model_config = ConfigDict(extra="forbid")
    records: Batch = Field(alias=ENTITIES)


# The documented item; the service checks items itself (parse_outcomes), so that a bad one is
# a 422 naming its field rather than BentoML's 400.
OUTCOME_SCHEMA = {
    "type": "object",
    "required": ["request_id", "outcome"],
    "additionalProperties": False,
    "properties": {
        "request_id": {"type": "string", "minLength": 1, "description": "The score's X-Request-ID"},
        "row": {"type": "integer", "minimum": 0, "default": 0, "description": "Place in a batch"},
        "outcome": {"type": "string", "enum": OUTCOME_WORDS},
    },
}
OUTCOME_RESPONSES = {
    "404": "A score not in the prediction log (or older than max_outcome_age_days); none stored",
    "409": "A score that has an outcome already, or named twice; none stored",
    "422": "An item's field is missing or wrong (the error names it); none stored",
}


class OutcomesRequest(bentoml.IODescriptor):
    outcomes: Annotated[
        list[dict[str, Any]],
        WithJsonSchema({"type": "array", "minItems": 1, "items": OUTCOME_SCHEMA}),
    ] = Field(
        min_length=1,
        description="What happened to scored records: each names a score by `request_id` (its "
        "X-Request-ID) and, for a /score_batch request, `row` (the record's place, from 0), "
        f"and gives `outcome`: one of {OUTCOME_WORDS}. All are stored, or none.",
        examples=[OUTCOMES_EXAMPLE],
    )


@bentoml.service(
    name=SETTINGS.model_name,
    workers=SETTINGS.workers,
    threads=SETTINGS.threads,
    traffic={"timeout": SETTINGS.timeout_seconds},
    http={"response": {"trace_id": True}},
)
class CreditRiskService:
    model = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:
        self.model_version = MODEL_TAG
        self.scorer: Scorer | None = None
        self.failure: str | None = None
        self._attempted = threading.Event()
        self.log_settings = SETTINGS.prediction_log
        self.log_folder = log_folder(self.log_settings)
        self.predictions: PredictionWriter | None = None
        if self.log_settings.enabled:
            self.predictions = PredictionWriter(
                self.log_folder,
                LOGGED,
                fsync=self.log_settings.fsync,
                retention_days=self.log_settings.retention_days,
            )
        # Load and warm up off the start-up path: /readyz answers 503 (not a hang) meanwhile,
        # and a model that fails to load leaves the service alive but never ready.
        threading.Thread(target=self._load, name="load-model", daemon=True).start()

    def _load(self) -> None:
        started = time.perf_counter()
        if self.predictions is not None:  # retention, also when no request comes today
            gone = delete_expired(self.log_folder, self.log_settings.retention_days)
            if gone:
                log.info(json.dumps({"event": "prediction_log_expired", "days": len(gone)}))
        try:
            scorer = Scorer.load(ModelFiles.in_folder(Path(self.model.path)))
            scorer.score([EXAMPLE])
            scorer.explain(EXAMPLE)
            self.scorer = scorer
        except Exception as exc:  # any failure means "not ready", with the reason in the log
            self.failure = f"{type(exc).__name__}: {exc}"
            failed = {"event": "model_load_failed", "model": MODEL_TAG, "error": self.failure}
            log.error(json.dumps(failed))
            return
        finally:
            self._attempted.set()
        # Move everything loaded so far out of the collector's reach, so that full collections
        # scan only what requests create (see timeout.py for the other half of that story).
        gc.collect()
        gc.freeze()
        seconds = round(time.perf_counter() - started, 3)
        log.info(json.dumps({"event": "ready", "model": MODEL_TAG, "load_seconds": seconds}))

    def __is_ready__(self) -> bool:
        return self.scorer is not None

    def _scorer(self) -> Scorer:
        # With several workers, /readyz may come from one that is ready while this one is still
        # loading: wait for the load (a fraction of a second) rather than fail the request.
        self._attempted.wait(timeout=SETTINGS.timeout_seconds)
        if self.scorer is None:
            raise bentoml.exceptions.ServiceUnavailable("the model is not loaded")
        return self.scorer

    def _score(self, endpoint: str, rows: list[dict[str, Any]], ctx: bentoml.Context) -> list[Any]:
        started = time.perf_counter()
        scorer = self._scorer()
        probabilities = scorer.score(rows)
        decisions = scorer.decisions(probabilities)
        record_scores(endpoint, self.model_version, probabilities, decisions)
        request_id = str(ctx.request.headers.get(REQUEST_ID_HEADER))
        if self.predictions is not None:
            self._log_predictions(request_id, endpoint, rows, probabilities, decisions)
        positive = decisions.count(scorer.positive_decision)
        self._record(endpoint, request_id, started, len(rows), positive)
        return [
            Score(
                **{PROBABILITY: float(p)},
                decision=d,
                threshold=scorer.threshold,
                model_version=self.model_version,
            )
            for p, d in zip(probabilities, decisions, strict=True)
        ]

    def _log_predictions(
        self,
        request_id: str,
        endpoint: str,
        rows: list[dict[str, Any]],
        probabilities: Any,
        decisions: list[str],
    ) -> None:
        """Every scored record to the prediction log, before the answer goes out: a score that
        cannot be logged is not given (an unlogged decision could not be traced)."""
        assert self.predictions is not None
        try:
            self.predictions.write(
                request_id, endpoint, self.model_version, rows, probabilities, decisions
            )
        except OSError as problem:
            failed = {"event": "prediction_log_failed", "request_id": request_id}
            log.error(json.dumps({**failed, "error": f"{type(problem).__name__}: {problem}"}))
            raise bentoml.exceptions.ServiceUnavailable(
                "the prediction log cannot be written"
            ) from None

    def _record(
        self, endpoint: str, request_id: str, started: float, rows: int, positive: int
    ) -> None:
        """A structured log line per request (the guard gave it its id and response headers)."""
        entry = {
            "event": endpoint,
            "request_id": request_id,
            "model": self.model_version,
            "rows": rows,
            SCORER_POSITIVE_KEY: positive,
            "ms": round((time.perf_counter() - started) * 1000, 2),
        }
        log.info(json.dumps(entry))

    @bentoml.api(route="/score", input_spec=ScoreRequest, output_spec=Score)
    def score(self, record: BaseModel, ctx: bentoml.Context) -> Any:
        """Score one record: probability of the positive outcome, decision, model version."""
        return self._score("score", [as_row(record)], ctx)[0]

    @bentoml.api(route="/score_batch", input_spec=BatchRequest, output_spec=Scores)
    def score_batch(self, records: list[BaseModel], ctx: bentoml.Context) -> Any:
        """Score up to serve.max_batch_size records in one request, in order."""
        return Scores(scores=self._score("score_batch", [as_row(r) for r in records], ctx))

    @bentoml.api(route="/explain", input_spec=ScoreRequest, output_spec=ScoreExplanation)
    def explain(self, record: BaseModel, ctx: bentoml.Context) -> Any:
        """Score one record and show each feature's contribution to the score."""
        fields = as_row(record)
        score = self._score("explain", [fields], ctx)[0]
        explanation = self._scorer().explain(fields)
        contributions = sorted(
            (
                Contribution(feature=name, value=fields[name], contribution=round(value, 6))
                for name, value in explanation.contributions.items()
            ),
            key=lambda c: abs(c.contribution),
            reverse=True,
        )
        return ScoreExplanation(
            score=score,
            baseline_log_odds=round(explanation.baseline_log_odds, 6),
            log_odds=round(explanation.log_odds, 6),
            contributions=contributions,
            method=explanation.method,
        )

    @bentoml.api(route="/outcomes", input_spec=OutcomesRequest)
    def outcomes(self, outcomes: list[dict[str, Any]], ctx: bentoml.Context) -> dict[str, Any]:
        """Store what happened to scored records, all or none: 200 {"stored": n}; 404 names a
        score not in the log (or older than serve.prediction_log.max_outcome_age_days), 409 one
        that has an outcome already, 422 a bad item's field."""
        request_id = ctx.request.headers.get(REQUEST_ID_HEADER)
        if not self.log_settings.enabled:
            ctx.response.status_code = HTTPStatus.NOT_FOUND
            return {"error": "this service keeps no prediction log (serve.prediction_log)"}
        try:
            stored = record_outcomes(
                self.log_folder, parse_outcomes(outcomes), self.log_settings.max_outcome_age_days
            )
        except OutcomeError as refused:
            ctx.response.status_code = refused.status
            return {"error": str(refused)}
        log.info(json.dumps({"event": "outcomes", "request_id": request_id, "stored": stored}))
        return {"stored": stored}


CreditRiskService.add_asgi_middleware(  # type: ignore[attr-defined]
    RequestGuard,
    max_body_bytes=SETTINGS.max_body_bytes,
    model_version=MODEL_TAG,
    docs_page=docs_page(MODEL_TAG, SETTINGS, set(_USED), float(_STORED["decision_threshold"])),
    spec_info=spec_info(MODEL_TAG, SETTINGS),
    responses={"/outcomes": OUTCOME_RESPONSES},
)
