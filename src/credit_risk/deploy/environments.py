"""The environment files: deploy/<name>.yaml says what runs in <name> and where.

Each file holds the release (the exact bento, the model it pins and its registry version) and
the settings of every deploy target; ``target`` picks the one `deploy` drives. A promotion or a
rollback is a change to one of these files, reviewed like code. Files are read strictly (a typo
names the key) and written back with their comments kept.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml as pyyaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from credit_risk.errors import ConfigError
from credit_risk.files import write_with
from credit_risk.yamlfile import checked_mapping, load_yaml_model

ENVIRONMENTS_DIR = Path("deploy")
# Promotion runs through these in order: a release reaches production only from staging.
PROMOTION_ORDER: tuple[str, ...] = ("staging", "production")
TAG_PATTERN = r"^[a-z0-9][a-z0-9_.-]*:[a-z0-9][a-z0-9_.-]*$"
Tag = Annotated[str, Field(pattern=TAG_PATTERN)]
Port = Annotated[int, Field(ge=1024, le=65535)]
Quantity = Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")]
# A Kubernetes object name (DNS subdomain), e.g. a storage class.
ObjectName = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Release(Strict):
    """What runs: a built bento, the stored model it pins, and that model's registry version."""

    bento: Tag
    model_tag: Tag  # what the service reports as X-Model-Version
    model_version: Annotated[int, Field(ge=1)]  # the MLflow registry version

    @model_validator(mode="after")
    def _not_latest(self) -> Release:
        for tag in (self.bento, self.model_tag):
            if tag.endswith(":latest"):
                raise ValueError(f"{tag}: 'latest' moves; name the exact version")
        return self

    def describe(self) -> str:
        return f"{self.bento} (model {self.model_tag}, registry version {self.model_version})"


class LocalSettings(Strict):
    """The local target: `bentoml serve` processes behind a reverse proxy on this machine."""

    port: Port  # the proxy listens on 127.0.0.1:<port>
    replicas: Annotated[int, Field(ge=1, le=16)]  # one `bentoml serve` process (one worker) each
    ready_timeout_seconds: Annotated[int, Field(ge=5, le=900)]
    drain_seconds: Annotated[float, Field(ge=0, le=300)]  # old processes finish their requests


class Resources(Strict):
    cpu: Quantity
    memory: Quantity


class ResourceSettings(Strict):
    requests: Resources
    limits: Resources


class ArgoCdSettings(Strict):
    # The git repository Argo CD watches; None: this repository's `origin` remote when rendering.
    repo_url: Annotated[str, Field(min_length=1)] | None
    revision: Annotated[str, Field(min_length=1)]  # the branch (or tag) it follows


class PredictionLogVolume(Strict):
    """The volume the pods share for the prediction log: a PersistentVolumeClaim that every
    replica mounts (ReadWriteMany). Rendered only while serve.prediction_log.enabled is true."""

    size: str  # what the claim requests, e.g. 50Gi
    storage_class: ObjectName  # a class of the cluster that offers ReadWriteMany

    @field_validator("size")
    @classmethod
    def _storage_size(cls, value: str) -> str:
        if not re.fullmatch(r"[1-9][0-9]*(Mi|Gi|Ti)", value):
            raise ValueError("a storage size is a whole number and Mi, Gi or Ti, e.g. 50Gi")
        return value


class KubernetesSettings(Strict):
    """The kubernetes target: manifests rendered from this file, applied with kubectl."""

    namespace: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]
    image_registry: str | None  # prefix of the image name; None: the image is the bento tag
    replicas: Annotated[int, Field(ge=1, le=100)]  # the autoscaler's minimum
    max_replicas: Annotated[int, Field(ge=1, le=1000)]
    target_cpu_percent: Annotated[int, Field(ge=1, le=100)]
    min_available: Annotated[int, Field(ge=0)]  # the disruption budget
    resources: ResourceSettings
    rollout_timeout_seconds: Annotated[int, Field(ge=10, le=3600)]
    prediction_log: PredictionLogVolume
    argocd: ArgoCdSettings

    @model_validator(mode="after")
    def _consistent(self) -> KubernetesSettings:
        if self.max_replicas < self.replicas:
            raise ValueError("max_replicas must be at least replicas")
        if self.min_available > self.replicas:
            raise ValueError("min_available cannot exceed replicas (no pod could ever be evicted)")
        return self


TargetKind = Literal["local", "kubernetes"]


class Environment(Strict):
    """One environment file. ``release`` is None until the first deploy."""

    release: Release | None
    target: TargetKind
    local: LocalSettings
    kubernetes: KubernetesSettings


def environment_names(folder: Path = ENVIRONMENTS_DIR) -> list[str]:
    """The environments: the files deploy/<name>.yaml, in promotion order, then by name."""
    names = sorted(path.stem for path in folder.glob("*.yaml"))
    order = {name: index for index, name in enumerate(PROMOTION_ORDER)}
    return sorted(names, key=lambda name: (order.get(name, len(order)), name))


def environment_file(name: str, folder: Path = ENVIRONMENTS_DIR) -> Path:
    """The file of a known environment; an unknown name is a ConfigError listing the known ones."""
    known = environment_names(folder)
    if not re.fullmatch(r"[a-z][a-z0-9-]*", name) or name not in known:
        listed = ", ".join(known) or f"none (no {folder}/*.yaml)"
        raise ConfigError(f"unknown environment {name!r}; environments: {listed}")
    return folder / f"{name}.yaml"


def load_environment(name: str, folder: Path = ENVIRONMENTS_DIR) -> Environment:
    path = environment_file(name, folder)
    return load_yaml_model(path, Environment, "environment", "file not found")


def write_release(name: str, release: Release, folder: Path = ENVIRONMENTS_DIR) -> Path:
    """Write ``release`` into the environment's file, keeping every comment and other setting."""
    path = environment_file(name, folder)
    yaml = YAML()
    yaml.preserve_quotes = True
    # Round-tripping writes None as an empty value; the files say null.
    yaml.representer.add_representer(
        type(None), lambda dumper, _: dumper.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    document: Any = yaml.load(path.read_text(encoding="utf-8"))
    block = document.get("release")
    values = release.model_dump()
    if isinstance(block, dict):
        for key, value in values.items():
            block[key] = value
    else:
        # What followed `release: null` on its line (a comment, the blank line after it) now
        # follows the block, not its first line.
        written = CommentedMap(values)
        trailing = document.ca.items.pop("release", None)
        if trailing is not None:
            written.ca.items[list(values)[-1]] = trailing
        document["release"] = written
    buffer = io.StringIO()
    yaml.dump(document, buffer)
    text = buffer.getvalue()
    parse_environment(text, path)  # never write a file that would not read back
    write_with(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return path


def parse_environment(text: str, where: Path) -> Environment:
    """An environment file's text, checked like a file on disk."""
    try:
        raw = pyyaml.safe_load(text)
    except pyyaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {exc}") from None
    return checked_mapping(
        raw, Environment.model_validate, str(where), "environment", "a mapping at the top level"
    )
