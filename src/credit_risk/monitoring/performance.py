"""Live quality: the logged scores against the outcomes that came later.

Outcomes are joined to the logged predictions by request id and row. Once at least
``monitor.performance.min_outcomes`` are known, the scores are measured with the same metrics
as the evaluation (`quality.classification_metrics`) and per group of each protected attribute
the log holds (`fairness.group_report`), then compared with the evaluation's metrics on the
held-out rows (``paths.metrics``, the model in models/) and with the fairness limit. Fewer
outcomes are reported as too few to judge, not as a pass: credit outcomes take months.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import pandas as pd

from credit_risk.config import BandEdges, FairnessRule, Gate, MonitorPerformance
from credit_risk.errors import DataError
from credit_risk.fairness import group_report, groups_of
from credit_risk.gate.rules import RuleResult, fairness_rules
from credit_risk.quality import classification_metrics
from credit_risk.schema import POSITIVE_CLASS, outcome_names

JOIN_KEYS = ["request_id", "row"]
# The checks that compare live metrics with the evaluation's (the baseline); the others do not.
ROC_AUC_CHECK, BRIER_CHECK = "performance.max_roc_auc_drop", "performance.max_brier_rise"

Status = Literal["judged", "too_few_outcomes"]


def labelled(predictions: pd.DataFrame, outcomes: pd.DataFrame) -> pd.DataFrame:
    """The predictions that have an outcome, with ``label`` (1 for the contract's positive
    outcome). Keys are request_id and row (row 0 when a frame has no row column)."""
    keys = [key for key in JOIN_KEYS if key in predictions.columns and key in outcomes.columns]
    if "request_id" not in keys:
        raise DataError("predictions and outcomes must both have a request_id column")
    words = outcome_names()
    known = set(words.values())
    strange = sorted(set(outcomes["outcome"].astype(str)) - known)
    if strange:
        raise DataError(f"outcomes hold {strange}; the contract's outcomes are {sorted(known)}")
    answers = outcomes[[*keys, "outcome"]].drop_duplicates(subset=keys, keep="first")
    joined = predictions.merge(answers, on=keys, how="inner", validate="many_to_one")
    joined["label"] = (joined["outcome"] == words[POSITIVE_CLASS]).astype(int)
    return joined


@dataclass(frozen=True)
class PerformanceResult:
    status: Status
    outcomes: int  # logged predictions in the window with a known outcome
    min_outcomes: int
    threshold: float
    live: dict[str, float] | None = None
    baseline: dict[str, float] | None = None  # the evaluation's metrics (paths.metrics)
    checks: list[RuleResult] = field(default_factory=list)
    fairness: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> list[RuleResult]:
        return [check for check in self.checks if check.status == "fail"]

    def as_dict(self) -> dict[str, Any]:
        found = asdict(self)
        found["checks"] = [check.as_dict() for check in self.checks]
        return found


def failure(check: RuleResult) -> str:
    """A failed check as one of the alarm's reasons."""
    return (
        f"{check.description}: {check.value} > {check.limit} (monitor.{check.name}); {check.detail}"
    )


def _drop_check(
    name: str, metric: str, live: float, baseline: float, limit: float, sign: float
) -> RuleResult:
    """How much worse live is than the evaluation: sign +1 when lower is worse (ROC AUC)."""
    worse = round(sign * (baseline - live), 6)
    change = "drop" if sign > 0 else "rise"
    return RuleResult(
        name=name,
        description=f"{metric} {change} since evaluation",
        value=worse,
        comparison="<=",
        limit=limit,
        status="pass" if worse <= limit else "fail",
        detail=f"evaluation: {baseline:.4f}, live: {live:.4f}",
    )


def judge(
    rows: pd.DataFrame,
    baseline: dict[str, float] | None,
    threshold: float,
    settings: MonitorPerformance,
    protected: dict[str, BandEdges],
    fairness: FairnessRule,
) -> PerformanceResult:
    """Measure labelled rows (``probability``, ``label``, protected columns if logged).

    ``threshold`` turns probabilities into decisions, as in evaluation; ``fairness`` is the
    gate's rule (its metric), judged with the monitor's gap limit and smallest group.
    """
    count = len(rows)
    if count < settings.min_outcomes or rows["label"].nunique() < 2:
        return PerformanceResult("too_few_outcomes", count, settings.min_outcomes, threshold)
    labels = rows["label"].astype(int).reset_index(drop=True)
    scores = rows["probability"].astype(float).reset_index(drop=True)
    live = classification_metrics(labels, scores, threshold)
    checks = []
    if baseline is not None:
        checks += [
            _drop_check(
                ROC_AUC_CHECK,
                "roc_auc",
                live["roc_auc"],
                baseline["roc_auc"],
                settings.max_roc_auc_drop,
                1.0,
            ),
            _drop_check(
                BRIER_CHECK,
                "brier",
                live["brier"],
                baseline["brier"],
                settings.max_brier_rise,
                -1.0,
            ),
        ]
    decisions = (scores >= threshold).astype(int)
    frame = rows.reset_index(drop=True)
    per_group = {}
    for column, edges in protected.items():
        if column in frame.columns and frame[column].notna().all():
            groups = groups_of(frame, column, edges)
            per_group[str(groups.name)] = group_report(labels, scores, decisions, groups)
    rule = fairness.model_copy(
        update={"max_gap": settings.max_fairness_gap, "min_group_rows": settings.min_group_rows}
    )
    # The gate's own fairness rule judges the live groups: one definition of "a gap".
    gate_like = Gate.model_construct(fairness=rule)
    for result in fairness_rules(per_group, gate_like):
        checks.append(replace(result, name="performance.max_fairness_gap"))
    return PerformanceResult(
        "judged", count, settings.min_outcomes, threshold, live, baseline, checks, per_group
    )
