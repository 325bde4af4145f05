"""The monitor workflow's reading of `make monitor`'s verdict (paths from params.yaml's monitor).

    python .github/scripts/monitor_verdict.py clear      # remove reports an earlier run left
    python .github/scripts/monitor_verdict.py outputs    # this run's verdict, as step outputs
    python .github/scripts/monitor_verdict.py pr-body    # the retraining pull request's text

`make monitor` exits 1 both when it raises the alarm and when it fails before judging; the
workflow clears the reports first, so a verdict found afterwards is this run's. ``outputs``
fails (exit 1) when there is none, and otherwise writes ``alarm``, ``since``, ``until`` and the
report paths to $GITHUB_OUTPUT (or prints them). ``pr-body`` prints the retraining pull
request's description: what `make retrain-data` added (params.yaml's ingest file's record),
then the monitor's summary.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from credit_risk.config import load_params
from credit_risk.monitoring.retrain import record_of


def clear() -> None:
    settings = load_params().monitor
    for path in (settings.report, settings.html, settings.summary):
        path.unlink(missing_ok=True)


def _verdict() -> dict[str, Any]:
    report = load_params().monitor.report
    if not report.is_file():
        raise SystemExit(f"::error::no verdict in {report}: the monitor failed before judging")
    verdict: dict[str, Any] = json.loads(report.read_text(encoding="utf-8"))
    return verdict


def outputs() -> None:
    settings = load_params().monitor
    verdict = _verdict()
    paths = (settings.report, settings.html, settings.summary)
    lines = [
        f"alarm={str(verdict['alarm']).lower()}",
        f"since={verdict['window']['since']}",
        f"until={verdict['window']['until']}",
        f"report={settings.report}",
        f"html={settings.html}",
        f"summary={settings.summary}",
        # Where the three files land again when the report artifact is downloaded.
        f"folder={os.path.commonpath([path.parent for path in paths])}",
    ]
    target = os.environ.get("GITHUB_OUTPUT")
    if target:
        with Path(target).open("a", encoding="utf-8") as out:
            out.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    if verdict["alarm"]:
        for reason in verdict["reasons"]:
            print(f"::warning::{reason}")


def pr_body() -> None:
    params = load_params()
    record = json.loads(record_of(params.ingest.file).read_text(encoding="utf-8"))
    fresh = record["fresh"]
    outcomes = ", ".join(f"{count} {word}" for word, count in fresh["outcomes"].items())
    versions = ", ".join(f"`{name}` ({count})" for name, count in fresh["model_versions"].items())
    window = fresh["received"]
    print(
        f"The monitor raised the alarm. This retrains on **{fresh['rows']} predictions whose "
        f"outcomes arrived** from {window['since']} to {window['until']} ({outcomes}; scored "
        f"by {versions}), added to the {record['base']['rows']} rows the current model learned "
        f"from: `{record['data']}`, {record['rows']} rows.\n\n"
        "The rows are in the DVC remote, not in git (the pointer and the record are). "
        "train-report retrains and comments here with the comparison; the gate decides as for "
        "any change.\n"
    )
    summary = params.monitor.summary
    if summary.is_file():
        print(summary.read_text(encoding="utf-8"))


def main(argv: list[str]) -> int:
    commands = {"clear": clear, "outputs": outputs, "pr-body": pr_body}
    if len(argv) != 1 or argv[0] not in commands:
        print(f"usage: monitor_verdict.py {'|'.join(commands)}", file=sys.stderr)
        return 2
    commands[argv[0]]()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
