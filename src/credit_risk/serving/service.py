"""The BentoML service: score applicants, explain a score, report health and metrics.

    CREDIT_RISK_MODEL_TAG=credit-risk:<version> bentoml serve credit_risk.serving.service

(`make serve` imports the pipeline's model and does this.) The model is a declared dependency,
so `bentoml build` packages exactly the tagged version. Settings come from the `serve` section
of params.yaml (path in CREDIT_RISK_PARAMS, default ./params.yaml).
"""

from __future__ import annotations

import gc
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import bentoml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from credit_risk.config import load_params
from credit_risk.errors import ConfigError
from credit_risk.schema import contract, example_record, feature_columns
from credit_risk.serving import MODEL_TAG_VARIABLE, PARAMS_VARIABLE
from credit_risk.serving.api_models import (
    Contribution,
    as_row,
    explanation_model,
    probability_field,
    record_model,
    score_model,
    scores_model,
)
from credit_risk.serving.guard import RequestGuard
from credit_risk.serving.metrics import record_scores
from credit_risk.serving.scorer import ModelFiles, Scorer

EXPLANATION_METHOD = "exact interventional Shapley values of the log-odds"

# Service logs go under bentoml.* so that BentoML's logging set-up shows them at INFO.
log = logging.getLogger("bentoml.credit_risk")
log.setLevel(logging.INFO)


class RejectedRequestFilter(logging.Filter):
    """BentoML logs a client's validation error as an ERROR with a traceback that repeats the
    request's values (personal data). Log it instead as one WARNING line naming only the
    fields and problems."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, ValidationError):
            problems = [
                f"{'.'.join(str(part) for part in e['loc']) or '(body)'}: {e['type']}"
                for e in error.errors(include_input=False)
            ]
            record.msg = json.dumps({"event": "rejected", "problems": problems})
            record.args = ()
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


logging.getLogger("bentoml._internal.server.http_app").addFilter(RejectedRequestFilter())


def _model_tag() -> str:
    tag = os.environ.get(MODEL_TAG_VARIABLE, "").strip()
    if not tag or tag.endswith(":latest") or ":" not in tag:
        raise ConfigError(
            f"set {MODEL_TAG_VARIABLE} to the exact model to serve, e.g. credit-risk:0123abcd "
            "(`python -m credit_risk.serving.model_store --from-pipeline` prints it)"
        )
    return tag


SETTINGS = load_params(Path(os.environ.get(PARAMS_VARIABLE, "params.yaml"))).serve
MODEL_TAG = _model_tag()
# The request model follows the served model: contract features it does not use are optional.
_USED: list[str] = list(bentoml.models.get(MODEL_TAG).info.metadata["features"])  # type: ignore[arg-type]
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


class ScoreRequest(bentoml.IODescriptor):
    model_config = ConfigDict(extra="forbid")
    record: Record = Field(alias=ENTITY)


class BatchRequest(bentoml.IODescriptor):
    model_config = ConfigDict(extra="forbid")
    records: Batch = Field(alias=ENTITIES)


@bentoml.service(
    name="credit-risk",
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
        # Load and warm up off the start-up path: /readyz answers 503 (not a hang) meanwhile,
        # and a model that fails to load leaves the service alive but never ready.
        threading.Thread(target=self._load, name="load-model", daemon=True).start()

    def _load(self) -> None:
        started = time.perf_counter()
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
        # Move everything loaded so far out of the collector's reach: full collections over the
        # libraries' objects paused requests for ~400 ms; frozen, they take ~30 ms.
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

    def _score(
        self, endpoint: str, applicants: list[dict[str, Any]], ctx: bentoml.Context
    ) -> list[Any]:
        started = time.perf_counter()
        scorer = self._scorer()
        probabilities = scorer.score(applicants)
        decisions = scorer.decisions(probabilities)
        record_scores(endpoint, probabilities, decisions)
        self._record(endpoint, ctx, started, len(applicants), decisions.count("decline"))
        return [
            Score(
                **{PROBABILITY: float(p)},
                decision=d,
                threshold=scorer.threshold,
                model_version=self.model_version,
            )
            for p, d in zip(probabilities, decisions, strict=True)
        ]

    def _record(
        self, endpoint: str, ctx: bentoml.Context, started: float, rows: int, declined: int
    ) -> None:
        """A structured log line per request, and the ids a caller can quote."""
        request_id = format(ctx.request.scope.get("request_id", 0), "016x")
        client_id = ctx.request.headers.get("x-request-id")
        ctx.response.headers["X-Request-ID"] = client_id or request_id
        ctx.response.headers["X-Model-Version"] = self.model_version
        entry = {
            "event": endpoint,
            "request_id": request_id,
            "client_request_id": client_id,
            "model": self.model_version,
            "applicants": rows,
            "declined": declined,
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
            method=EXPLANATION_METHOD,
        )


CreditRiskService.add_asgi_middleware(  # type: ignore[attr-defined]
    RequestGuard, max_body_bytes=SETTINGS.max_body_bytes
)
