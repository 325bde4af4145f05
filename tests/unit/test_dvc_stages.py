"""dvc.yaml lists, for each stage, exactly the source files the stage runs and reads.

A stage's modules are found statically: its `python -m` module and everything it imports from
the package, transitively (with the packages' __init__ files, which importing runs). A module
that reads a file beside itself says so as ``Path(__file__).with_name("file")``, and that file
is a dependency too. A change anywhere a stage reads then reruns that stage, and nothing else
does.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "src"
PACKAGE = "credit_risk"
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def module_file(name: str) -> Path | None:
    base = SOURCE / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path, name: str) -> set[str]:
    """Package modules that ``path`` (module ``name``) imports, absolute or relative."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}  # `from pkg import module`
    return {m for m in found if m.split(".")[0] == PACKAGE and module_file(m) is not None}


def files_read(path: Path) -> set[Path]:
    """Files a module names as ``Path(__file__).with_name("...")``."""
    names = re.findall(
        r"Path\(__file__\)\.with_name\(\s*[\"']([^\"']+)[\"']\s*\)", path.read_text()
    )
    return {path.with_name(name) for name in names}


def stage_sources(module: str) -> set[Path]:
    """Every package file the module runs or reads when executed with ``python -m``."""
    seen: set[str] = set()
    queue = [module]
    while queue:
        name = queue.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        queue += [".".join(parts[:i]) for i in range(1, len(parts))]  # parent packages run too
        file = module_file(name)
        assert file is not None, name
        queue += sorted(imported_modules(file, name) - seen)
    files = {module_file(name) for name in seen}
    sources = {f for f in files if f is not None}
    return sources | {data for f in sources for data in files_read(f)}


def listed_sources(stage: dict) -> set[Path]:
    return {ROOT / dep for dep in stage.get("deps", []) if dep.startswith(f"src/{PACKAGE}/")}


@pytest.mark.parametrize("name", list(STAGES))
def test_stage_lists_exactly_what_it_runs_and_reads(name: str) -> None:
    stage = STAGES[name]
    command = re.fullmatch(r"python -m ([\w.]+)", stage["cmd"])
    assert command, f"stage {name}: cmd should be `python -m {PACKAGE}.<module>`"
    expected, listed = stage_sources(command.group(1)), listed_sources(stage)
    missing = sorted(p.relative_to(ROOT).as_posix() for p in expected - listed)
    extra = sorted(p.relative_to(ROOT).as_posix() for p in listed - expected)
    assert not missing and not extra, (
        f"dvc.yaml stage {name!r}: add to deps {missing}; remove from deps {extra}"
    )


def test_the_analysis_sees_imports_and_read_files() -> None:
    """The derivation itself: evaluate reaches the contract through schema, and the package."""
    sources = {p.relative_to(SOURCE).as_posix() for p in stage_sources(f"{PACKAGE}.evaluate")}
    assert {f"{PACKAGE}/__init__.py", f"{PACKAGE}/schema.py", f"{PACKAGE}/contract.yaml"} <= sources
    assert f"{PACKAGE}/serving/service.py" not in sources
