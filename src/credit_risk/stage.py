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
    except FileNotFoundError as exc:
        # An input an earlier stage writes is missing: say which, not a traceback.
        missing = exc.filename or exc
        print(
            f"error: {stage} stage failed: {missing} not found (run `dvc repro`)", file=sys.stderr
        )
        sys.exit(1)
