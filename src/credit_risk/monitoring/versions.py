"""Live quality per model version: a window that spans a promotion holds the scores of several
models, and one pooled ROC AUC can hide a bad new version behind a good old one.

Each version's labelled rows are judged as the pooled ones are (`performance.judge`: the same
metrics, checks and settings) once the version has ``monitor.performance.min_outcomes``
outcomes; a version with fewer is listed, not judged. The baseline, the evaluation's metrics
(``paths.metrics``), belongs to one model: the pipeline's (``paths.model``, ``model_info``,
``background``), which a service logs under the version `lineage.served_model_version` names.
That version is judged against its own evaluation; any other is judged against the same
metrics, since its own evaluation is not at hand here, and the verdict says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd

from credit_risk.config import BandEdges, FairnessRule, MonitorPerformance, Params
from credit_risk.lineage import served_model_version
from credit_risk.monitoring.performance import (
    BRIER_CHECK,
    ROC_AUC_CHECK,
    PerformanceResult,
    failure,
    judge,
)

VERSION_COLUMN = "model_version"  # as the prediction log writes it

# Whose evaluation a version's live metrics were compared with:
# own: the version is the model paths.metrics measured; other: that model is another version;
# unknown: that model's version is not known (its files are absent); none: no baseline at all.
BaselineSource = Literal["own", "other", "unknown", "none"]


@dataclass(frozen=True)
class VersionQuality:
    """One model version's live quality in the window."""

    model_version: str
    rows: int  # logged predictions of this version in the window
    base_rate: float | None  # share of its known outcomes that are the contract's positive one
    baseline_source: BaselineSource
    quality: PerformanceResult

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "base_rate": self.base_rate,
            "baseline_source": self.baseline_source,
            **self.quality.as_dict(),
        }


def pipeline_model_version(params: Params) -> str | None:
    """The version a service logs for the pipeline's model (the one ``paths.metrics`` measured),
    or None when its files are not here."""
    paths = params.paths
    files = (paths.model, paths.model_info, paths.background)
    if not all(path.is_file() for path in files):
        return None
    return served_model_version(params.serve.model_name, *files)


def _source(
    version: str, baseline: dict[str, float] | None, baseline_version: str | None
) -> BaselineSource:
    if baseline is None:
        return "none"
    if baseline_version is None:
        return "unknown"
    return "own" if version == baseline_version else "other"


def judge_each(
    predictions: pd.DataFrame,
    labelled: pd.DataFrame,
    baseline: dict[str, float] | None,
    baseline_version: str | None,
    threshold: float,
    settings: MonitorPerformance,
    protected: dict[str, BandEdges],
    fairness: FairnessRule,
    pooled: PerformanceResult | None = None,
) -> list[VersionQuality]:
    """Every model version of the window's ``predictions``, in name order, with the quality of
    its ``labelled`` rows (`performance.labelled`); none when the log has no version column.

    ``pooled``, the judgement of all of ``labelled``, stands for the one version's when the
    window holds only one (the same rows: judging them again would only cost time).
    """
    if VERSION_COLUMN not in predictions.columns:
        return []
    counts = predictions[VERSION_COLUMN].astype(str).value_counts().sort_index()
    versions = labelled[VERSION_COLUMN].astype(str)
    found = []
    for version, rows in counts.items():
        own = labelled[versions == version]
        if pooled is not None and len(counts) == 1:
            quality = pooled
        else:
            quality = judge(own, baseline, threshold, settings, protected, fairness)
        rate = round(float(own["label"].mean()), 6) if len(own) else None
        source = _source(str(version), baseline, baseline_version)
        found.append(VersionQuality(str(version), int(rows), rate, source, quality))
    return found


def reasons(found: list[VersionQuality], baseline_version: str | None) -> list[str]:
    """The alarm's reasons: each failed check, naming its version and whose baseline it met."""
    lines = []
    for version in found:
        note = {
            "other": f" (against the evaluation of {baseline_version}: its own is not known)",
            "unknown": " (against paths.metrics, whose model's version is not known)",
        }.get(version.baseline_source, "")
        for check in version.quality.failed:
            against = note if check.name in (ROC_AUC_CHECK, BRIER_CHECK) else ""
            lines.append(f"model version {version.model_version}: {failure(check)}{against}")
    return lines


def as_verdict(found: list[VersionQuality], baseline_version: str | None) -> dict[str, Any]:
    """The verdict's ``by_model_version`` part."""
    return {
        "baseline_model_version": baseline_version,
        "versions": {version.model_version: version.as_dict() for version in found},
    }
