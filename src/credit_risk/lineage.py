"""Where a model came from: the code version and the exact data it was trained on."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from credit_risk.files import md5

CONTENT_VERSION_LENGTH = 16  # characters of the fingerprint in a stored model's tag


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.strip()


def git_commit() -> str:
    """The commit checked out, or "unknown" outside a git repository."""
    return _git("rev-parse", "HEAD") or "unknown"


def git_dirty() -> str:
    """ "true" when tracked files differ from the commit, "unknown" outside a git repository."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return "unknown" if status is None else str(bool(status)).lower()


def model_fingerprint(model: Path, info: Path, background: Path) -> str:
    """One hash of the three files a trained model is: the pipeline, its settings (threshold,
    features) and its explanation background. A new threshold leaves the pipeline file's bytes
    as they were, so the pipeline's hash alone would not tell the two models apart."""
    digests = "".join(md5(path) for path in (model, info, background))
    return hashlib.sha256(digests.encode()).hexdigest()


def content_version(fingerprint: str) -> str:
    """The version part of the stored model's tag: what the service reports."""
    return fingerprint[:CONTENT_VERSION_LENGTH]


def served_model_version(name: str, model: Path, info: Path, background: Path) -> str:
    """The model version a service of these files reports (X-Model-Version) and logs with each
    prediction: the tag of the stored model, ``<name>:<content version>``."""
    return f"{name}:{content_version(model_fingerprint(model, info, background))}"


def lineage_tags(data: dict[str, Path]) -> dict[str, str]:
    """Tags that tie a run to its code and to the DVC hashes of its input files."""
    tags = {"lineage.git_commit": git_commit(), "lineage.git_dirty": git_dirty()}
    for name, path in data.items():
        tags[f"lineage.{name}_md5"] = md5(path)
    return tags
