"""The gate's rules: each compares one measured value with its limit from params.yaml.

Pure functions of measured quality (credit_risk.quality) and the `gate` settings, so a test can
judge any numbers. A rule that has nothing to judge (no production model yet, fewer than two
groups large enough) says so with the status "skipped"; it never passes silently.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from credit_risk.config import Gate

Status = Literal["pass", "fail", "skipped"]


@dataclass(frozen=True)
class RuleResult:
    name: str  # the params.yaml key (gate.<name>) that sets the limit
    description: str
    value: float | None
    comparison: Literal[">=", "<="]
    limit: float
    status: Status
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rule(
    name: str, description: str, value: float, comparison: Literal[">=", "<="], limit: float
) -> RuleResult:
    passed = value >= limit if comparison == ">=" else value <= limit
    return RuleResult(name, description, round(value, 6), comparison, limit, _status(passed))


def _status(passed: bool) -> Status:
    return "pass" if passed else "fail"


def absolute_rules(metrics: dict[str, float], gate: Gate) -> list[RuleResult]:
    """Thresholds every model must meet on its own."""
    return [
        _rule("min_roc_auc", "ROC AUC (ranking)", metrics["roc_auc"], ">=", gate.min_roc_auc),
        _rule(
            "max_brier", "Brier score (probability error)", metrics["brier"], "<=", gate.max_brier
        ),
        _rule(
            "max_calibration_error",
            "expected calibration error (are the probabilities probabilities?)",
            metrics["calibration_error"],
            "<=",
            gate.max_calibration_error,
        ),
    ]


def fairness_rules(fairness: dict[str, Any], gate: Gate) -> list[RuleResult]:
    """Per protected attribute: the largest gap of the named metric between large-enough groups."""
    rule = gate.fairness
    name = "fairness.max_gap"
    results = []
    for attribute, report in fairness.items():
        groups: dict[str, dict[str, Any]] = report["groups"]
        judged = {
            group: values[rule.metric]
            for group, values in groups.items()
            if values["rows"] >= rule.min_group_rows and values[rule.metric] is not None
        }
        small = sorted(g for g, v in groups.items() if v["rows"] < rule.min_group_rows)
        note = (
            f"; too small to judge (< {rule.min_group_rows} rows): {', '.join(small)}"
            if small
            else ""
        )
        description = f"largest {rule.metric} gap between {attribute} groups"
        if len(judged) < 2:
            detail = f"{len(judged)} group(s) large enough, nothing to compare{note}"
            results.append(
                RuleResult(name, description, None, "<=", rule.max_gap, "skipped", detail)
            )
            continue
        low = min(judged, key=judged.__getitem__)
        high = max(judged, key=judged.__getitem__)
        gap = judged[high] - judged[low]
        detail = f"{high}: {judged[high]:.3f} vs {low}: {judged[low]:.3f}{note}"
        results.append(
            RuleResult(
                name,
                description,
                round(gap, 6),
                "<=",
                rule.max_gap,
                _status(gap <= rule.max_gap),
                detail,
            )
        )
    return results


def regression_rules(
    candidate: dict[str, float], production: dict[str, float] | None, version: str, gate: Gate
) -> list[RuleResult]:
    """No worse than production on the same rows, within the stated tolerances."""
    limits = gate.no_regression
    # (rule, metric, limit, sign): sign +1 when lower is worse (ROC AUC), -1 when higher is.
    checks = [
        ("no_regression.max_roc_auc_drop", "roc_auc", limits.max_roc_auc_drop, 1.0),
        ("no_regression.max_brier_rise", "brier", limits.max_brier_rise, -1.0),
    ]
    results = []
    for name, metric, limit, sign in checks:
        change = "drop" if sign > 0 else "rise"
        description = f"{metric} {change} against production (same rows)"
        if production is None:
            detail = "no model in production yet: the absolute rules alone decide"
            results.append(RuleResult(name, description, None, "<=", limit, "skipped", detail))
            continue
        worse = sign * (production[metric] - candidate[metric])
        detail = (
            f"production ({version}): {production[metric]:.4f}, candidate: {candidate[metric]:.4f}"
        )
        status = _status(worse <= limit)
        results.append(RuleResult(name, description, round(worse, 6), "<=", limit, status, detail))
    return results


def judge(
    candidate: dict[str, Any],
    production: dict[str, float] | None,
    production_version: str,
    gate: Gate,
) -> list[RuleResult]:
    """Every rule, in the order the report lists them. ``candidate`` holds metrics and fairness."""
    return [
        *absolute_rules(candidate["metrics"], gate),
        *fairness_rules(candidate["fairness"], gate),
        *regression_rules(candidate["metrics"], production, production_version, gate),
    ]


def passed(results: list[RuleResult]) -> bool:
    """The verdict: no rule failed (skipped rules say why they had nothing to judge)."""
    return all(result.status != "fail" for result in results)
