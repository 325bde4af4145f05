"""`make fetch-log`: copy a window of a prediction log kept elsewhere into a local folder.

    python -m credit_risk.monitoring.fetch URL DEST [--since WHEN] [--until WHEN]
    python -m credit_risk.monitoring.fetch URL DEST --outcome-horizon [--until WHEN]

URL is the folder an environment's replicas log to, as fsspec names it: ``s3://bucket/path``
(credentials and ``AWS_ENDPOINT_URL`` from the environment, as for the DVC remote), a local
path, or any other filesystem fsspec knows. The day partitions the window touches
(``monitor.window_days`` up to now, or --since/--until) and every outcome are copied; a file
already in DEST with the same size is skipped, so a scheduled job fetches only what is new.
Each file arrives under a temporary name and is renamed when complete: an interrupted fetch
leaves no half file for the monitor to read. Then `make monitor LOG=DEST` judges it.
--outcome-horizon fetches instead every day up to ``serve.prediction_log.max_outcome_age_days``
before --until: the predictions that outcomes received in any window up to then may name (what
`make retrain-data` joins).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path, PurePosixPath

from fsspec.core import url_to_fs

from credit_risk.config import load_params
from credit_risk.errors import ConfigError
from credit_risk.files import atomic_path
from credit_risk.monitoring.job import add_window_arguments, window_of
from credit_risk.monitoring.predictions import OUTCOMES, day_of
from credit_risk.stage import run

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fetched:
    copied: int  # files copied
    skipped: int  # files already here, same size
    bytes: int  # bytes copied


def wanted(relative: PurePosixPath, first: date, last: date) -> bool:
    """A log file to fetch: an outcome (any day: they name scores of earlier days), or a
    prediction file of a day in [first, last]."""
    parts = relative.parts
    if parts and parts[0] == OUTCOMES:
        return True
    day = day_of(PurePosixPath(parts[0])) if parts else None
    return day is not None and first <= day <= last


def fetch(url: str, destination: Path, window: tuple[datetime, datetime]) -> Fetched:
    """Copy the window's prediction files and every outcome from ``url`` to ``destination``."""
    try:
        filesystem, root = url_to_fs(url)
    except (ImportError, ValueError) as exc:
        raise ConfigError(f"{url}: not a log location this machine can read ({exc})") from None
    root = root.rstrip("/")
    try:
        if not filesystem.isdir(root):
            raise ConfigError(f"{url}: no prediction log there (not a folder)")
        found = filesystem.find(root, detail=True)
    except (OSError, PermissionError) as exc:
        raise ConfigError(f"{url}: cannot list the prediction log: {exc}") from None
    first, last = window[0].date(), window[1].date()
    copied = skipped = size = 0
    for path, info in sorted(found.items()):
        if info.get("type") != "file":
            continue
        relative = PurePosixPath(path).relative_to(PurePosixPath(root))
        if not wanted(relative, first, last):
            continue
        target = destination.joinpath(*relative.parts)
        length = int(info.get("size") or 0)
        if target.is_file() and target.stat().st_size == length:
            skipped += 1
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp:
            filesystem.get_file(path, str(tmp))
        copied += 1
        size += length
    return Fetched(copied, skipped, size)


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m credit_risk.monitoring.fetch",
        description="Copy a window of a prediction log (s3://..., a folder...) to a folder.",
    )
    parser.add_argument("url", help="where the environment logs: s3://bucket/path, a folder...")
    parser.add_argument("destination", type=Path, help="the local folder to copy into")
    add_window_arguments(parser, choose_log=False)
    parser.add_argument(
        "--outcome-horizon",
        action="store_true",
        help="every day that outcomes up to --until may name "
        "(serve.prediction_log.max_outcome_age_days before it)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = _arguments(argv)
    params = load_params()
    if args.outcome_horizon:
        days = params.serve.prediction_log.max_outcome_age_days + 1
        window = window_of(None, args.until, days)
    else:
        window = window_of(args.since, args.until, params.monitor.window_days)
    done = fetch(args.url, args.destination, window)
    log.info(
        "%s -> %s: %d files copied (%.1f MB), %d already here",
        args.url,
        args.destination,
        done.copied,
        done.bytes / 1e6,
        done.skipped,
    )


if __name__ == "__main__":
    run("fetch-log", main)
