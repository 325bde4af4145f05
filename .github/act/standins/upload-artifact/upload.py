"""The upload-artifact stand-in's work (see action.yml), for local act runs only."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def files_under(path: Path, include_hidden: bool) -> list[Path]:
    if path.is_file():
        return [path]
    found = []
    for item in sorted(path.rglob("*")):
        hidden = any(part.startswith(".") for part in item.relative_to(path).parts)
        if item.is_file() and (include_hidden or not hidden):
            found.append(item)
    return found


def main() -> int:
    name = os.environ["NAME"]
    store = Path(os.environ["ACT_STANDIN_ARTIFACTS"]) / os.environ["GITHUB_RUN_ID"] / name
    workspace = Path(os.environ["GITHUB_WORKSPACE"])
    paths = [line.strip() for line in os.environ["PATHS"].splitlines() if line.strip()]
    if any(char in line for line in paths for char in "*?[!"):
        print(f"::error::upload-artifact stand-in: wildcards are not supported: {paths}")
        return 1
    given = [(workspace / line).resolve() for line in paths]
    existing = [path for path in given if path.exists()]
    include_hidden = os.environ["INCLUDE_HIDDEN"] == "true"
    files = [file for path in existing for file in files_under(path, include_hidden)]
    if not files:
        message = f"No files were found with the provided path: {' '.join(paths)}."
        mode = os.environ["IF_NO_FILES_FOUND"]
        if mode == "error":
            print(f"::error::upload-artifact stand-in: {message}")
            return 1
        if mode == "warn":
            print(f"::warning::upload-artifact stand-in: {message} No artifact will be uploaded.")
        return 0
    # The real action's root: the least common ancestor of the search paths (a file's folder).
    roots = [path if path.is_dir() else path.parent for path in existing]
    root = Path(os.path.commonpath(roots))
    if store.exists():
        if os.environ["OVERWRITE"] != "true":
            print(f"::error::upload-artifact stand-in: an artifact named {name} exists in this run")
            return 1
        shutil.rmtree(store)
    for file in files:
        target = store / file.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(file, target)
    print(f"upload-artifact stand-in: {name}: {len(files)} files from {root} kept in {store}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
