"""What every stage entry point shares: logging set-up and clean failure messages."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from credit_risk.errors import CreditRiskError

log = logging.getLogger("credit_risk")


def run(stage: str, main: Callable[[], object]) -> None:
    """Run a stage's main(); a CreditRiskError ends it with exit code 1 and its message only."""
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {stage} %(levelname)s %(message)s")
    try:
        main()
    except CreditRiskError as exc:
        print(f"error: {stage} stage failed: {exc}", file=sys.stderr)
        sys.exit(1)
    except OSError as exc:
        # A missing input, an unwritable target, a full disk: name the path, not a traceback.
        where = exc.filename2 or exc.filename
        hint = " (the stage that writes it has not run: `dvc repro`)"
        missing = isinstance(exc, FileNotFoundError) and not str(where).endswith(".tmp")
        message = f"{where}: {exc.strerror or exc}{hint if missing else ''}"
        print(f"error: {stage} stage failed: {message}", file=sys.stderr)
        sys.exit(1)
