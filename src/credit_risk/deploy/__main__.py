"""Deploy, promote, roll back and inspect the environments in deploy/*.yaml.

    python -m credit_risk.deploy deploy staging credit-risk:<bento version>  # a new release
    python -m credit_risk.deploy deploy production             # what the file says
    python -m credit_risk.deploy promote                       # staging's release -> production
    python -m credit_risk.deploy rollback production           # the previous release
    python -m credit_risk.deploy status                        # git, registry, target
    python -m credit_risk.deploy stop staging                  # stop serving (file unchanged)

The environment files are the record: a command that changes what runs writes the file (commit
it; production's change is the reviewed pull request), and the registry's aliases follow it.
"""

from __future__ import annotations

import argparse
import sys

from credit_risk.deploy import releases
from credit_risk.deploy.releases import deploy, promote, rollback, status_table, stop
from credit_risk.stage import run


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m credit_risk.deploy", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    to = commands.add_parser("deploy", help="deploy a bento (or the file's release) to ENV")
    to.add_argument("environment", metavar="ENV")
    to.add_argument("bento", nargs="?", help="a built bento's tag; default: the file's release")
    up = commands.add_parser("promote", help="deploy staging's exact release to production")
    up.add_argument("--from", dest="source", default=releases.STAGING, metavar="ENV")
    up.add_argument("--to", dest="destination", default=releases.PRODUCTION, metavar="ENV")
    back = commands.add_parser("rollback", help="deploy ENV's previous release (git history)")
    back.add_argument("environment", metavar="ENV")
    commands.add_parser("status", help="each environment: git, registry and target, compared")
    halt = commands.add_parser("stop", help="stop what serves ENV (its file keeps the release)")
    halt.add_argument("environment", metavar="ENV")
    args = parser.parse_args()
    if args.command == "deploy":
        print(deploy(args.environment, args.bento))
    elif args.command == "promote":
        print(promote(args.source, args.destination))
    elif args.command == "rollback":
        print(rollback(args.environment))
    elif args.command == "stop":
        print(stop(args.environment))
    else:
        table, agreed = status_table()
        print(table)
        if not agreed:
            sys.exit(3)  # a disagreement: something drifted from what git says


if __name__ == "__main__":
    run("deploy", main)
