"""The gate on real models: it blocks a poor one, an unfair one that ranks better, and one that
regresses against production, each for its reason; it passes a good one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from credit_risk.config import Params
from credit_risk.fairness import groups_of
from credit_risk.gate.check import judge
from credit_risk.gate.report import read
from credit_risk.model import model_features, positive_column
from credit_risk.schema import positive_labels


def failed(verdict: Any) -> set[str]:
    return {rule["name"] for rule in verdict.rules if rule["status"] == "fail"}


def statuses(verdict: Any, name: str) -> set[str]:
    return {rule["status"] for rule in verdict.rules if rule["name"] == name}


def test_a_good_model_passes_before_and_against_production(model_workspace) -> None:
    pipeline = model_workspace.fit()
    params = model_workspace.candidate(pipeline)
    alone = judge(params)
    assert alone.passed, alone.rules
    assert statuses(alone, "no_regression.max_roc_auc_drop") == {"skipped"}
    assert alone.production_version is None

    version = model_workspace.into_production(pipeline)
    against = judge(params)
    assert against.passed, against.rules
    assert against.production_version == version
    # Scored on the same rows in the same run: the same model neither gains nor loses.
    assert against.metrics["production"] == pytest.approx(against.metrics["candidate"])
    drop = next(r for r in against.rules if r["name"] == "no_regression.max_roc_auc_drop")
    assert drop["status"] == "pass" and drop["value"] == pytest.approx(0.0, abs=1e-12)


def test_a_model_trained_with_poor_params_is_blocked(model_workspace) -> None:
    """Almost no regularisation budget and no calibration: near-constant scores around 0.5,
    which are no probabilities (the Brier score of always saying 0.5 is 0.25)."""
    poor = model_workspace.with_train(
        model="logistic_regression",
        logistic_regression=model_workspace.params.train.logistic_regression.model_copy(
            update={"C": 1e-6}
        ),
        calibration=model_workspace.params.train.calibration.model_copy(update={"method": "none"}),
    )
    params = model_workspace.candidate(model_workspace.fit(poor), poor)
    verdict = judge(params)
    assert not verdict.passed
    assert "max_brier" in failed(verdict)
    assert any("max_brier" in reason for reason in verdict.failed_rules())


class GroupBlind:
    """Knows every held-out outcome, except in one group, where it never declines anyone (its
    scores there are the base model's, capped below the threshold): it ranks far better than
    the base model overall, and catches no bad risk in that group."""

    def __init__(self, base: Any, frame: pd.DataFrame, blind: pd.Series, threshold: float) -> None:
        self.base = base
        self.classes_ = base.classes_
        self.truth = positive_labels(frame)
        self.blind = blind
        self.cap = threshold * 0.99

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        column = positive_column(self.base)
        known = np.where(self.truth.reindex(X.index).to_numpy() == 1, 0.999, 0.001)
        capped = np.minimum(self.base.predict_proba(X)[:, column], self.cap)
        positive = np.where(self.blind.reindex(X.index).to_numpy(), capped, known)
        proba = np.empty((len(X), 2))
        proba[:, column] = positive
        proba[:, 1 - column] = 1 - positive
        return proba


def test_a_better_ranking_model_that_breaks_the_fairness_limit_is_blocked(
    model_workspace,
) -> None:
    production = model_workspace.fit()
    model_workspace.into_production(production)
    params: Params = model_workspace.params
    first, edges = next(iter(params.evaluate.protected_attributes.items()))
    frame = model_workspace.test_rows
    groups = groups_of(frame, first, edges)
    sizes = groups.value_counts()
    large = sizes[sizes >= params.gate.fairness.min_group_rows]
    assert len(large) >= 2, "the held-out rows need two groups large enough to compare"
    blind = groups == str(large.index[-1])  # the smallest group that is still judged
    model = GroupBlind(production, frame, blind, params.train.decision_threshold)
    verdict = judge(model_workspace.candidate(model))

    assert verdict.metrics["candidate"]["roc_auc"] > verdict.metrics["production"]["roc_auc"]
    assert not verdict.passed
    assert "fairness.max_gap" in failed(verdict), verdict.rules
    assert statuses(verdict, "no_regression.max_roc_auc_drop") == {"pass"}
    unfair = [r for r in verdict.rules if r["name"] == "fairness.max_gap" and r["status"] == "fail"]
    assert any(str(groups.name) in r["description"] and r["value"] > 0.99 for r in unfair)


def test_a_model_worse_than_production_is_blocked(model_workspace, roles) -> None:
    model_workspace.into_production(model_workspace.fit())
    features = model_features(model_workspace.params.train)
    keep = roles.features("numeric")[:1]
    weak = model_workspace.with_train(drop_features=[f for f in features if f not in keep])
    verdict = judge(model_workspace.candidate(model_workspace.fit(weak), weak))
    assert not verdict.passed
    assert "no_regression.max_roc_auc_drop" in failed(verdict)


def test_the_command_exits_non_zero_and_still_writes_both_reports(
    model_workspace, tmp_path: Path
) -> None:
    """`python -m credit_risk.gate.check` (what `make gate` runs) on a blocked model."""
    strict = model_workspace.params.gate.model_copy(update={"min_roc_auc": 0.999})
    params = model_workspace.candidate(model_workspace.fit())
    document = params.model_dump(mode="json", by_alias=True)
    document["gate"] = strict.model_dump()
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(document), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "credit_risk.gate.check"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=300,
    )
    assert done.returncode == 1
    assert "min_roc_auc" in done.stderr and "blocked" in done.stderr
    verdict = read(params.paths.gate_report)
    assert not verdict.passed and "min_roc_auc" in failed(verdict)
    summary = params.paths.gate_summary.read_text(encoding="utf-8")
    assert "❌ blocks" in summary and "gate.min_roc_auc" in summary
