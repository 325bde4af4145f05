"""Live quality per model version: a window that spans a promotion mixes versions, and a bad
new version hides behind a good old one in the pooled figures; each version with enough
outcomes is judged on its own, the alarm names the version that fails, a version with too few
outcomes is listed and not judged, and the reports carry the per-version table."""

from __future__ import annotations

from pathlib import Path

import pytest
from monitor_windows import Served, judge_versions

from credit_risk.config import Params
from credit_risk.monitoring.performance import ROC_AUC_CHECK
from credit_risk.monitoring.report import html_page, markdown
from credit_risk.monitoring.versions import pipeline_model_version
from credit_risk.serving.scorer import ModelFiles
from credit_risk.synthetic import generate

FLIP = 0.3  # outcomes turned over: a version that stopped working (test_drills' quality drill)
GOOD_SHARE = 8  # the good version serves this many times the bad one's rows


@pytest.fixture(scope="module")
def names(params: Params) -> tuple[str, str]:
    """Two versions of the served model, as the log names them: the old one, then the new."""
    return f"{params.serve.model_name}:{'0' * 16}", f"{params.serve.model_name}:{'f' * 16}"


def failed(part: dict) -> set[str]:
    return {check["name"] for check in part["checks"] if check["status"] == "fail"}


def row_of(text: str, version: str) -> str:
    """The Markdown table row of one model version."""
    return next(line for line in text.splitlines() if line.startswith(f"| `{version}` |"))


def test_a_bad_version_behind_a_good_one_raises_the_alarm_naming_it(
    judge, source, params, names
) -> None:
    old, new = names
    rows = params.monitor.performance.min_outcomes + 100
    verdict = judge_versions(
        judge,
        {
            old: Served(generate(source, GOOD_SHARE * rows, seed=51)),
            new: Served(generate(source, rows, seed=52), flip=FLIP),
        },
        baseline_version=old,
    )
    pooled = verdict["performance"]
    assert pooled["status"] == "judged" and not failed(pooled)  # alone, no alarm
    versions = verdict["by_model_version"]["versions"]
    assert list(versions) == sorted(names)
    assert versions[old]["status"] == "judged" and not failed(versions[old])
    assert versions[new]["status"] == "judged" and ROC_AUC_CHECK in failed(versions[new])
    assert versions[new]["rows"] == versions[new]["outcomes"] == rows
    assert verdict["alarm"]
    assert verdict["reasons"]
    assert all(reason.startswith(f"model version {new}: ") for reason in verdict["reasons"])
    assert any("roc_auc drop" in reason for reason in verdict["reasons"])
    # The baseline measured the old version; the new one is judged against it, said so.
    assert versions[old]["baseline_source"] == "own"
    assert versions[new]["baseline_source"] == "other"
    roc = next(reason for reason in verdict["reasons"] if "roc_auc drop" in reason)
    assert f"against the evaluation of {old}" in roc


def test_a_version_with_too_few_outcomes_is_listed_not_judged(judge, source, params, names) -> None:
    old, new = names
    enough = params.monitor.performance.min_outcomes
    verdict = judge_versions(
        judge,
        {
            old: Served(generate(source, GOOD_SHARE * enough, seed=53)),
            new: Served(generate(source, 2 * enough, seed=54), flip=FLIP, outcomes=enough - 1),
        },
    )
    found = verdict["by_model_version"]["versions"][new]
    assert found["status"] == "too_few_outcomes"
    assert found["rows"] == 2 * enough and found["outcomes"] == enough - 1
    assert found["checks"] == [] and found["live"] is None
    assert found["base_rate"] is not None  # listed: its outcomes so far
    assert not any(new in reason for reason in verdict["reasons"])
    assert verdict["by_model_version"]["versions"][old]["status"] == "judged"
    # No version of the pipeline's model is known: every baseline is said to be unsure.
    assert {v["baseline_source"] for v in verdict["by_model_version"]["versions"].values()} == {
        "unknown"
    }
    text = markdown(verdict)
    row = row_of(text, new)
    assert "not judged" in row and f"{enough - 1:,} outcome(s)" in row
    assert "listed, not judged" in text


def test_the_reports_carry_the_per_version_table(judge, source, reference, params, names) -> None:
    old, new = names
    rows = params.monitor.performance.min_outcomes + 100
    frames = {
        old: Served(generate(source, GOOD_SHARE * rows, seed=55)),
        new: Served(generate(source, rows, seed=56), flip=FLIP),
    }
    verdict = judge_versions(judge, frames, baseline_version=old)
    text = markdown(verdict)
    assert "**Live quality per model version**" in text
    assert "| model version | predictions | outcomes | ROC AUC | Brier |" in text
    lines = {name: row_of(text, name) for name in names}
    assert "✅ passed" in lines[old] and "its own evaluation" in lines[old]
    assert "❌ failed" in lines[new] and "another version's evaluation" in lines[new]
    assert "judged against it too" in text
    window = generate(source, 200, seed=57)
    page = html_page(verdict, reference, window)
    assert "<h3>Per model version</h3>" in page
    table = page.split("<h3>Per model version</h3>")[1].split("</table>")[0]
    assert all(f"<code>{name}</code>" in table for name in names)
    assert table.count('class="fail"') == 1 and table.count('class="pass"') == 1


def test_one_version_is_named_once_in_the_alarm(judge, source) -> None:
    verdict = judge(generate(source, 500, seed=58), flip=FLIP)
    pooled = failed(verdict["performance"])
    assert pooled and verdict["alarm"]
    quality = [reason for reason in verdict["reasons"] if reason.startswith("model version")]
    assert len(quality) == len(pooled)  # the pooled rows are the version's: not twice
    assert all(reason.startswith("model version drill: ") for reason in quality)


def test_the_baseline_version_is_the_tag_the_service_logs(
    model_files: ModelFiles, model_tag: str, params: Params, tmp_path: Path
) -> None:
    paths = params.paths.model_copy(
        update={
            "model": model_files.model,
            "model_info": model_files.info,
            "background": model_files.background,
        }
    )
    assert pipeline_model_version(params.model_copy(update={"paths": paths})) == model_tag
    gone = paths.model_copy(update={"model": tmp_path / "absent.joblib"})
    assert pipeline_model_version(params.model_copy(update={"paths": gone})) is None
