"""What the deploy commands do: resolve a release, check it against the registry, make a
target run it, then record it in the environment file and move the registry alias to it.

The order matters: the file and the alias change only after the target took the release, so a
failed deploy leaves git, the registry and the running service as they were.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import bentoml
import mlflow
from mlflow.exceptions import MlflowException

from credit_risk.config import Params, load_params
from credit_risk.deploy.environments import (
    ENVIRONMENTS_DIR,
    PROMOTION_ORDER,
    Release,
    environment_file,
    environment_names,
    load_environment,
    parse_environment,
    write_release,
)
from credit_risk.deploy.kubernetes import render_all
from credit_risk.deploy.targets import RUNTIME_DIR, DeployError, Observed, target_for
from credit_risk.errors import ConfigError, CreditRiskError
from credit_risk.registry.client import connect, get_version, set_alias, version_by_alias
from credit_risk.registry.register import CONTENT_VERSION_TAG
from credit_risk.registry.trace import find
from credit_risk.serving.bento import pinned_model

STAGING, PRODUCTION = PROMOTION_ORDER


@dataclass(frozen=True)
class Context:
    """Where the commands read and write: the environment files, runtime state, params."""

    params: Params
    folder: Path = ENVIRONMENTS_DIR
    runtime: Path = RUNTIME_DIR


def _context(context: Context | None) -> Context:
    return context or Context(load_params())


def release_of(bento: str, context: Context) -> Release:
    """The release a built bento is: its pinned model and that model's registry version."""
    model_tag = pinned_model(bento)
    name = context.params.serve.model_name
    if bentoml.Tag.from_taglike(model_tag).name != name:
        raise ConfigError(f"bento {bento} serves {model_tag}, not a version of {name!r}")
    version = find(connect(context.params.tracking.experiment), name, model_tag)
    return Release(
        bento=str(bentoml.get(bento).tag), model_tag=model_tag, model_version=int(version.version)
    )


def check_registered(release: Release, context: Context) -> mlflow.MlflowClient:
    """The release's registry version exists, holds its model, and passed the gate."""
    name = context.params.serve.model_name
    client = connect(context.params.tracking.experiment)
    version = get_version(client, name, release.model_version)
    tags = dict(version.tags or {})
    content = release.model_tag.rpartition(":")[2]
    if tags.get(CONTENT_VERSION_TAG) != content:
        raise DeployError(
            f"registry version {release.model_version} holds model "
            f"{name}:{tags.get(CONTENT_VERSION_TAG, '?')}, but {release.bento} serves "
            f"{release.model_tag}"
        )
    if tags.get("gate.passed") != "true":
        raise DeployError(f"registry version {release.model_version} did not pass the gate")
    return client


def _apply(name: str, release: Release, context: Context) -> Observed:
    """Deploy ``release`` to environment ``name``; record it only once it serves."""
    environment = load_environment(name, context.folder)
    client = check_registered(release, context)
    observed = target_for(name, environment, context.runtime).deploy(release)
    if environment.release != release:
        write_release(name, release, context.folder)
        # The Kubernetes overlays and Argo CD applications follow the file, in the same commit.
        render_all(context.folder)
    set_alias(client, context.params.serve.model_name, name, release.model_version)
    return observed


def _said(name: str, release: Release, observed: Observed, context: Context) -> str:
    path = environment_file(name, context.folder)
    return (
        f"{name}: {release.describe()} serves at {observed.where} ({observed.detail})\n"
        f"recorded in {path} (and its Kubernetes overlay); commit them to make it the record"
    )


def deploy(name: str, bento: str | None, context: Context | None = None) -> str:
    """Deploy a bento to an environment, or (without one) the release its file records."""
    context = _context(context)
    environment = load_environment(name, context.folder)
    if bento is None:
        if environment.release is None:
            raise ConfigError(
                f"{environment_file(name, context.folder)} has no release yet; "
                f"give the bento to deploy (make deploy ENV={name} BENTO=<tag>)"
            )
        release = environment.release
    else:
        release = release_of(bento, context)
        earlier = PROMOTION_ORDER[: PROMOTION_ORDER.index(name)] if name in PROMOTION_ORDER else ()
        for before in earlier:
            ran = load_environment(before, context.folder).release
            if ran != release:
                raise DeployError(
                    f"{name} takes only what {before} runs ({ran.bento if ran else 'nothing'}); "
                    f"deploy {bento} to {before} first, then `make promote`"
                )
    observed = _apply(name, release, context)
    return _said(name, release, observed, context)


def promote(
    source: str = STAGING, destination: str = PRODUCTION, context: Context | None = None
) -> str:
    """Deploy exactly the release ``source`` runs (and answers with) to ``destination``."""
    context = _context(context)
    release = load_environment(source, context.folder).release
    if release is None:
        raise DeployError(f"{source} has no release to promote")
    seen = target_for(source, load_environment(source, context.folder), context.runtime).observe()
    if not (seen.ready and seen.bento == release.bento):
        now = f"serves {seen.bento}" if seen.running else "is not running"
        raise DeployError(
            f"{source} must serve {release.bento} and be ready before promotion; "
            f"it {now} ({seen.detail})"
        )
    observed = _apply(destination, release, context)
    return _said(destination, release, observed, context)


def history(name: str, context: Context) -> list[Release]:
    """The releases an environment's file recorded, newest commit first (duplicates kept once)."""
    path = environment_file(name, context.folder)
    listed = _git("log", "--format=%H", "--", str(path))
    releases: list[Release] = []
    for commit in listed.split():
        text = _git("show", f"{commit}:{path.as_posix()}", quiet=True)
        if not text:
            continue
        try:
            recorded = parse_environment(text, path).release
        except ConfigError:
            continue  # an older layout of the file
        if recorded is not None and recorded not in releases:
            releases.append(recorded)
    return releases


def _git(*args: str, quiet: bool = False) -> str:
    try:
        done = subprocess.run(
            ["git", *args], capture_output=True, text=True, check=True, timeout=30
        )
    except (OSError, subprocess.CalledProcessError) as problem:
        if quiet:
            return ""
        raise DeployError(f"git {' '.join(args)} failed: {problem}") from None
    return done.stdout


def rollback(name: str, context: Context | None = None) -> str:
    """Deploy the release the environment ran before the current one, as git recorded it."""
    context = _context(context)
    current = load_environment(name, context.folder).release
    earlier = [release for release in history(name, context) if release != current]
    if not earlier:
        raise DeployError(
            f"git records no earlier release of {name} than {current.bento if current else 'none'}"
            f" (commit {environment_file(name, context.folder)} after each deploy)"
        )
    previous = earlier[0]
    observed = _apply(name, previous, context)
    return "rolled back: " + _said(name, previous, observed, context)


def stop(name: str, context: Context | None = None) -> str:
    """Stop what serves an environment; its file keeps the release (`status` then says so)."""
    context = _context(context)
    environment = load_environment(name, context.folder)
    target_for(name, environment, context.runtime).stop()
    recorded = environment.release.bento if environment.release else "nothing"
    return (
        f"{name}: stopped; {environment_file(name, context.folder)} still records {recorded} "
        f"(`make deploy ENV={name}` starts it again)"
    )


def status_table(context: Context | None = None) -> tuple[str, bool]:
    """Each environment as git, the registry and the target see it; False if they disagree."""
    context = _context(context)
    name = context.params.serve.model_name
    rows = [("environment", "git (deploy file)", "registry alias", "target answers", "since", "")]
    agreed = True
    try:
        client: mlflow.MlflowClient | None = connect(context.params.tracking.experiment)
    except (CreditRiskError, MlflowException) as problem:  # a registry down is a status too
        client, registry_problem = None, str(problem)
    for environment_name in environment_names(context.folder):
        environment = load_environment(environment_name, context.folder)
        wanted = environment.release
        if client is None:
            alias = f"unknown ({registry_problem})"
            aliased = None
        else:
            found = version_by_alias(client, name, environment_name)
            aliased = int(found.version) if found else None
            alias = f"version {aliased}" if aliased else "none"
        seen = target_for(environment_name, environment, context.runtime).observe()
        answers = (
            f"{seen.model_tag} ({'ready' if seen.ready else 'NOT ready'})"
            if seen.running
            else f"nothing ({seen.detail})"
        )
        problems = []
        if wanted is not None:
            if client is not None and aliased != wanted.model_version:
                problems.append("registry differs")
            if not seen.running or seen.model_tag != wanted.model_tag:
                problems.append("target differs")
            elif not seen.ready:
                problems.append("not ready")
        elif seen.running:
            problems.append("runs what git does not record")
        agreed = agreed and not problems
        rows.append(
            (
                environment_name,
                f"{wanted.bento} (v{wanted.model_version})" if wanted else "nothing",
                alias,
                answers,
                seen.since.isoformat(timespec="seconds") if seen.since else "-",
                "DRIFT: " + ", ".join(problems) if problems else "in sync",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    return "\n".join(line.rstrip() for line in lines), agreed
