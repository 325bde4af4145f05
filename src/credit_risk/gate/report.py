"""The gate's verdict, written twice: reports/gate.json for machines, reports/gate.md for people.

The JSON also records what was judged (the model's fingerprint, the held-out rows' hash, the
rules in force and the production version compared against), so that whoever acts on a verdict
(`register`) can tell a fresh one from a stale one and refuse the latter.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from credit_risk.errors import ConfigError
from credit_risk.files import write_json, write_with
from credit_risk.gate.rules import RuleResult

MARKS = {"pass": "✅ pass", "fail": "❌ fail", "skipped": "⏭️ skipped"}


class Verdict(BaseModel):
    """reports/gate.json, as written by `make gate`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    passed: bool
    judged_at: str
    model_fingerprint: str
    model_type: str
    test_data_md5: str
    rows: int
    gate: dict[str, Any]
    registry: str
    model_name: str
    production_version: int | None
    production_fingerprint: str | None
    rules: list[dict[str, Any]]
    metrics: dict[str, dict[str, float] | None]

    def failed_rules(self) -> list[str]:
        return [
            f"{rule['name']} ({rule['value']} {rule['comparison']} {rule['limit']} fails)"
            for rule in self.rules
            if rule["status"] == "fail"
        ]


def write(verdict: Verdict, report: Path, summary: Path) -> None:
    write_json(report, verdict.model_dump())
    text = markdown(verdict)
    write_with(summary, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def read(report: Path) -> Verdict:
    """A verdict file; a missing or malformed one is a ConfigError saying to run the gate."""
    try:
        raw = json.loads(report.read_text(encoding="utf-8"))
        return Verdict.model_validate(raw)
    except FileNotFoundError:
        raise ConfigError(f"{report}: no gate verdict; run `make gate` first") from None
    except (json.JSONDecodeError, ValueError) as problem:
        raise ConfigError(f"{report}: not a gate verdict ({problem}); run `make gate`") from None


def stale_reasons(verdict: Verdict, current: dict[str, Any]) -> list[str]:
    """Why ``verdict`` does not judge the current situation (an empty list: it does).

    ``current`` holds the same keys as the verdict for what was judged: model_fingerprint,
    test_data_md5, gate, registry, model_name, production_version.
    """
    labels = {
        "model_fingerprint": "the model files changed",
        "test_data_md5": "the held-out rows changed",
        "gate": "the gate's rules in params.yaml changed",
        "registry": "another registry",
        "model_name": "another registered model name",
        "production_version": "production moved",
    }
    recorded = verdict.model_dump()
    return [
        f"{label} ({recorded[key]} then, {current[key]} now)"
        for key, label in labels.items()
        if recorded[key] != current[key]
    ]


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value + 0.0:.4g}"  # + 0.0: no "-0"


def markdown(verdict: Verdict) -> str:
    """The verdict as the pull-request comment shows it: a headline, then every rule."""
    failed = [rule for rule in verdict.rules if rule["status"] == "fail"]
    if verdict.passed:
        headline = "### Promotion gate: ✅ passes"
    else:
        headline = (
            f"### Promotion gate: ❌ blocks ({len(failed)} of {len(verdict.rules)} rules fail)"
        )
    lines = [
        headline,
        "",
        "| rule | measured | limit | result | detail |",
        "|---|---:|---:|---|---|",
    ]
    for rule in verdict.rules:
        result = RuleResult(**rule)
        lines.append(
            f"| {result.description} (`gate.{result.name}`) | {_number(result.value)} "
            f"| {result.comparison} {result.limit:g} | {MARKS[result.status]} "
            f"| {result.detail.replace('|', '/')} |"
        )
    lines.append("")
    if verdict.production_version is None:
        lines.append("No model is in production yet: the absolute rules alone decide.")
    else:
        lines.append(
            f"Compared with production, registry version {verdict.production_version}, "
            f"scored on the same {verdict.rows} held-out rows in the same run."
        )
    lines += [
        "",
        f"<sub>Model {verdict.model_fingerprint[:16]} ({verdict.model_type}), held-out rows "
        f"{verdict.test_data_md5[:12]}, judged {verdict.judged_at}. The rules are the `gate:` "
        "section of params.yaml.</sub>",
        "",
    ]
    return "\n".join(lines)
