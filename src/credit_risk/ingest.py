"""Stage ingest: bring the configured source into data/raw, unchanged in content.

The source file is decompressed if needed and copied byte for byte. A synthetic source is drawn
from that file with its seed and shifts (see synthetic.py), which needs the file to satisfy the
contract; otherwise nothing is parsed here: judging the data is the validate stage's job, so that
a broken source fails there with the full list of problems.
"""

from __future__ import annotations

import gzip
import logging
import shutil
import zlib
from pathlib import Path

from credit_risk import synthetic
from credit_risk.config import Ingest, load_params
from credit_risk.errors import DataError
from credit_risk.files import write_with
from credit_risk.stage import run

log = logging.getLogger(__name__)


def copy_source(source: Path, target: Path) -> None:
    """Copy a CSV (plain or gzip-compressed) to ``target`` as plain CSV."""
    if not source.is_file():
        raise DataError(f"source file {source} does not exist (ingest.file in params.yaml)")

    def write(tmp: Path) -> None:
        opener = gzip.open if source.suffix == ".gz" else open
        try:
            with opener(source, "rb") as src, tmp.open("wb") as dst:
                shutil.copyfileobj(src, dst, length=1 << 20)
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise DataError(f"source file {source} is not a readable gzip file: {exc}") from None

    write_with(target, write)


def ingest(config: Ingest, target: Path) -> None:
    """Write the configured source to ``target``."""
    if config.source == "file":
        copy_source(config.file, target)
        log.info("copied %s to %s", config.file, target)
    else:
        spec = config.synthetic
        source = synthetic.load_source(config.file)
        frame = synthetic.generate(source, spec.rows, spec.seed, spec.shift)
        write_with(target, lambda tmp: frame.to_csv(tmp, index=False))
        log.info("drew %d synthetic rows (seed %d) from %s", spec.rows, spec.seed, config.file)


def main() -> None:
    params = load_params()
    ingest(params.ingest, params.paths.raw)


if __name__ == "__main__":
    run("ingest", main)
