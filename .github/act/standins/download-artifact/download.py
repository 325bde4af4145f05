"""The download-artifact stand-in's work (see action.yml), for local act runs only."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def main() -> int:
    run = Path(os.environ["ACT_STANDIN_ARTIFACTS"]) / os.environ["GITHUB_RUN_ID"]
    workspace = Path(os.environ["GITHUB_WORKSPACE"])
    target = workspace / os.environ["TARGET"] if os.environ["TARGET"] else workspace
    name = os.environ["NAME"]
    if name:
        source = run / name
        if not source.is_dir():
            print(f"::error::download-artifact stand-in: Artifact not found for name: {name}")
            return 1
        shutil.copytree(source, target, dirs_exist_ok=True)
        print(f"download-artifact stand-in: {name} into {target}")
        return 0
    names = sorted(path.name for path in run.iterdir()) if run.is_dir() else []
    for each in names:
        shutil.copytree(run / each, target / each, dirs_exist_ok=True)
    print(f"download-artifact stand-in: {len(names)} artifacts into {target}: {names}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
