"""What a rerun must reproduce exactly, and what only within a stated tolerance.

Data is reproduced bit for bit on every machine: the ingest, validate and split outputs, the
model's settings (`model.json`) and its explanation background. A trained model is not: BLAS
libraries pick their kernels by CPU (OpenBLAS: Haswell, SkylakeX, ARM...), and the last bits of
the fitted floats differ, so the model file's bytes, and hence its hash in dvc.lock, differ from
machine to machine. What the model computes is compared instead: every number `evaluate` writes
(metrics, per-group metrics, importances, plot data) within MODEL_OUTPUT_TOLERANCE.

`compare_locks` holds a rerun's dvc.lock against the committed one with exactly these rules, so
a stale lock (code, params or data changed without a rerun) is caught and a different CPU is not.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from credit_risk.config import Paths

# Absolute difference allowed in any number evaluate writes. Across OpenBLAS kernels the
# probabilities differ by ~1e-16 and the written numbers (6 decimals) not at all; a real change
# to the model moves them by far more. The margin covers a value that rounds the other way.
MODEL_OUTPUT_TOLERANCE = 1e-5

Reader = Callable[[str], bytes]  # the committed content of a file, by path


def model_dependent(paths: Paths) -> tuple[set[str], set[str]]:
    """(files whose bytes may differ by CPU, files whose numbers are compared with tolerance)."""
    free = {paths.model.as_posix(), paths.figures.as_posix()}  # figures: drawn from the numbers
    numbers = {p.as_posix() for p in (paths.metrics, paths.fairness, paths.importance)}
    return free, numbers | {paths.plots.as_posix()}


def _entries(lock: dict[str, Any]) -> dict[tuple[str, str, str], Any]:
    """(stage, kind, path or params file) -> hash or params, for every entry of a dvc.lock."""
    found: dict[tuple[str, str, str], Any] = {}
    for stage, body in (lock.get("stages") or {}).items():
        found[(stage, "cmd", "")] = body.get("cmd")
        for kind in ("deps", "outs"):
            for entry in body.get(kind) or []:
                found[(stage, kind, entry["path"])] = entry.get("md5")
        for params_file, values in (body.get("params") or {}).items():
            found[(stage, "params", params_file)] = values
    return found


def _numbers(value: Any, where: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key in sorted(value):
            yield from _numbers(value[key], f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _numbers(item, f"{where}[{index}]")
    else:
        yield where, value


def _parsed(path: str, content: bytes) -> Any:
    if path.endswith(".json"):
        return json.loads(content)
    rows = list(csv.reader(io.StringIO(content.decode("utf-8"))))
    return [[_number_or_text(cell) for cell in row] for row in rows]


def _number_or_text(cell: str) -> Any:
    try:
        return float(cell)
    except ValueError:
        return cell


def differences_in_numbers(path: str, committed: bytes, current: bytes) -> list[str]:
    """Where two versions of a JSON or CSV file differ beyond the tolerance (text exactly)."""
    old = dict(_numbers(_parsed(path, committed)))
    new = dict(_numbers(_parsed(path, current)))
    if old.keys() != new.keys():
        changed = sorted(old.keys() ^ new.keys())[:5]
        return [f"{path}: different entries ({', '.join(changed)})"]
    problems = []
    for key in old:
        a, b = old[key], new[key]
        if isinstance(a, float) and isinstance(b, float):
            if not math.isclose(a, b, rel_tol=0.0, abs_tol=MODEL_OUTPUT_TOLERANCE):
                problems.append(f"{path}: {key} is {b} (committed {a})")
        elif a != b:
            problems.append(f"{path}: {key} is {b!r} (committed {a!r})")
    return problems


def compare_locks(
    committed: dict[str, Any], current: dict[str, Any], paths: Paths, root: Path, read: Reader
) -> list[str]:
    """Every way the rerun in ``root`` (lock ``current``) fails to reproduce ``committed``.

    ``read`` gives a file's committed bytes (for a folder: of each file in it, by path).
    """
    free, numeric = model_dependent(paths)
    old, new = _entries(committed), _entries(current)
    problems = [f"dvc.lock: {k[0]} {k[1]} {k[2]} only in one lock" for k in old.keys() ^ new.keys()]
    checked: set[str] = set()
    for key in sorted(old.keys() & new.keys()):
        stage, kind, path = key
        if old[key] == new[key] or path in free:
            continue
        if path in numeric:
            if path not in checked:
                checked.add(path)
                problems += _compare_files(path, root, read)
            continue
        what = "params" if kind == "params" else "hash"
        problems.append(f"dvc.lock: {stage} {kind} {path or 'cmd'}: {what} differs from the commit")
    return problems


def _compare_files(path: str, root: Path, read: Reader) -> list[str]:
    target = root / path
    files = sorted(p for p in target.rglob("*") if p.is_file()) if target.is_dir() else [target]
    problems = []
    for file in files:
        name = file.relative_to(root).as_posix()
        try:
            committed = read(name)
        except FileNotFoundError:
            problems.append(f"{name}: not in the commit")
            continue
        problems += differences_in_numbers(name, committed, file.read_bytes())
    return problems
