"""The pull-request report (`make pr-report`): what a reviewer reads on every pull request.

The pure parts are tested on made-up numbers; the command is run on a committed copy of the
repository with a branch that changes a param and its metrics, as a pull request would.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from tests.conftest import GIT_IDENTITY

from credit_risk import pr_report
from credit_risk.config import Params
from credit_risk.pr_report import Production, Side
from credit_risk.quality import LOWER_IS_BETTER

METRICS = {"roc_auc": 0.75, "brier": 0.17, "recall": 0.7}


def side(label: str = "main", **fields: Any) -> Side:
    return Side(label=label, commit=None, **fields)


def test_a_rise_is_better_or_worse_by_the_metrics_direction() -> None:
    assert "roc_auc" not in LOWER_IS_BETTER and "brier" in LOWER_IS_BETTER
    assert pr_report.delta("roc_auc", 0.80, 0.75) == "+0.0500 🟢 better"
    assert pr_report.delta("roc_auc", 0.70, 0.75) == "-0.0500 🔴 worse"
    assert pr_report.delta("brier", 0.20, 0.17) == "+0.0300 🔴 worse"
    assert pr_report.delta("brier", 0.15, 0.17) == "-0.0200 🟢 better"


def test_a_change_the_table_cannot_show_is_unchanged_and_a_missing_value_is_na() -> None:
    assert pr_report.delta("roc_auc", 0.75002, 0.75) == "= unchanged"
    assert pr_report.delta("roc_auc", 0.7501, 0.75).endswith("better")
    assert pr_report.delta("roc_auc", 0.75, None) == "n/a"


def test_metrics_table_compares_with_the_base_and_production() -> None:
    branch = side("this branch", metrics=METRICS)
    base = side(metrics={**METRICS, "roc_auc": 0.74})
    production = Production(judged=True, version=3, metrics={**METRICS, "brier": 0.16})
    table = "\n".join(pr_report.metrics_table(branch, base, production))
    assert "| production v3 |" in table
    row = next(line for line in table.splitlines() if line.startswith("| `roc_auc`"))
    assert "+0.0100 🟢 better" in row and "= unchanged" in row
    brier = next(line for line in table.splitlines() if line.startswith("| `brier`"))
    assert brier.endswith("+0.0100 🔴 worse |")
    assert "scored by the gate on this branch's held-out rows" in table


@pytest.mark.parametrize(
    ("production", "note"),
    [
        (Production(judged=False), "production is compared once the gate has run"),
        (Production(judged=True), "no model is in production yet"),
    ],
)
def test_metrics_table_says_why_production_is_missing(production: Production, note: str) -> None:
    table = "\n".join(pr_report.metrics_table(side(metrics=METRICS), side(), production))
    assert note in table and "main has no metrics to compare with" in table


def test_params_table_lists_exactly_the_changed_keys() -> None:
    base = side(params={"train.seed": 1, "train.model": "a", "old": True})
    branch = side("this branch", params={"train.seed": 2, "train.model": "a", "new": [1]})
    table = pr_report.params_table(branch, base)
    assert table[2:] == [
        "| `new` | (absent) | `[1]` |",
        "| `old` | `true` | (absent) |",
        "| `train.seed` | `1` | `2` |",
    ]
    assert pr_report.params_table(base, base) == ["No params changed from main."]


def test_flatten_gives_dotted_keys_and_keeps_empty_mappings() -> None:
    assert pr_report.flatten({"a": {"b": 1, "c": {}}, "d": [1]}) == {"a.b": 1, "a.c": {}, "d": [1]}


def test_validation_lists_the_contracts_problems() -> None:
    problem = {"column": "age", "check": "in_range(18, 100)", "count": 2, "examples": []}
    report = {"source": "x.csv", "valid": False, "rows": 10, "md5": "ab", "problems": [problem]}
    lines = pr_report.validation_section(side(validation=report), side())
    assert lines[0].startswith("❌ The data breaks the contract (1 problems): 10 rows")
    assert lines[2] == "- column 'age': in_range(18, 100) fails for 2 rows"


def test_roc_on_the_grid_is_the_best_reachable_true_positive_rate() -> None:
    roc = pd.DataFrame({"fpr": [0.0, 0.0, 0.5, 1.0], "tpr": [0.0, 0.6, 0.9, 1.0]})
    values = pr_report.roc_on_grid(roc)
    assert len(values) == pr_report.GRID_POINTS
    grid = pr_report.grid()
    assert values[0] == 0.6 and values[-1] == 1.0
    assert all(v == (0.9 if 0.5 <= x < 1.0 else v) for x, v in zip(grid, values, strict=True))
    assert values == sorted(values)


def test_precision_on_the_grid_is_the_interpolated_precision() -> None:
    curve = pd.DataFrame({"recall": [1.0, 0.5, 0.5, 0.0], "precision": [0.3, 0.4, 0.8, 1.0]})
    values = pr_report.precision_on_grid(curve)
    grid = pr_report.grid()
    assert values[0] == 1.0  # recall 0: the best precision anywhere
    assert all(v == 0.8 for x, v in zip(grid, values, strict=True) if 0 < x <= 0.5)
    assert all(v == 0.3 for x, v in zip(grid, values, strict=True) if x > 0.5)


def test_a_chart_draws_one_line_per_series_and_names_its_colours() -> None:
    series = [
        ("this branch", pr_report.BRANCH_COLOUR, [0.5] * pr_report.GRID_POINTS),
        ("chance", pr_report.REFERENCE_COLOUR, [0.1] * pr_report.GRID_POINTS),
    ]
    lines = pr_report.mermaid_chart("T", "x", "y", series)
    assert lines[0] == "```mermaid" and "xychart-beta" in lines
    drawn = [line for line in lines if line.strip().startswith("line [")]
    assert len(drawn) == 2 and drawn[0].count(",") == pr_report.GRID_POINTS - 1
    assert f'plotColorPalette: "{pr_report.BRANCH_COLOUR}, {pr_report.REFERENCE_COLOUR}"' in (
        "\n".join(lines)
    )
    assert lines[-1] == "<sub>blue: this branch · yellow: chance</sub>"


def test_the_confusion_table_counts_decisions_with_the_base_in_brackets() -> None:
    rows = pd.DataFrame({"actual": ["bad", "bad", "good"], "predicted": ["bad", "good", "good"]})
    base = pd.DataFrame({"actual": ["bad", "good"], "predicted": ["bad", "bad"]})
    names = pr_report.outcome_names()
    positive, negative = names[1], names[0]
    rows = rows.replace({"bad": positive, "good": negative})
    base = base.replace({"bad": positive, "good": negative})
    lines = pr_report.confusion_table(rows, base, side())
    assert lines[-2] == f"| **{positive}** | 1 (1) | 1 (0) |"
    assert lines[-1] == f"| **{negative}** | 0 (1) | 1 (0) |"


# --- The command, on a committed copy of the repository ----------------------------------------


def git(workspace: Path, *args: str) -> None:
    env = {**GIT_IDENTITY, "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin"}
    subprocess.run(["git", *args], cwd=workspace, env=env, check=True, capture_output=True)


def pr_report_command(workspace: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "credit_risk.pr_report", *args],
        cwd=workspace, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.fixture
def pull_request(
    tmp_path: Path, repository_copy: Callable[[Path], Path], params: Params
) -> tuple[Path, Params]:
    """A copy of the repository on a branch that changes a param and its metrics."""
    workspace = repository_copy(tmp_path)
    git(workspace, "switch", "-q", "-c", "feature")
    settings = yaml.safe_load((workspace / "params.yaml").read_text())
    settings["split"]["seed"] += 1
    (workspace / "params.yaml").write_text(yaml.safe_dump(settings))
    metrics_file = workspace / params.paths.metrics
    metrics = json.loads(metrics_file.read_text())
    metrics["roc_auc"] = round(metrics["roc_auc"] - 0.02, 6)
    metrics_file.write_text(json.dumps(metrics))
    return workspace, params


def test_the_report_compares_the_branch_with_its_base(pull_request: tuple[Path, Params]) -> None:
    workspace, params = pull_request
    done = pr_report_command(workspace, "--base", "main")
    assert done.returncode == 0, done.stderr
    text = (workspace / params.paths.pr_report).read_text()
    for heading in ("Metrics", "Params changed", "Data validation", "Promotion gate"):
        assert f"### {heading}" in text
    assert "### Fairness per group" in text and "### Plots" in text
    roc = next(line for line in text.splitlines() if line.startswith("| `roc_auc`"))
    assert "-0.0200 🔴 worse" in roc
    assert "| `split.seed` |" in text
    assert "⚠️ The gate has not judged this model" in text  # no models in the copy
    assert text.count("```mermaid") == 3  # ROC, precision-recall, calibration
    assert len(text) < 65_536  # GitHub's limit for a comment


def test_a_branch_whose_data_breaks_the_contract_still_gets_a_report(
    pull_request: tuple[Path, Params],
) -> None:
    workspace, params = pull_request
    problem = {"column": "age", "check": "greater_than_or_equal_to(18)", "count": 3, "examples": []}
    report = {"source": "raw.csv", "valid": False, "rows": 5, "md5": None, "problems": [problem]}
    (workspace / params.paths.validation_report).write_text(json.dumps(report))
    (workspace / params.paths.metrics).unlink()
    done = pr_report_command(workspace, "--base", "main")
    assert done.returncode == 0, done.stderr
    text = (workspace / params.paths.pr_report).read_text()
    assert "**Data:** ❌ invalid" in text
    assert "- column 'age': greater_than_or_equal_to(18) fails for 3 rows" in text
    assert "No metrics: the pipeline did not reach its evaluate stage" in text


def test_an_unknown_base_is_named_and_no_report_is_left_behind(
    pull_request: tuple[Path, Params],
) -> None:
    workspace, params = pull_request
    done = pr_report_command(workspace, "--base", "origin/no-such-branch")
    assert done.returncode == 1
    assert "BASE=origin/no-such-branch: not a commit in this clone" in done.stderr
    assert not (workspace / params.paths.pr_report).exists()


def test_the_charts_follow_the_plot_data(pull_request: tuple[Path, Params]) -> None:
    """The ROC line drawn for the branch is the branch's curve, not the base's."""
    workspace, params = pull_request
    roc = pd.DataFrame({"fpr": np.linspace(0, 1, 11), "tpr": np.linspace(0, 1, 11) ** 0.5})
    roc.round(6).to_csv(workspace / params.paths.plots / "roc.csv", index=False)
    assert pr_report_command(workspace, "--base", "main").returncode == 0
    text = (workspace / params.paths.pr_report).read_text()
    drawn = text.split('title "ROC curve"')[1].split("```")[0]
    branch_line = next(line for line in drawn.splitlines() if "line [" in line)
    assert (
        branch_line.strip()
        == "line ["
        + ", ".join(f"{value:.3f}" for value in pr_report.roc_on_grid(roc.round(6)))
        + "]"
    )
