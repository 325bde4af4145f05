"""Write the promotion: production's file gets exactly the release staging's file records.

    python .github/scripts/promotion.py    # prints the release, for the pull request's title

`make promote` deploys; this only writes deploy/production.yaml (comments and settings kept), so
that the deploy workflow can open the promotion as a pull request: merging it is the reviewed,
recorded step, and the production job deploys what the merged file says.
"""

from __future__ import annotations

import sys

from credit_risk.deploy.environments import PROMOTION_ORDER, load_environment, write_release
from credit_risk.errors import CreditRiskError


def write_promotion(source: str, destination: str) -> str:
    """Copy ``source``'s release into ``destination``'s file; return the release's description."""
    release = load_environment(source).release
    if release is None:
        raise CreditRiskError(f"{source} has no release to promote (deploy to {source} first)")
    write_release(destination, release)
    return release.describe()


def main() -> None:
    source, destination = PROMOTION_ORDER
    try:
        print(write_promotion(source, destination))
    except CreditRiskError as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
