"""`make monitor`: the prediction log's last window against the rows the model learned from.

    python -m credit_risk.monitoring.job [--log DIR | --env NAME] [--since WHEN] [--until WHEN]

--env names an environment served by the local target (deploy/<name>.yaml): its releases log
to .deploy/<name>/predictions/. It reads the predictions logged in the window
(``monitor.window_days`` up to now, or --since/--until, UTC) and every outcome, compares each
feature with the reference rows (``paths.<monitor.reference>``), measures live quality where
outcomes are known, and writes
three files (``monitor.report``, ``monitor.html``, ``monitor.summary``). It exits 0 when nothing
is wrong, and 1 naming the reasons when the alarm is raised, as `make gate` does when it blocks;
a job that fails (an unreadable log, bad settings) also exits 1, but writes no report, so a
workflow removes the old reports first and opens an issue when ``alarm`` is true in the report
this run wrote (``monitor.summary`` is the issue's body).

The alarm is raised by any of: at least ``monitor.drift.alarm_features`` drifted features;
fewer than ``monitor.min_rows`` predictions in the window (a silent log is not a healthy one);
a live-quality check that fails (ROC AUC drop, Brier rise, fairness gap), on the window's
pooled outcomes or on one model version's (credit_risk/monitoring/versions.py).
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from credit_risk.config import Params, load_params
from credit_risk.errors import ConfigError, CreditRiskError
from credit_risk.monitoring import drift, performance, report, versions
from credit_risk.monitoring.predictions import log_folder, read_outcomes, read_predictions
from credit_risk.stage import run

log = logging.getLogger(__name__)


class MonitorAlarmError(CreditRiskError):
    """The monitor raised the alarm; the message names the reasons."""


def monitor(
    params: Params,
    predictions: pd.DataFrame,
    outcomes: pd.DataFrame | None,
    reference: pd.DataFrame,
    baseline: dict[str, float] | None,
    threshold: float,
    window: tuple[datetime, datetime],
    log_name: str = "",
    baseline_version: str | None = None,
) -> dict[str, Any]:
    """The verdict on one window of logged predictions (a plain dict, as reports/monitor.json).

    ``predictions`` are the logged rows of the window (features, probability, request_id...),
    ``outcomes`` the known outcomes (request_id, row, outcome) or None, ``reference`` the rows
    the model learned from, ``baseline`` the evaluation's metrics, ``baseline_version`` the
    model version they measured (None: not known).
    """
    settings = params.monitor
    reasons: list[str] = []
    rows = len(predictions)
    logged_versions = (
        predictions["model_version"].value_counts().sort_index().to_dict()
        if "model_version" in predictions.columns
        else {}
    )
    drift_part: dict[str, Any]
    if rows < settings.min_rows:
        reasons.append(
            f"only {rows} predictions in the window (monitor.min_rows: {settings.min_rows}): "
            "too few to judge drift; is the service logging?"
        )
        drift_part = {"status": "too_few_rows", "features": [], "drifted": [], "not_logged": []}
    else:
        found = drift.compare(reference, predictions, settings.drift)
        drift_part = {
            "status": "judged",
            "features": [feature.as_dict() for feature in found.features],
            "drifted": found.drifted,
            "not_logged": found.not_logged,
        }
        if len(found.drifted) >= settings.drift.alarm_features:
            shown = ", ".join(
                f"{f.feature} ({f.effect_name} {f.effect:.3g}, p {f.p_adjusted:.2g})"
                for f in found.features
                if f.drifted
            )
            reasons.append(
                f"{len(found.drifted)} drifted feature(s) (monitor.drift.alarm_features: "
                f"{settings.drift.alarm_features}): {shown}"
            )
    drift_part["alarm_features"] = settings.drift.alarm_features

    joined = (
        performance.labelled(predictions, outcomes)
        if outcomes is not None and len(outcomes) and rows
        else predictions.iloc[:0].assign(label=pd.Series(dtype=int))
    )
    quality = performance.judge(
        joined,
        baseline,
        threshold,
        settings.performance,
        params.evaluate.protected_attributes,
        params.gate.fairness,
    )
    by_version = versions.judge_each(
        predictions,
        joined,
        baseline,
        baseline_version,
        threshold,
        settings.performance,
        params.evaluate.protected_attributes,
        params.gate.fairness,
        quality,
    )
    # With one version the pooled rows are its rows: its reasons say the same, naming it.
    pooled_failed = quality.failed if len(by_version) != 1 else []
    reasons += [performance.failure(check) for check in pooled_failed]
    reasons += versions.reasons(by_version, baseline_version)
    since, until = window
    return {
        "alarm": bool(reasons),
        "reasons": reasons,
        "judged_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "log": log_name,
        "window": {
            "since": since.isoformat(timespec="seconds"),
            "until": until.isoformat(timespec="seconds"),
        },
        "rows": rows,
        "model_versions": {str(k): int(v) for k, v in logged_versions.items()},
        "reference": {"paths_key": settings.reference, "rows": len(reference)},
        "drift": drift_part,
        "performance": quality.as_dict(),
        "by_model_version": versions.as_verdict(by_version, baseline_version),
        "settings": settings.model_dump(mode="json"),
    }


def _when(text: str) -> datetime:
    """An ISO date or time from the command line, as UTC (naive times are UTC)."""
    try:
        stamp = pd.Timestamp(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date or time: {text!r}") from None
    stamp = stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp.tz_convert(UTC)
    return stamp.to_pydatetime()


def add_window_arguments(parser: argparse.ArgumentParser, choose_log: bool = True) -> None:
    """--since and --until (which window), and unless ``choose_log`` is false, --log or --env
    (which prediction log)."""
    parser.add_argument("--since", type=_when, help="window start, ISO date or time, UTC")
    parser.add_argument("--until", type=_when, help="window end (exclusive; default: now)")
    if not choose_log:
        return
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--log", type=Path, help="the prediction log's folder (default: serve.prediction_log)"
    )
    where.add_argument(
        "--env", help="the log of this environment on the local target (deploy/<env>.yaml)"
    )


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m credit_risk.monitoring.job",
        description="Compare the logged predictions of a window with the training rows; "
        "exit 1 when the alarm is raised.",
    )
    add_window_arguments(parser)
    return parser.parse_args(argv)


def window_of(
    since: datetime | None, until: datetime | None, days: int
) -> tuple[datetime, datetime]:
    """The window [since, until): by default the last ``days`` days up to now."""
    end = until or datetime.now(UTC)
    start = since or end - timedelta(days=days)
    if start >= end:
        raise ConfigError(f"--since ({start.isoformat()}) must be before --until ({end})")
    return start, end


def _json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    found: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return found


def environment_log(name: str) -> Path:
    """The prediction log of environment ``name``, which the local target serves."""
    from credit_risk.deploy.environments import load_environment
    from credit_risk.deploy.local import Layout
    from credit_risk.deploy.targets import RUNTIME_DIR

    environment = load_environment(name)
    if environment.target != "local":
        raise ConfigError(
            f"environment {name!r} runs on the {environment.target} target: its prediction log "
            "is on that target's volume; copy the days to judge here and pass --log (LOG=)"
        )
    folder = Layout(RUNTIME_DIR / name).predictions
    if not folder.is_dir():
        raise ConfigError(
            f"{folder}: environment {name!r} has logged nothing here: is it deployed "
            f"(make deploy ENV={name}) and is serve.prediction_log.enabled true?"
        )
    return folder


def chosen_log(args: argparse.Namespace, params: Params) -> tuple[Path, str]:
    """The prediction log's folder that --log/--env chose (default: params), and its name."""
    if args.env:
        folder = environment_log(args.env)
        return folder, f"environment {args.env}: {folder}"
    folder = args.log or log_folder(params.serve.prediction_log)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: no prediction log here (--log, or serve.prediction_log)")
    return folder, str(folder)


def main(argv: Sequence[str] | None = None) -> None:
    args = _arguments(argv)
    params = load_params()
    folder, log_name = chosen_log(args, params)
    window = window_of(args.since, args.until, params.monitor.window_days)
    predictions = read_predictions(folder, *window)
    outcomes = read_outcomes(folder)
    reference = pd.read_parquet(getattr(params.paths, params.monitor.reference))
    baseline = _json(params.paths.metrics)
    info = _json(params.paths.model_info)
    threshold = float(
        info["decision_threshold"] if info else params.train.decision_threshold
    )  # the threshold the evaluation used, so live and evaluation metrics compare
    served = versions.pipeline_model_version(params)  # the model the baseline measured
    verdict = monitor(
        params, predictions, outcomes, reference, baseline, threshold, window, log_name, served
    )
    settings = params.monitor
    report.write(verdict, reference, predictions, settings.report, settings.html, settings.summary)
    if verdict["alarm"]:
        raise MonitorAlarmError(
            "alarm: " + "; ".join(verdict["reasons"]) + f" (see {settings.html})"
        )
    log.info(
        "no alarm: %d predictions, %d features compared (%s)",
        verdict["rows"],
        len(verdict["drift"]["features"]),
        settings.html,
    )


if __name__ == "__main__":
    run("monitor", main)
