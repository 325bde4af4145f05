"""`make gate`: judge the pipeline's model by the rules in params.yaml, and block if one fails.

    python -m credit_risk.gate.check

It scores the candidate (models/) and the registry's production model on the same held-out rows
in the same run, applies every rule, writes reports/gate.json and reports/gate.md, and exits 1
naming the failed rules. There is no dry run: a verdict that cannot block is no gate.

Why a command and not a DVC stage: the verdict depends on the registry (which model is in
production), which DVC cannot hash. A stage marked always-changed would rerun on every
`dvc repro` and `dvc exp run`, make every experiment fail (or wait) on the registry, and write
an ever-changing entry into dvc.lock. As a command it runs when a model is about to ship, and
its verdict records what it judged, so `register` refuses a verdict that is stale.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import joblib
import pandas as pd

from credit_risk.config import Params, load_params
from credit_risk.errors import CreditRiskError
from credit_risk.files import md5
from credit_risk.gate import report, rules
from credit_risk.lineage import model_fingerprint
from credit_risk.model import ModelFiles
from credit_risk.quality import measure
from credit_risk.registry.client import connect, model_files, version_by_alias
from credit_risk.registry.uris import PRODUCTION
from credit_risk.stage import run
from credit_risk.tracking import tracking_uri

log = logging.getLogger(__name__)


class GateBlockedError(CreditRiskError):
    """The model failed at least one rule; the message names them."""


def load_files(files: ModelFiles) -> tuple[Any, dict[str, Any]]:
    """The pipeline and its info from a model's files."""
    info = json.loads(files.info.read_text(encoding="utf-8"))
    return joblib.load(files.model), info


Production = tuple[dict[str, float] | None, int | None, str | None]


def production_metrics(params: Params, frame: pd.DataFrame) -> Production:
    """The production model's metrics on ``frame``, its version and fingerprint (or Nones)."""
    client = connect(params.tracking.experiment)
    version = version_by_alias(client, params.serve.model_name, PRODUCTION)
    if version is None:
        return None, None, None
    with model_files(version) as files:
        pipeline, info = load_files(files)
        fingerprint = model_fingerprint(*files.all())
    measured = measure(pipeline, info, frame, {})
    return measured.metrics, int(version.version), fingerprint


def current_state(params: Params, production_version: int | None) -> dict[str, Any]:
    """What a verdict must have judged to be fresh now (see report.stale_reasons)."""
    paths = params.paths
    return {
        "model_fingerprint": model_fingerprint(paths.model, paths.model_info, paths.background),
        "test_data_md5": md5(paths.test),
        "gate": params.gate.model_dump(),
        "registry": tracking_uri(),
        "model_name": params.serve.model_name,
        "production_version": production_version,
    }


def judge(params: Params) -> report.Verdict:
    """Measure the candidate and production, apply every rule, and return the verdict."""
    paths = params.paths
    pipeline, info = load_files(ModelFiles(paths.model, paths.model_info, paths.background))
    frame = pd.read_parquet(paths.test)
    candidate = measure(pipeline, info, frame, params.evaluate.protected_attributes)
    production, version, fingerprint = production_metrics(params, frame)
    results = rules.judge(
        {"metrics": candidate.metrics, "fairness": candidate.fairness},
        production,
        f"version {version}",
        params.gate,
    )
    state = current_state(params, version)
    return report.Verdict(
        passed=rules.passed(results),
        judged_at=datetime.now(UTC).isoformat(timespec="seconds"),
        model_type=str(info["model_type"]),
        rows=len(frame),
        production_fingerprint=fingerprint,
        rules=[result.as_dict() for result in results],
        metrics={"candidate": candidate.metrics, "production": production},
        **state,
    )


def main() -> None:
    params = load_params()
    verdict = judge(params)
    report.write(verdict, params.paths.gate_report, params.paths.gate_summary)
    if not verdict.passed:
        raise GateBlockedError(
            f"the model is blocked by {', '.join(verdict.failed_rules())}; "
            f"see {params.paths.gate_summary}"
        )
    log.info("the gate passes the model (%s)", params.paths.gate_summary)


if __name__ == "__main__":
    run("gate", main)
