"""The monitor's verdict, written three ways: JSON for machines, HTML and Markdown for people.

The HTML report is one self-contained file: styles inline, every chart a PNG inside the page
(base64), no script and no address outside the file, so it opens from a CI artifact, an e-mail
or a laptop with no network. Each feature gets its reference and window distributions side by
side, drifted features first and marked. Both reports show live quality pooled and per model
version: a window can span a promotion.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display on CI machines

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from credit_risk.files import write_json, write_with
from credit_risk.monitoring.drift import category_counts
from credit_risk.schema import POSITIVE_CLASS, column_specs, outcome_names

REFERENCE_COLOUR = "#9aa5b1"
WINDOW_COLOUR = "#1f6feb"
DRIFT_COLOUR = "#d1242f"
BINS = 30
# Short names for the tables and charts (the JSON keeps the full ones).
SHORT = {
    "kolmogorov_smirnov": "KS",
    "chi_square": "chi-square",
    "wasserstein_in_std": "Wasserstein / std",
    "population_stability_index": "PSI",
}


def _short(name: str) -> str:
    return SHORT.get(name, name)


def write(
    verdict: dict[str, Any],
    reference: pd.DataFrame,
    current: pd.DataFrame,
    report: Path,
    page: Path,
    summary: Path,
) -> None:
    """Write the three files, each atomically."""
    write_json(report, verdict)
    text = markdown(verdict)
    write_with(summary, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    document = html_page(verdict, reference, current)
    write_with(page, lambda tmp: tmp.write_text(document, encoding="utf-8"))


# --- numbers as text ---------------------------------------------------------------------------


def _number(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if value != 0 and abs(value) < 10 ** -(digits + 1):
            return f"{value:.1e}"
        return f"{value + 0.0:.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _headline(verdict: dict[str, Any]) -> str:
    if verdict["alarm"]:
        return f"❌ alarm ({len(verdict['reasons'])} reason(s))"
    return "✅ no alarm"


# --- Markdown ----------------------------------------------------------------------------------


def markdown(verdict: dict[str, Any]) -> str:
    """The verdict as an issue or a comment shows it: headline, reasons, features, quality."""
    window = verdict["window"]
    lines = [
        f"### Monitoring: {_headline(verdict)}",
        "",
        f"{verdict['rows']:,} predictions from {window['since']} to {window['until']} "
        f"(model versions: {_versions(verdict)}), against {verdict['reference']['rows']:,} "
        f"reference rows (`paths.{verdict['reference']['paths_key']}`).",
        "",
    ]
    lines += [f"- {reason}" for reason in verdict["reasons"]]
    if verdict["reasons"]:
        lines.append("")
    features = verdict["drift"]["features"]
    if features:
        lines += [
            "| feature | test | p (Holm) | effect | limit | drifted |",
            "|---|---|---:|---:|---:|---|",
        ]
        for f in features:
            lines.append(
                f"| {f['feature']} | {_short(f['test'])} | {_number(f['p_adjusted'])} "
                f"| {_number(f['effect'])} ({_short(f['effect_name'])}) "
                f"| {f['effect_threshold']:g} "
                f"| {'❌ yes' if f['drifted'] else 'no'} |"
            )
        lines.append("")
    quality = verdict["performance"]
    pooled = _pooled(verdict["by_model_version"])
    if pooled:
        lines += [f"**Live quality, all {pooled}:**", ""]
    if quality["status"] == "judged":
        lines += ["| quality check | measured | limit | result |", "|---|---:|---:|---|"]
        for check in quality["checks"]:
            lines.append(
                f"| {check['description']} | {_number(check['value'])} "
                f"| {check['comparison']} {check['limit']:g} | {check['status']} |"
            )
    else:
        lines.append(
            f"Live quality not judged: {quality['outcomes']} outcome(s) known, "
            f"{quality['min_outcomes']} needed (`monitor.performance.min_outcomes`)."
        )
    lines += _markdown_versions(verdict["by_model_version"])
    lines += [
        "",
        f"<sub>Judged {verdict['judged_at']}. Thresholds: the `monitor:` section of "
        "params.yaml. The full report with every distribution is reports/monitor.html.</sub>",
        "",
    ]
    return "\n".join(lines)


def _markdown_versions(part: dict[str, Any]) -> list[str]:
    """The per-version table, and what it needs said (baselines, versions not judged)."""
    rows = version_rows(part)
    if not rows:
        return []
    lines = [
        "",
        f"**Live quality per model version** (baseline: {_baseline_of(part)}):",
        "",
        "| " + " | ".join(version_head()) + " |",
        "|---|" + "---:|" * 5 + "---|---|",
    ]
    for cells, status in rows:
        mark = {"fail": "❌ ", "pass": "✅ "}.get(status, "")
        shown = [f"`{cells[0]}`", *cells[1:-1], mark + cells[-1]]
        lines.append("| " + " | ".join(shown) + " |")
    lines += ["", *version_notes(part)]
    return lines


def _versions(verdict: dict[str, Any]) -> str:
    versions = verdict["model_versions"]
    return ", ".join(f"{name} ({count:,})" for name, count in versions.items()) or "none"


# --- live quality per model version (both reports) ---------------------------------------------

BASELINE_SOURCES = {
    "own": "its own evaluation",
    "other": "another version's evaluation",
    "unknown": "paths.metrics (whose version is not known)",
    "none": "none",
}


def _pooled(part: dict[str, Any]) -> str:
    """How the pooled figures are pooled, when the window holds several model versions."""
    count = len(part["versions"])
    return f"{count} model versions pooled" if count > 1 else ""


def version_head() -> list[str]:
    """The per-version table's columns; the rate is the contract's positive outcome's."""
    rate = f"{outcome_names()[POSITIVE_CLASS]} rate"
    return ["model version", "predictions", "outcomes", "ROC AUC", "Brier", rate, "baseline",
            "result"]  # fmt: skip


def _baseline_of(part: dict[str, Any]) -> str:
    known = part["baseline_model_version"]
    return f"the evaluation of {known}" if known else "paths.metrics"


def version_rows(part: dict[str, Any]) -> list[tuple[list[str], str]]:
    """One row of cells per model version (as version_head), with its status: pass, fail or
    not_judged."""
    rows = []
    for name, found in part["versions"].items():
        live = found["live"] or {}
        failed = [c["description"] for c in found["checks"] if c["status"] == "fail"]
        if found["status"] != "judged":
            status = "not_judged"
            result = (
                f"not judged: {found['outcomes']:,} outcome(s), {found['min_outcomes']:,} needed"
            )
        elif failed:
            status, result = "fail", "failed: " + ", ".join(failed)
        else:
            status, result = "pass", "passed"
        cells = [
            name,
            f"{found['rows']:,}",
            f"{found['outcomes']:,}",
            _number(live.get("roc_auc")),
            _number(live.get("brier")),
            _number(found["base_rate"]),
            BASELINE_SOURCES[found["baseline_source"]] if status != "not_judged" else "n/a",
            result,
        ]
        rows.append((cells, status))
    return rows


def version_notes(part: dict[str, Any]) -> list[str]:
    """What the per-version table needs said: whose baseline, and which versions were not
    judged."""
    notes = []
    versions = list(part["versions"].values())
    sources = {found["baseline_source"] for found in versions}
    if "other" in sources:
        notes.append(
            f"The baseline (paths.metrics) is the evaluation of the pipeline's model, "
            f"{part['baseline_model_version']}; the other versions are judged against it too, "
            "as their own evaluation is not known here."
        )
    if "unknown" in sources:
        notes.append(
            "Every version is judged against paths.metrics; which model version those metrics "
            "measured is not known (the pipeline's model files are not here)."
        )
    few = [found for found in versions if found["status"] != "judged"]
    if few:
        notes.append(
            f"{len(few)} version(s) listed, not judged: fewer than "
            f"{few[0]['min_outcomes']:,} outcomes, or a single kind of outcome "
            "(monitor.performance.min_outcomes)."
        )
    return notes


# --- charts ------------------------------------------------------------------------------------


def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, metadata={"Software": None})
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def numeric_chart(name: str, reference: pd.Series, current: pd.Series, drifted: bool) -> str:
    """Share of rows per bin, reference (filled) and window (line), on shared bins."""
    ref = reference.dropna().to_numpy(dtype=float)
    cur = current.dropna().to_numpy(dtype=float)
    low = float(min(ref.min(initial=np.inf), cur.min(initial=np.inf)))
    high = float(max(ref.max(initial=-np.inf), cur.max(initial=-np.inf)))
    if not np.isfinite(low) or low == high:
        high = low + 1 if np.isfinite(low) else 1.0
        low = low if np.isfinite(low) else 0.0
    edges = np.linspace(low, high, BINS + 1)
    figure, axes = plt.subplots(figsize=(4.6, 2.5))
    for values, colour, label, fill in (
        (ref, REFERENCE_COLOUR, "reference", True),
        (cur, DRIFT_COLOUR if drifted else WINDOW_COLOUR, "window", False),
    ):
        counts, _ = np.histogram(values, bins=edges)
        shares = counts / max(counts.sum(), 1)
        axes.stairs(shares, edges, fill=fill, color=colour, alpha=0.6 if fill else 1.0, lw=1.8)
        axes.plot([], [], color=colour, lw=6 if fill else 2, label=label)
    axes.set(xlabel=name, ylabel="share of rows")
    axes.legend(frameon=False, fontsize=8, loc="lower left", bbox_to_anchor=(0, 1), ncols=2)
    axes.spines[["top", "right"]].set_visible(False)
    figure.tight_layout()
    return _png(figure)


def categorical_chart(
    name: str, reference: pd.Series, current: pd.Series, known: tuple[Any, ...], drifted: bool
) -> str:
    """Share of rows per category, reference and window side by side."""
    table, unseen = category_counts(reference, current, known)
    shares = table.div(table.sum(axis=1).replace(0, 1), axis=0)
    categories = list(shares.columns)
    places = np.arange(len(categories))
    figure, axes = plt.subplots(figsize=(4.6, 0.32 * len(categories) + 1.1))
    axes.barh(places - 0.2, shares.loc["reference"], 0.4, color=REFERENCE_COLOUR, label="reference")
    axes.barh(
        places + 0.2,
        shares.loc["current"],
        0.4,
        color=DRIFT_COLOUR if drifted else WINDOW_COLOUR,
        label="window",
    )
    labels = [f"{c} (new)" if c in unseen else c for c in categories]
    axes.set_yticks(places, labels, fontsize=8)
    axes.invert_yaxis()
    axes.set(xlabel="share of rows", title=None)
    axes.legend(frameon=False, fontsize=8, loc="lower left", bbox_to_anchor=(0, 1), ncols=2)
    axes.spines[["top", "right"]].set_visible(False)
    figure.tight_layout()
    return _png(figure)


# --- HTML --------------------------------------------------------------------------------------

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328;
       margin: 24px auto; max-width: 980px; padding: 0 16px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; }
.muted { color: #59636e; }
.verdict { border-radius: 6px; padding: 10px 14px; margin: 12px 0; }
.verdict.alarm { background: #ffebe9; border: 1px solid #ff8182; }
.verdict.ok { background: #dafbe1; border: 1px solid #4ac26b; }
.verdict strong { font-size: 16px; }
table { border-collapse: collapse; margin: 8px 0; font-size: 13px; }
th, td { border-bottom: 1px solid #d1d9e0; padding: 4px 10px; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.drift td { background: #ffebe9; }
.fail { color: #d1242f; font-weight: 600; } .pass { color: #1a7f37; }
.grid { display: grid; grid-template-columns: repeat(2, 1fr); gap: 12px; }
.card { border: 1px solid #d1d9e0; border-radius: 6px; padding: 8px; }
.card.drift { border: 2px solid #d1242f; }
.card h3 { font-size: 14px; margin: 0 0 4px; }
.card img { width: 100%; height: auto; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _feature_table(features: list[dict[str, Any]]) -> str:
    rows = []
    for f in features:
        mark = '<span class="fail">drifted</span>' if f["drifted"] else "no"
        unseen = f" (new: {_e(', '.join(f['unseen']))})" if f["unseen"] else ""
        rows.append(
            f'<tr class="{"drift" if f["drifted"] else ""}"><td>{_e(f["feature"])}{unseen}</td>'
            f"<td>{_e(f['kind'])}</td><td>{_e(_short(f['test']))}</td>"
            f'<td class="n">{_number(f["statistic"])}</td>'
            f'<td class="n">{_number(f["p_value"])}</td>'
            f'<td class="n">{_number(f["p_adjusted"])}</td>'
            f'<td class="n">{_number(f["effect"])}</td><td>{_e(_short(f["effect_name"]))}</td>'
            f'<td class="n">{f["effect_threshold"]:g}</td>'
            f'<td class="n">{f["current_rows"]:,}</td><td>{mark}</td></tr>'
        )
    head = (
        "<tr><th>feature</th><th>kind</th><th>test</th><th>statistic</th><th>p</th>"
        "<th>p (Holm)</th><th>effect</th><th>effect size</th><th>limit</th><th>rows</th>"
        "<th>drifted</th></tr>"
    )
    return f"<table>{head}{''.join(rows)}</table>"


def _performance(quality: dict[str, Any]) -> str:
    if quality["status"] != "judged":
        return (
            f'<p class="muted">Not judged: {quality["outcomes"]:,} logged prediction(s) of the '
            f"window have a known outcome; {quality['min_outcomes']:,} are needed "
            "(<code>monitor.performance.min_outcomes</code>).</p>"
        )
    live, baseline = quality["live"], quality["baseline"] or {}
    metric_rows = "".join(
        f'<tr><td>{_e(name)}</td><td class="n">{_number(baseline.get(name))}</td>'
        f'<td class="n">{_number(value)}</td></tr>'
        for name, value in live.items()
    )
    check_rows = "".join(
        f"<tr><td>{_e(c['description'])}</td><td><code>monitor.{_e(c['name'])}</code></td>"
        f'<td class="n">{_number(c["value"])}</td><td class="n">{_e(c["comparison"])} '
        f'{c["limit"]:g}</td><td class="{_e(c["status"])}">{_e(c["status"])}</td>'
        f"<td>{_e(c['detail'])}</td></tr>"
        for c in quality["checks"]
    )
    groups = []
    for attribute, found in quality["fairness"].items():
        for group, values in found["groups"].items():
            groups.append(
                f"<tr><td>{_e(attribute)}</td><td>{_e(group)}</td>"
                f'<td class="n">{values["rows"]:,}</td>'
                + "".join(
                    f'<td class="n">{_number(values.get(m))}</td>'
                    for m in ("base_rate", "roc_auc", "true_positive_rate", "selection_rate")
                )
                + "</tr>"
            )
    group_table = (
        "<table><tr><th>attribute</th><th>group</th><th>rows</th><th>base rate</th>"
        "<th>ROC AUC</th><th>true positive rate</th><th>selection rate</th></tr>"
        f"{''.join(groups)}</table>"
        if groups
        else '<p class="muted">No protected attribute is in the log.</p>'
    )
    return (
        f"<p>{quality['outcomes']:,} predictions with a known outcome; decisions at the "
        f"evaluation's threshold {quality['threshold']:g}.</p>"
        "<table><tr><th>metric</th><th>evaluation (held-out rows)</th><th>live</th></tr>"
        f"{metric_rows}</table>"
        "<table><tr><th>check</th><th>setting</th><th>measured</th><th>limit</th>"
        f"<th>result</th><th>detail</th></tr>{check_rows}</table>"
        f"<h3>Per group</h3>{group_table}"
    )


def _html_pooled(part: dict[str, Any]) -> str:
    pooled = _pooled(part)
    return f"<h3>All {_e(pooled)}</h3>" if pooled else ""


CLASSES = {"not_judged": "muted"}  # the style of a status in the per-version table


def _html_versions(part: dict[str, Any]) -> str:
    rows = version_rows(part)
    if not rows:
        return ""
    head = "".join(f"<th>{_e(name)}</th>" for name in version_head())
    body = "".join(
        f"<tr><td><code>{_e(cells[0])}</code></td>"
        + "".join(f'<td class="n">{_e(cell)}</td>' for cell in cells[1:6])
        + f'<td>{_e(cells[6])}</td><td class="{CLASSES.get(status, status)}">'
        + f"{_e(cells[7])}</td></tr>"
        for cells, status in rows
    )
    notes = "".join(f'<p class="muted">{_e(note)}</p>' for note in version_notes(part))
    return (
        f"<h3>Per model version</h3><p>Baseline: {_e(_baseline_of(part))}.</p>"
        f"<table><tr>{head}</tr>{body}</table>{notes}"
    )


def feature_cards(verdict: dict[str, Any], reference: pd.DataFrame, current: pd.DataFrame) -> str:
    """One card per compared feature: its distributions as a chart, drifted ones marked."""
    specs = column_specs()
    cards = []
    for f in verdict["drift"]["features"]:
        name, drifted = f["feature"], f["drifted"]
        if f["kind"] == "numeric":
            image = numeric_chart(name, reference[name], current[name], drifted)
        else:
            known = specs[name].allowed or ()
            image = categorical_chart(name, reference[name], current[name], known, drifted)
        status = '<span class="fail">drifted</span>' if drifted else "no drift"
        cards.append(
            f'<div class="card{" drift" if drifted else ""}"><h3>{_e(name)} · {status}</h3>'
            f'<div class="muted">{_e(_short(f["effect_name"]))} {_number(f["effect"])} '
            f"(limit {f['effect_threshold']:g}), p (Holm) {_number(f['p_adjusted'])}</div>"
            f'<img alt="{_e(name)}: reference and window distributions" '
            f'src="data:image/png;base64,{image}"></div>'
        )
    return f'<div class="grid">{"".join(cards)}</div>'


def html_page(verdict: dict[str, Any], reference: pd.DataFrame, current: pd.DataFrame) -> str:
    """The whole report as one HTML document with its charts inside."""
    window = verdict["window"]
    alarm = verdict["alarm"]
    by_version = verdict["by_model_version"]
    reasons = "".join(f"<li>{_e(reason)}</li>" for reason in verdict["reasons"])
    drift_part = verdict["drift"]
    if drift_part["status"] == "judged":
        absent = ", ".join(drift_part["not_logged"])
        not_logged = (
            f'<p class="muted">Not in the log, so not compared: {_e(absent)}.</p>' if absent else ""
        )
        features = (
            f"<p>{len(drift_part['drifted'])} of {len(drift_part['features'])} features drifted "
            f"(the alarm needs {drift_part['alarm_features']}). A feature drifts when its test "
            "is significant after Holm's correction <em>and</em> its effect size reaches the "
            "limit.</p>" + _feature_table(drift_part["features"]) + not_logged
        )
        charts = "<h2>Distributions: reference and window</h2>" + feature_cards(
            verdict, reference, current
        )
    else:
        features = '<p class="muted">Too few predictions in the window to compare.</p>'
        charts = ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Monitoring report: {"alarm" if alarm else "no alarm"}</title>
<style>{STYLE}</style></head><body>
<h1>Monitoring report</h1>
<div class="muted">{verdict["rows"]:,} predictions logged from {_e(window["since"])} to
{_e(window["until"])} · model versions: {_e(_versions(verdict))} · reference:
{verdict["reference"]["rows"]:,} rows (<code>paths.{_e(verdict["reference"]["paths_key"])}</code>)
· judged {_e(verdict["judged_at"])}</div>
<div class="verdict {"alarm" if alarm else "ok"}"><strong>{_e(_headline(verdict))}</strong>
{f"<ul>{reasons}</ul>" if reasons else "<div>Every check passed.</div>"}</div>
<h2>Drift, feature by feature</h2>{features}
<h2>Live quality</h2>{_html_pooled(by_version)}{_performance(verdict["performance"])}
{_html_versions(by_version)}
{charts}
<p class="muted">Thresholds: the <code>monitor:</code> section of params.yaml. The same verdict
for machines: reports/monitor.json.</p>
</body></html>
"""
