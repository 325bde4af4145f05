"""`make pr-report BASE=<ref>`: the pull-request comment, written by the project's own code.

    python -m credit_risk.pr_report --base origin/main [--images]

It compares this branch's pipeline reports with the base branch's (read from git: the metrics,
plot data and fairness files are committed) and with the model in production (the gate scored it
on the same held-out rows in the same run: reports/gate.json), and writes reports/pr-report.md:

- a headline: the gate's verdict, whether the model was retrained, the data's validity;
- the metrics with deltas, each marked better or worse;
- the params that changed;
- the data validation result;
- the gate, rule by rule;
- fairness per group;
- the plots: Mermaid charts, which GitHub draws inside the comment, and tables.

Nothing leaves the machine: the charts are text. ``--images`` adds the PNG figures as image
links, for teams that opt in to CML publishing them to an image host.

Every section reads its own inputs, and one whose input is missing says so instead of failing
the report: a pull request whose data breaks the contract gets a comment saying that.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from credit_risk.config import Params, load_params
from credit_risk.errors import ConfigError
from credit_risk.files import md5, write_with
from credit_risk.gate import report as gate_report
from credit_risk.lineage import model_fingerprint
from credit_risk.quality import LOWER_IS_BETTER
from credit_risk.schema import outcome_names
from credit_risk.stage import run
from credit_risk.validate import Problem

log = logging.getLogger(__name__)

LOCK = Path("dvc.lock")
PARAMS = Path("params.yaml")
CURVES = ("roc", "precision_recall", "calibration", "confusion")
# A change smaller than half the last digit shown (4 decimals) is called unchanged, not better
# or worse: it is below what the table shows, and below what retraining on another CPU moves.
UNCHANGED_BELOW = 5e-5
GRID_POINTS = 21  # ROC and precision-recall curves are drawn at 0, 0.05, ..., 1
# Chart colours, in the order the series are drawn: this branch, the base, the reference line.
BRANCH_COLOUR, BASE_COLOUR, REFERENCE_COLOUR = "#1f6feb", "#8c959f", "#d4a72c"
FAIRNESS_COLUMNS = (
    "rows",
    "base_rate",
    "selection_rate",
    "true_positive_rate",
    "false_positive_rate",
    "roc_auc",
)
MAX_PROBLEMS_SHOWN = 10


@dataclass
class Side:
    """One model's reports: this branch's (the working tree) or the base's (a git commit)."""

    label: str
    commit: str | None
    metrics: dict[str, float] | None = None
    fairness: dict[str, Any] | None = None
    validation: dict[str, Any] | None = None
    params: dict[str, Any] | None = None
    curves: dict[str, pd.DataFrame] = field(default_factory=dict)
    model_md5: str | None = None


@dataclass(frozen=True)
class Production:
    """The production model as the gate measured it on this branch's held-out rows."""

    judged: bool  # False: no fresh gate verdict, so production was not scored
    version: int | None = None
    metrics: dict[str, float] | None = None


# --- Reading ---------------------------------------------------------------------------------


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=False)


def resolve(ref: str) -> str:
    """The commit ``ref`` names; a ConfigError when this clone does not know it."""
    found = _git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if found.returncode != 0:
        raise ConfigError(
            f"BASE={ref}: not a commit in this clone (fetch it first, e.g. "
            f"`git fetch origin main`, or check the name)"
        )
    return found.stdout.strip()


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested settings as dotted keys: {"train": {"seed": 1}} -> {"train.seed": 1}."""
    if isinstance(tree, dict) and tree:
        flat: dict[str, Any] = {}
        for key, value in tree.items():
            flat.update(flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): tree}


def _model_md5(lock_text: str | None, model: Path) -> str | None:
    """The md5 dvc.lock records for the model file (None: no lock, or no such output)."""
    if lock_text is None:
        return None
    stages = (yaml.safe_load(lock_text) or {}).get("stages", {})
    for stage in stages.values():
        for out in stage.get("outs", []):
            if Path(out.get("path", "")) == model:
                return str(out.get("md5"))
    return None


def _curves(read: Callable[[Path], str | None], folder: Path) -> dict[str, pd.DataFrame]:
    tables = {}
    for name in CURVES:
        text = read(folder / f"{name}.csv")
        if text is not None:
            tables[name] = pd.read_csv(io.StringIO(text))
    return tables


def _json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def read_side(label: str, commit: str | None, params: Params) -> Side:
    """The reports of ``commit``, or of the working tree when it is None."""

    def read(path: Path) -> str | None:
        if commit is None:
            return path.read_text(encoding="utf-8") if path.is_file() else None
        shown = _git("show", f"{commit}:{path.as_posix()}")
        return shown.stdout if shown.returncode == 0 else None

    paths = params.paths
    settings = read(PARAMS)
    if commit is not None and settings is not None:
        # The base may keep its reports elsewhere: read them where its own params say.
        recorded = (yaml.safe_load(settings) or {}).get("paths")
        if isinstance(recorded, dict):
            fields = type(paths).model_fields
            known = {key: Path(value) for key, value in recorded.items() if key in fields}
            paths = paths.model_copy(update=known)
    return Side(
        label=label,
        commit=commit,
        metrics=_json(read(paths.metrics)),
        fairness=_json(read(paths.fairness)),
        validation=_json(read(paths.validation_report)),
        params=None if settings is None else flatten(yaml.safe_load(settings)),
        curves=_curves(read, paths.plots),
        model_md5=_model_md5(read(LOCK), paths.model),
    )


def read_verdict(params: Params) -> tuple[gate_report.Verdict | None, str]:
    """The gate's verdict if it judged the model and rows now in the working tree, and a note
    saying why there is none otherwise."""
    paths = params.paths
    if not paths.gate_report.is_file():
        return None, "The gate has not judged this model (`make gate` did not run)."
    try:
        verdict = gate_report.read(paths.gate_report)
        current = {
            "model_fingerprint": model_fingerprint(paths.model, paths.model_info, paths.background),
            "test_data_md5": md5(paths.test),
            "gate": params.gate.model_dump(),
        }
    except (ConfigError, OSError) as problem:
        return None, f"The gate's verdict cannot be used: {problem}."
    recorded = verdict.model_dump()
    stale = [key for key, value in current.items() if recorded[key] != value]
    if stale:
        return None, (
            f"{paths.gate_report} judged another model or rules ({', '.join(stale)} differ): "
            "not shown. Run `make gate` again."
        )
    return verdict, ""


# --- Formatting ------------------------------------------------------------------------------


def number(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value + 0.0:.{digits}f}"  # + 0.0: no "-0.0000"


def delta(metric: str, new: float | None, old: float | None) -> str:
    """``new - old`` with a mark: better or worse for a model, by the metric's direction."""
    if new is None or old is None:
        return "n/a"
    change = new - old
    if abs(change) < UNCHANGED_BELOW:
        return "= unchanged"
    better = (change < 0) if metric in LOWER_IS_BETTER else (change > 0)
    return f"{change:+.4f} {'🟢 better' if better else '🔴 worse'}"


def metrics_table(branch: Side, base: Side, production: Production) -> list[str]:
    if branch.metrics is None:
        return ["No metrics: the pipeline did not reach its evaluate stage (see the job log)."]
    prod = production.metrics
    names = sorted(branch.metrics)
    prod_label = "production" if production.version is None else f"production v{production.version}"
    lines = [
        f"| metric | this branch | {base.label} | Δ vs {base.label} | {prod_label} "
        "| Δ vs production |",
        "|---|---:|---:|---|---:|---|",
    ]
    for name in names:
        new = branch.metrics[name]
        old = (base.metrics or {}).get(name)
        live = (prod or {}).get(name)
        direction = "↓" if name in LOWER_IS_BETTER else "↑"
        lines.append(
            f"| `{name}` {direction} | **{number(new)}** | {number(old)} | "
            f"{delta(name, new, old)} | {number(live)} | {delta(name, new, live)} |"
        )
    lines.append("")
    notes = ["↑: higher is better, ↓: lower is better"]
    if base.metrics is None:
        notes.append(f"{base.label} has no metrics to compare with")
    if not production.judged:
        notes.append("production is compared once the gate has run (`make gate`)")
    elif production.version is None:
        notes.append("no model is in production yet")
    else:
        notes.append("production is scored by the gate on this branch's held-out rows")
    lines.append("<sub>" + "; ".join(notes) + ".</sub>")
    return lines


def params_table(branch: Side, base: Side) -> list[str]:
    if branch.params is None or base.params is None:
        return [f"Params cannot be compared: {base.label} or this branch has no params.yaml."]
    keys = sorted(set(branch.params) | set(base.params))
    changed = [key for key in keys if branch.params.get(key) != base.params.get(key)]
    if not changed:
        return [f"No params changed from {base.label}."]

    def shown(side: dict[str, Any], key: str) -> str:
        return "(absent)" if key not in side else f"`{json.dumps(side[key])}`"

    lines = [f"| param | {base.label} | this branch |", "|---|---|---|"]
    lines += [
        f"| `{key}` | {shown(base.params, key)} | {shown(branch.params, key)} |" for key in changed
    ]
    return lines


def validation_section(branch: Side, base: Side) -> list[str]:
    report = branch.validation
    if report is None:
        return ["No validation report: the pipeline did not reach its validate stage."]
    was = (base.validation or {}).get("rows")
    rows = f"{report['rows']:,} rows" + (f" ({base.label}: {was:,})" if was is not None else "")
    source = f"`{report['source']}`, md5 `{str(report.get('md5'))[:12]}`"
    if report["valid"]:
        return [f"✅ The data meets the contract: {rows}, {source}."]
    problems = [Problem(**problem).describe() for problem in report["problems"]]
    lines = [f"❌ The data breaks the contract ({len(problems)} problems): {rows}, {source}.", ""]
    lines += [f"- {problem}" for problem in problems[:MAX_PROBLEMS_SHOWN]]
    if len(problems) > MAX_PROBLEMS_SHOWN:
        lines.append(f"- … and {len(problems) - MAX_PROBLEMS_SHOWN} more (reports/validation.json)")
    return lines


def fairness_section(branch: Side, base: Side, params: Params) -> list[str]:
    if branch.fairness is None:
        return ["No fairness report: the pipeline did not reach its evaluate stage."]
    rule = params.gate.fairness
    lines: list[str] = []
    for attribute, report in sorted(branch.fairness.items()):
        header = " | ".join(
            f"**{column}**" if column == rule.metric else column for column in FAIRNESS_COLUMNS
        )
        lines += [f"**{attribute}**", "", f"| group | {header} |", "|---" + "|---:" * 6 + "|"]
        for group, values in sorted(report["groups"].items()):
            small = " ¹" if values["rows"] < rule.min_group_rows else ""
            cells = " | ".join(
                f"{values[column]:,}" if column == "rows" else number(values.get(column), 3)
                for column in FAIRNESS_COLUMNS
            )
            lines.append(f"| {group}{small} | {cells} |")
        gaps = report.get("largest_gap", {})
        gap_cells = " | ".join(
            "" if column == "rows" else number(gaps.get(column), 3) for column in FAIRNESS_COLUMNS
        )
        lines.append(f"| largest gap | {gap_cells} |")
        was = ((base.fairness or {}).get(attribute) or {}).get("largest_gap", {}).get(rule.metric)
        if was is not None:
            lines.append("")
            lines.append(
                f"Largest {rule.metric} gap: {number(gaps.get(rule.metric), 3)} "
                f"({base.label}: {number(was, 3)})."
            )
        lines.append("")
    lines.append(
        f"<sub>Bold: the gate's fairness metric (limit {rule.max_gap:g} between groups). "
        f"¹ fewer than {rule.min_group_rows} rows: listed, not judged. The largest gaps are "
        "over all groups, small ones included.</sub>"
    )
    return lines


def gate_section(verdict: gate_report.Verdict | None, why_not: str) -> list[str]:
    if verdict is None:
        return [f"⚠️ {why_not}"]
    text = gate_report.markdown(verdict).strip()
    return text.split("\n", 1)[1].strip().splitlines()  # without its headline: ours says it


# --- Charts ----------------------------------------------------------------------------------


def grid() -> np.ndarray:
    return np.linspace(0.0, 1.0, GRID_POINTS)


def roc_on_grid(roc: pd.DataFrame) -> list[float]:
    """The best true positive rate reachable at each false positive rate of the grid."""
    fpr, tpr = roc["fpr"].to_numpy(), roc["tpr"].to_numpy()
    return [float(tpr[fpr <= x + 1e-12].max(initial=0.0)) for x in grid()]


def precision_on_grid(curve: pd.DataFrame) -> list[float]:
    """Interpolated precision: the best precision at a recall of at least each grid value."""
    recall, precision = curve["recall"].to_numpy(), curve["precision"].to_numpy()
    return [float(precision[recall >= x - 1e-12].max(initial=0.0)) for x in grid()]


def mermaid_chart(
    title: str,
    x_axis: str,
    y_axis: str,
    series: list[tuple[str, str, list[float]]],
    x_values: str = "0 --> 1",
) -> list[str]:
    """A Mermaid line chart (GitHub draws it in the comment). ``series``: label, colour, y values
    at evenly spaced x over ``x_values`` (a range, or a list of category labels). The labels go
    under the chart: Mermaid draws no legend."""
    palette = ", ".join(colour for _, colour, _ in series)
    lines = [
        "```mermaid",
        "---",
        "config:",
        "  themeVariables:",
        "    xyChart:",
        f'      plotColorPalette: "{palette}"',
        "---",
        "xychart-beta",
        f'  title "{title}"',
        f'  x-axis "{x_axis}" {x_values}',
        f'  y-axis "{y_axis}" 0 --> 1',
    ]
    lines += [f"  line [{', '.join(f'{value:.3f}' for value in values)}]" for *_, values in series]
    lines += ["```", legend(series)]
    return lines


COLOUR_NAMES = {BRANCH_COLOUR: "blue", BASE_COLOUR: "grey", REFERENCE_COLOUR: "yellow"}


def legend(series: list[tuple[str, str, list[float]]]) -> str:
    return "<sub>" + " · ".join(f"{COLOUR_NAMES[c]}: {label}" for label, c, _ in series) + "</sub>"


def curve_charts(branch: Side, base: Side) -> list[str]:
    lines: list[str] = []
    charts = [
        ("roc", "ROC curve", "false positive rate", "true positive rate", roc_on_grid),
        ("precision_recall", "Precision-recall curve", "recall", "precision", precision_on_grid),
    ]
    for name, title, x_axis, y_axis, on_grid in charts:
        if name not in branch.curves:
            continue
        series = [("this branch", BRANCH_COLOUR, on_grid(branch.curves[name]))]
        if name in base.curves:
            series.append((base.label, BASE_COLOUR, on_grid(base.curves[name])))
        if name == "roc":
            series.append(("chance", REFERENCE_COLOUR, [float(x) for x in grid()]))
        lines += [*mermaid_chart(title, x_axis, y_axis, series), ""]
    if "calibration" in branch.curves:
        lines += [*calibration_chart(branch.curves["calibration"]), ""]
    if "confusion" in branch.curves:
        lines += confusion_table(branch.curves["confusion"], base.curves.get("confusion"), base)
    return lines


def calibration_chart(calibration: pd.DataFrame) -> list[str]:
    """Observed share of the positive outcome per score bin, against the perfect diagonal. The
    bins are the calibration plot's (only those holding rows), labelled by their mean score."""
    predicted = calibration["mean_predicted"].to_numpy()
    observed = calibration["observed_share"].to_numpy()
    labels = ", ".join(f'"{value:.2f}"' for value in predicted)
    series = [
        ("this branch", BRANCH_COLOUR, list(observed)),
        ("perfect calibration (observed = predicted)", REFERENCE_COLOUR, list(predicted)),
    ]
    return mermaid_chart(
        "Calibration: observed share per score bin",
        "mean predicted probability of the bin",
        "observed share",
        series,
        x_values=f"[{labels}]",
    )


def confusion_table(branch: pd.DataFrame, base_rows: pd.DataFrame | None, base: Side) -> list[str]:
    names = outcome_names()
    order = [names[1], names[0]]  # the positive outcome first

    def counts(frame: pd.DataFrame) -> dict[Any, int]:  # (actual, predicted) -> rows
        pairs = frame.value_counts(["actual", "predicted"])
        return {pair: int(rows) for pair, rows in pairs.items()}

    now = counts(branch)
    was = None if base_rows is None else counts(base_rows)
    lines = [
        f"Decisions on the held-out rows (in brackets: {base.label})",
        "",
        "| actual \\ predicted | " + " | ".join(order) + " |",
        "|---|" + "---:|" * len(order),
    ]
    for actual in order:
        cells = [
            str(now.get((actual, predicted), 0))
            + ("" if was is None else f" ({was.get((actual, predicted), 0)})")
            for predicted in order
        ]
        lines.append(f"| **{actual}** | " + " | ".join(cells) + " |")
    return lines


def image_links(params: Params) -> list[str]:
    figures = sorted(params.paths.figures.glob("*.png"))
    return [f"![{figure.stem}]({figure.as_posix()})" for figure in figures]


# --- The report ------------------------------------------------------------------------------


def headline(branch: Side, base: Side, verdict: gate_report.Verdict | None) -> list[str]:
    if verdict is None:
        gate = "⚠️ not judged"
    elif verdict.passed:
        gate = "✅ passes"
    else:
        gate = f"❌ blocks ({len(verdict.failed_rules())} rules fail)"
    if branch.model_md5 is None:
        model = "no model"
    elif branch.model_md5 == base.model_md5:
        model = f"unchanged from {base.label}"
    else:
        model = f"retrained (`{branch.model_md5[:8]}`, {base.label}: `{str(base.model_md5)[:8]}`)"
    valid = branch.validation
    data = "⚠️ not validated" if valid is None else ("✅ valid" if valid["valid"] else "❌ invalid")
    return [
        "## Model report",
        "",
        f"**Gate:** {gate} · **Model:** {model} · **Data:** {data}",
    ]


def render(
    branch: Side,
    base: Side,
    production: Production,
    verdict: gate_report.Verdict | None,
    why_not: str,
    params: Params,
    head: str,
    images: list[str] | None = None,
) -> str:
    sections = [
        headline(branch, base, verdict),
        ["### Metrics", "", *metrics_table(branch, base, production)],
        ["### Params changed", "", *params_table(branch, base)],
        ["### Data validation", "", *validation_section(branch, base)],
        ["### Promotion gate", "", *gate_section(verdict, why_not)],
        ["### Fairness per group", "", *fairness_section(branch, base, params)],
        ["### Plots", "", *curve_charts(branch, base), *(["", *images] if images else [])],
    ]
    footer = [
        "---",
        f"<sub>Written by `make pr-report` for {head}, against {base.label} at "
        f"{str(base.commit)[:12]}. The figures as images, the plot data and the full reports "
        "are in the run's artifact.</sub>",
    ]
    return (
        "\n".join(line for section in [*sections, footer] for line in [*section, ""]).rstrip()
        + "\n"
    )


def build(params: Params, base_ref: str, images: bool = False) -> str:
    """The report for the working tree against ``base_ref``."""
    base_commit = resolve(base_ref)
    label = base_ref.removeprefix("origin/")
    base = read_side(label, base_commit, params)
    branch = read_side("this branch", None, params)
    verdict, why_not = read_verdict(params)
    if verdict is None:
        production = Production(judged=False)
    else:
        production = Production(True, verdict.production_version, verdict.metrics["production"])
    head = _git("rev-parse", "--short=12", "HEAD").stdout.strip() or "a commit-less tree"
    if _git("status", "--porcelain", "--untracked-files=no").stdout.strip():
        head += " with uncommitted changes (this run's retraining)"
    links = image_links(params) if images else None
    return render(branch, base, production, verdict, why_not, params, head, links)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="make pr-report", description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="main", help="the git ref to compare with")
    parser.add_argument(
        "--images", action="store_true", help="link the PNG figures (for CML image publishing)"
    )
    args = parser.parse_args(argv)
    params = load_params()
    text = build(params, args.base, args.images)
    target = params.paths.pr_report
    write_with(target, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    log.info("wrote %s (%d characters) against %s", target, len(text), args.base)


if __name__ == "__main__":
    run("pr-report", main)
