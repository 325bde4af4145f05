"""The kubernetes target: manifests rendered from deploy/<env>.yaml, applied with kubectl.

    python -m credit_risk.deploy.kubernetes render   # write the manifests (make manifests)
    python -m credit_risk.deploy.kubernetes check    # exit 1 naming files a render would change

What gets written, all generated (each file says so in its first line):

- ``deploy/kubernetes/base/``: the Deployment, Service, autoscaler and disruption budget that
  every environment shares, named after the service (``serve.model_name`` in params.yaml), and
  while ``serve.prediction_log.enabled`` is true the prediction log's volume: a claim that
  every pod mounts at PREDICTION_LOG_PATH, which CREDIT_RISK_PREDICTION_LOG names;
- ``deploy/kubernetes/overlays/<env>/``: what the environment file sets: the namespace, the
  exact image of its release, the replicas, CPU target, budget and resources, and the log
  volume's size and storage class. An environment whose ``release`` is null has nothing to
  run yet: its overlay lists no resources (an image without an exact tag would be a moving
  reference), and Argo CD syncs nothing;
- ``deploy/argocd/<env>.yaml``: an Argo CD Application per environment that follows the
  overlay in git. Its repository is ``kubernetes.argocd.repo_url`` or, when that is null, this
  clone's ``origin`` remote; with neither, the file is not written and the render says so.

``KubernetesTarget`` is the push-based path for teams without Argo CD: it renders the
environment's overlay with the release, applies it with kubectl and waits for the rollout; a
rollout that fails is undone (``maxUnavailable: 0`` keeps the previous pods serving meanwhile)
and the previous overlay files are put back.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from credit_risk.config import DEFAULT_PARAMS, Serve, load_params
from credit_risk.deploy.environments import (
    ENVIRONMENTS_DIR,
    PROMOTION_ORDER,
    Environment,
    Release,
    environment_names,
    load_environment,
)
from credit_risk.deploy.targets import DeployError, Observed
from credit_risk.errors import ConfigError
from credit_risk.files import write_with
from credit_risk.monitoring.predictions import LOG_VARIABLE
from credit_risk.stage import run

log = logging.getLogger("credit_risk.deploy.kubernetes")

KUBECTL = "kubectl"  # found on PATH
HTTP_PORT = 3000  # where the bento's server listens in its container (/readyz, /livez, /metrics)
SERVICE_PORT = 80  # what other workloads in the cluster call
# The user `bentoml containerize` images run as (BentoML's BENTO_UID_GID). Named by number so
# that runAsNonRoot can be verified: the image's USER is a name.
BENTO_UID = 1034
SCRATCH = "/tmp"  # writable scratch space, an emptyDir: the root filesystem is read-only
BENTOML_HOME = f"{SCRATCH}/bentoml"  # BentoML creates its folders (metrics files) here
# Where the prediction log's volume is mounted, writable; CREDIT_RISK_PREDICTION_LOG names it.
PREDICTION_LOG_PATH = "/var/lib/prediction-log"
PRE_STOP_SECONDS = 5  # a stopping pod keeps serving while the endpoints stop sending it traffic
ARGOCD_NAMESPACE = "argocd"
IN_CLUSTER = "https://kubernetes.default.svc"  # Argo CD's name for the cluster it runs in
# kubectl calls that only talk to the API server; a rollout or a delete waits longer.
QUICK_SECONDS = 60
GIT_SECONDS = 10
MARKER = "by `make manifests`"  # in the first line of every file a render writes
KUSTOMIZATION = "kustomization.yaml"
NAMESPACE_FILE = "namespace.yaml"  # in an overlay that runs a release, and only then
NAME = "app.kubernetes.io/name"  # the label that selects the service's pods


# ---- names ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Names:
    """The names the manifests use, all derived from the service's name (serve.model_name)."""

    app: str

    @classmethod
    def of(cls, serve: Serve) -> Names:
        app = re.sub(r"[._]+", "-", serve.model_name).strip("-")
        # 40 characters leave room for "-<environment>" in the Argo CD Application's name.
        if not re.fullmatch(r"[a-z]([-a-z0-9]{0,38}[a-z0-9])?", app):
            raise ConfigError(
                f"serve.model_name: {serve.model_name!r} cannot name Kubernetes objects "
                "(start with a letter; at most 40 letters, digits, '-', '_' or '.')"
            )
        return cls(app)

    def key(self, what: str) -> str:
        """A label or annotation key of this project: "<app>/<what>"."""
        return f"{self.app}/{what}"

    @property
    def bento(self) -> str:
        return self.key("bento")

    @property
    def model_tag(self) -> str:
        return self.key("model-tag")

    @property
    def model_version(self) -> str:
        return self.key("model-version")

    @property
    def environment(self) -> str:
        return self.key("environment")

    @property
    def prediction_log(self) -> str:
        """The prediction log's PersistentVolumeClaim (and the pod's volume)."""
        return f"{self.app}-prediction-log"


def image_of(release: Release, registry: str | None) -> tuple[str, str]:
    """The release's container image as (name, tag): `bentoml containerize` names it by the
    bento tag; a registry, when set, prefixes the name."""
    name, _, version = release.bento.partition(":")
    if registry is None:
        return name, version
    prefix = registry.rstrip("/")
    if not re.fullmatch(
        r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9]([a-z0-9._-]*[a-z0-9])?)*", prefix
    ):
        raise ConfigError(
            f"kubernetes.image_registry: {registry!r} is not an image name prefix "
            "(e.g. ghcr.io/<owner>, without a scheme or a tag)"
        )
    return f"{prefix}/{name}", version


def bento_of(image: str) -> str | None:
    """The bento tag an image name carries: its last path part, "<name>:<version>"."""
    last = image.rpartition("/")[2]
    return last if re.fullmatch(r"[a-z0-9][a-z0-9_.-]*:[a-z0-9][a-z0-9_.-]*", last) else None


# ---- where the files go --------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """The rendered files under the environments' folder (deploy/)."""

    folder: Path = ENVIRONMENTS_DIR

    @property
    def base(self) -> Path:
        return self.folder / "kubernetes" / "base"

    def overlay(self, environment: str) -> Path:
        return self.folder / "kubernetes" / "overlays" / environment

    def application(self, environment: str) -> Path:
        return self.folder / "argocd" / f"{environment}.yaml"

    def generated(self) -> list[Path]:
        """The files on disk that a render wrote (their first line says so)."""
        found = [*self.folder.glob("kubernetes/**/*.yaml"), *self.folder.glob("argocd/*.yaml")]
        return sorted(path for path in found if path.is_file() and _is_generated(path))


# As the repository lays them out: what headers and Argo CD's source path name.
REPOSITORY = Layout()


def _is_generated(path: Path) -> bool:
    with path.open(encoding="utf-8") as handle:
        return MARKER in handle.readline()


class _Dumper(yaml.SafeDumper):
    """Writes a mapping used twice (labels, selectors) out each time, not as a YAML alias."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _document(header: Sequence[str], body: Mapping[str, Any]) -> str:
    """YAML with comment lines on top; keys sorted (Kubernetes does not care for their order,
    and sorted keys put apiVersion, kind, metadata, spec in the usual order)."""
    comments = "".join(f"# {line}\n" if line else "#\n" for line in header)
    text = yaml.dump(
        dict(body), Dumper=_Dumper, sort_keys=True, default_flow_style=False, width=1000
    )
    return comments + text


def _generated_from(*sources: str) -> list[str]:
    """The header every rendered file starts with (its first line carries MARKER)."""
    return [
        f"Generated {MARKER} from {' and '.join(sources)}.",
        "Do not edit by hand: edit the source, then run `make manifests`.",
    ]


# ---- the base: what every environment shares ------------------------------------------------


def _http_probe(path: str, period: int, timeout: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": failures,
    }


def base_files(names: Names, serve: Serve) -> dict[str, str]:
    """The base's files by name: the objects every overlay starts from."""
    app = names.app
    labels = {NAME: app, "app.kubernetes.io/component": "scoring-service"}
    selector = {NAME: app}
    logged = serve.prediction_log.enabled
    header = [
        *_generated_from(str(DEFAULT_PARAMS), "src/credit_risk/deploy/kubernetes.py"),
        "The base every overlay (deploy/kubernetes/overlays/<env>) starts from; the overlay sets",
        "the namespace, the exact image, replicas, CPU target, disruption budget and resources.",
        *(["It sets the prediction log volume's size and storage class too."] if logged else []),
    ]
    env = [
        {"name": "BENTOML_HOME", "value": BENTOML_HOME},
        {"name": "BENTOML_DO_NOT_TRACK", "value": "true"},
    ]
    mounts = [{"name": "scratch", "mountPath": SCRATCH}]
    volumes: list[dict[str, Any]] = [{"name": "scratch", "emptyDir": {"sizeLimit": "256Mi"}}]
    pod_security = {
        "runAsNonRoot": True,
        "runAsUser": BENTO_UID,
        "runAsGroup": BENTO_UID,
        "fsGroup": BENTO_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if logged:
        # Every pod appends to files of its own in the shared folder (the root filesystem stays
        # read-only; the mount is writable).
        env.append({"name": LOG_VARIABLE, "value": PREDICTION_LOG_PATH})
        mounts.append({"name": "prediction-log", "mountPath": PREDICTION_LOG_PATH})
        claim = {"claimName": names.prediction_log}
        volumes.append({"name": "prediction-log", "persistentVolumeClaim": claim})
        # fsGroup makes the volume the service's group, where the storage supports it; by
        # default the kubelet would walk every logged file at each pod start to do so.
        pod_security["fsGroupChangePolicy"] = "OnRootMismatch"
    container = {
        "name": app,
        "image": app,  # a placeholder that each overlay's `images:` replaces with an exact tag
        "imagePullPolicy": "IfNotPresent",  # a bento version is content-addressed: never moves
        "ports": [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}],
        "env": env,
        # Started: the server answers /livez (within 90 s); the other probes wait for it.
        # Ready: the model is loaded and warmed up (/readyz 200, a few seconds later), checked
        # every 5 s; only ready pods get traffic. Alive: /livez, or the container restarts.
        "startupProbe": _http_probe("/livez", period=3, timeout=2, failures=30),
        "readinessProbe": _http_probe("/readyz", period=5, timeout=3, failures=3),
        "livenessProbe": _http_probe("/livez", period=10, timeout=5, failures=3),
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(PRE_STOP_SECONDS)]}}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": mounts,
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": app, "labels": labels},
        "spec": {
            # No `replicas`: the autoscaler owns it (an applied count would fight it).
            "selector": {"matchLabels": selector},
            "revisionHistoryLimit": 5,  # what `kubectl rollout undo` can go back to
            "strategy": {
                "type": "RollingUpdate",
                # One new pod at a time, and none of the old ones goes before it is ready: a
                # release that never gets ready leaves the previous one serving in full.
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(HTTP_PORT),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": {
                    "automountServiceAccountToken": False,  # the service never calls the API
                    "enableServiceLinks": False,
                    # After preStop, in-flight requests get the service's own timeout to finish.
                    "terminationGracePeriodSeconds": PRE_STOP_SECONDS + serve.timeout_seconds + 5,
                    "securityContext": pod_security,
                    "topologySpreadConstraints": [
                        {
                            "maxSkew": 1,
                            "topologyKey": "kubernetes.io/hostname",
                            "whenUnsatisfiable": "ScheduleAnyway",
                            "labelSelector": {"matchLabels": selector},
                        }
                    ],
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": app, "labels": labels},
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [
                {"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}
            ],
        },
    }
    autoscaler = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": app, "labels": labels},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": app},
            "minReplicas": 1,  # each overlay sets these from its environment file
            "maxReplicas": 1,
            "metrics": [_cpu_metric(80)],
        },
    }
    budget = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": app, "labels": labels},
        "spec": {
            "minAvailable": 1,  # each overlay sets it from its environment file
            "selector": {"matchLabels": selector},
            # A pod that is not ready serves nobody: evicting it never breaks the budget.
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }
    objects = {
        "deployment.yaml": deployment,
        "service.yaml": service,
        "hpa.yaml": autoscaler,
        "pdb.yaml": budget,
    }
    if logged:
        objects["pvc.yaml"] = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {
                "name": names.prediction_log,
                "labels": labels,
                # Outcomes still arrive for scores a year old: should the claim leave git,
                # Argo CD keeps it rather than prune it.
                "annotations": {"argocd.argoproj.io/sync-options": "Prune=false"},
            },
            "spec": {
                "accessModes": ["ReadWriteMany"],  # every replica writes to the one folder
                # Each overlay sets the size and the storage class from its environment file.
                "resources": {"requests": {"storage": "1Gi"}},
            },
        }
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": list(objects),
    }
    files = {name: _document(header, body) for name, body in objects.items()}
    return {KUSTOMIZATION: _document(header, kustomization), **files}


def _cpu_metric(percent: int) -> dict[str, Any]:
    target = {"type": "Utilization", "averageUtilization": percent}
    return {"type": "Resource", "resource": {"name": "cpu", "target": target}}


# ---- an overlay: what one environment file sets ---------------------------------------------


def overlay_files(
    name: str, environment: Environment, names: Names, serve: Serve
) -> dict[str, str]:
    """The overlay's files by name, for environment ``name``."""
    source = (REPOSITORY.folder / f"{name}.yaml").as_posix()
    header = _generated_from(source)
    release = environment.release
    if release is None:
        empty = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization"}
        note = [
            f"No release yet ({source} says `release: null`), so nothing to run: an image",
            "without an exact tag would be a moving reference. A deploy writes the release",
            "there and renders this overlay with it.",
        ]
        return {KUSTOMIZATION: _document([*header, *note], {**empty, "resources": []})}
    settings = environment.kubernetes
    try:
        image, tag = image_of(release, settings.image_registry)
    except ConfigError as problem:
        raise ConfigError(f"{source}: {problem}") from None
    if len(tag) > 63:
        raise ConfigError(f"{source}: release.bento: version {tag!r} is longer than 63 characters")
    app = names.app
    patches: dict[str, dict[str, Any]] = {
        "deployment-patch.yaml": {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": app},
            "spec": {
                # The cluster marks a rollout failed when kubectl stops waiting for it.
                "progressDeadlineSeconds": settings.rollout_timeout_seconds,
                "template": {
                    # The release is recorded on the pods' template, which `rollout undo`
                    # restores along with the image: what it says is what the pods run.
                    "metadata": {
                        "labels": {
                            "app.kubernetes.io/version": tag,
                            names.environment: name,
                            names.model_version: str(release.model_version),
                        },
                        "annotations": {
                            names.bento: release.bento,
                            names.model_tag: release.model_tag,
                            names.model_version: str(release.model_version),
                        },
                    },
                    "spec": {
                        "containers": [{"name": app, "resources": settings.resources.model_dump()}]
                    },
                },
            },
        },
        "hpa-patch.yaml": {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": app},
            "spec": {
                "minReplicas": settings.replicas,
                "maxReplicas": settings.max_replicas,
                "metrics": [_cpu_metric(settings.target_cpu_percent)],
            },
        },
        "pdb-patch.yaml": {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": app},
            "spec": {"minAvailable": settings.min_available},
        },
    }
    if serve.prediction_log.enabled:  # the base has the claim only then
        volume = settings.prediction_log
        patches["pvc-patch.yaml"] = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": names.prediction_log},
            "spec": {
                "storageClassName": volume.storage_class,
                "resources": {"requests": {"storage": volume.size}},
            },
        }
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": settings.namespace,
            # The pods meet the "restricted" Pod Security Standard; the namespace enforces it.
            "labels": {names.environment: name, "pod-security.kubernetes.io/enforce": "restricted"},
        },
    }
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": settings.namespace,
        "resources": [NAMESPACE_FILE, "../../base"],
        "images": [{"name": app, "newName": image, "newTag": tag}],
        "patches": [{"path": patch} for patch in patches],
    }
    about = [f"Runs {release.describe()} in namespace {settings.namespace}."]
    files = {KUSTOMIZATION: _document([*header, *about], kustomization)}
    files[NAMESPACE_FILE] = _document(header, namespace)
    files.update({file: _document(header, body) for file, body in patches.items()})
    return files


# ---- Argo CD -------------------------------------------------------------------------------

PRODUCTION_SYNC = [
    "Production syncs automatically too: the reviewed step is the pull request that changes",
    "deploy/production.yaml and this overlay; a manual sync in Argo CD would add an approval",
    "that git does not record, and a revert would not roll back until someone clicked.",
]


def application_text(name: str, environment: Environment, names: Names, repo_url: str) -> str:
    """The Argo CD Application that keeps environment ``name`` in step with its overlay."""
    settings = environment.kubernetes
    source = (REPOSITORY.folder / f"{name}.yaml").as_posix()
    header = [
        *_generated_from(source),
        f"For teams that run Argo CD: it applies {REPOSITORY.overlay(name).as_posix()} as git",
        "has it.",
        *(PRODUCTION_SYNC if name == PROMOTION_ORDER[-1] else []),
    ]
    application = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {
            "name": f"{names.app}-{name}",
            "namespace": ARGOCD_NAMESPACE,
            "labels": {NAME: names.app, names.environment: name},
        },
        "spec": {
            "project": "default",
            "source": {
                "repoURL": repo_url,
                "targetRevision": settings.argocd.revision,
                "path": REPOSITORY.overlay(name).as_posix(),
            },
            "destination": {"server": IN_CLUSTER, "namespace": settings.namespace},
            "syncPolicy": {
                # Prune removes what git no longer lists; self-heal undoes edits made by hand.
                "automated": {"prune": True, "selfHeal": True},
                "syncOptions": ["PruneLast=true"],
            },
        },
    }
    return _document(header, application)


def origin_url(where: Path) -> tuple[str | None, str]:
    """The repository's `origin` remote as Argo CD can reach it (GitHub ssh made https), or
    None and the reason."""
    try:
        done = subprocess.run(
            ["git", "-C", str(where), "remote", "get-url", "origin"],
            capture_output=True, text=True, timeout=GIT_SECONDS, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as problem:
        return None, f"git could not be asked for the origin remote ({problem})"
    url = done.stdout.strip()
    if done.returncode != 0 or not url:
        return None, "this repository has no origin remote"
    github = re.fullmatch(r"(?:ssh://)?git@github\.com[:/](.+)", url)
    if github:
        return f"https://github.com/{github.group(1)}", ""
    if re.match(r"(https?|ssh)://|[\w.-]+@[\w.-]+:", url):
        return url, ""
    return None, f"origin is {url!r}, which Argo CD cannot reach"


def recorded_url(path: Path) -> str | None:
    """The repoURL an Application file already holds (None when absent or unreadable)."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        url = document["spec"]["source"]["repoURL"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None
    return url if isinstance(url, str) and url else None


# ---- rendering everything ------------------------------------------------------------------


@dataclass(frozen=True)
class Rendering:
    """What a render writes, and what it had to leave out."""

    files: dict[Path, str]
    warnings: list[str]


# Decides an Argo CD Application's repository: (folder, environment name, its settings) -> the
# URL, or None and why the Application is left out (no reason: left out without a warning).
RepoUrl = Callable[[Path, str, Environment], tuple[str | None, str]]


def rendering(folder: Path, params: Path, repo_url: RepoUrl) -> Rendering:
    """Every file for the environment files in ``folder``; ``repo_url`` decides each Argo CD
    Application's repository (None and a reason: that file is left out)."""
    serve = load_params(params).serve
    names = Names.of(serve)
    layout = Layout(folder)
    files = {layout.base / file: text for file, text in base_files(names, serve).items()}
    warnings = []
    for name in environment_names(folder):
        environment = load_environment(name, folder)
        overlay = overlay_files(name, environment, names, serve)
        files.update({layout.overlay(name) / file: text for file, text in overlay.items()})
        url, why = repo_url(folder, name, environment)
        if url is not None:
            files[layout.application(name)] = application_text(name, environment, names, url)
        elif why:
            warnings.append(f"{layout.application(name)} not written: {why}")
    return Rendering(files, warnings)


def _repo_url_to_write(folder: Path, name: str, environment: Environment) -> tuple[str | None, str]:
    """The file's value; else this clone's origin; else the one the committed file holds."""
    if environment.kubernetes.argocd.repo_url is not None:
        return environment.kubernetes.argocd.repo_url, ""
    url, why = origin_url(folder)
    url = url or recorded_url(Layout(folder).application(name))
    reason = f"kubernetes.argocd.repo_url is null in {folder / name}.yaml and {why}"
    return url, "" if url else reason


def _repo_url_to_check(folder: Path, name: str, environment: Environment) -> tuple[str | None, str]:
    """The file's value; else the one the committed Application holds: a URL taken from a
    clone's origin belongs to that clone, and a clone without the file is not out of date."""
    recorded = recorded_url(Layout(folder).application(name))
    return environment.kubernetes.argocd.repo_url or recorded, ""


def _write(files: Mapping[Path, str], remove: Sequence[Path]) -> list[Path]:
    """Write the files that differ (atomically) and remove the generated ones not listed."""
    for path, text in sorted(files.items()):
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            _write_bytes(path, text.encode("utf-8"))
    for path in remove:
        if path not in files:
            path.unlink()
            log.info("removed %s (no longer rendered)", path)
    return sorted(files)


def render_all(folder: Path = ENVIRONMENTS_DIR, params: Path = DEFAULT_PARAMS) -> list[Path]:
    """Render the base, every environment's overlay and Argo CD Application; return the files
    rendered (each written only if it changed). What had to be left out is logged."""
    done = rendering(folder, params, _repo_url_to_write)
    for warning in done.warnings:
        log.warning(warning)
    return _write(done.files, Layout(folder).generated())


def check(folder: Path = ENVIRONMENTS_DIR, params: Path = DEFAULT_PARAMS) -> list[str]:
    """The rendered files that differ from a fresh render, one line each (none: in sync)."""
    done = rendering(folder, params, _repo_url_to_check)
    stale = []
    for path, text in sorted(done.files.items()):
        if not path.is_file():
            stale.append(f"{path}: missing")
        elif path.read_text(encoding="utf-8") != text:
            stale.append(f"{path}: differs from a fresh render")
    for path in Layout(folder).generated():
        if path not in done.files:
            stale.append(f"{path}: no longer rendered")
    return stale


# ---- the target ----------------------------------------------------------------------------


def kubectl_command(kubectl: str, namespace: str | None, *args: str) -> list[str]:
    """Every kubectl call, built here: `kubectl [-n <namespace>] <args>`."""
    return [kubectl, *(["-n", namespace] if namespace else []), *args]


def _reason(done: subprocess.CompletedProcess[str]) -> str:
    """kubectl's own words for a failure: its last lines of error output, on one line."""
    text = (done.stderr or done.stdout or "").strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return "; ".join(lines[-3:])[-600:] or f"exit code {done.returncode}"


class KubernetesTarget:
    """Environment ``name`` on the cluster kubectl is configured for (its current context)."""

    def __init__(
        self,
        name: str,
        environment: Environment,
        folder: Path = ENVIRONMENTS_DIR,
        params: Path = DEFAULT_PARAMS,
        kubectl: str = KUBECTL,
    ) -> None:
        self.name, self.environment, self.kubectl = name, environment, kubectl
        self.layout = Layout(folder)
        self.serve = load_params(params).serve
        self.names = Names.of(self.serve)
        self.settings = environment.kubernetes
        self.where = f"namespace {self.settings.namespace}"

    @property
    def overlay(self) -> Path:
        return self.layout.overlay(self.name)

    def command(self, *args: str, namespaced: bool = True) -> list[str]:
        return kubectl_command(self.kubectl, self.settings.namespace if namespaced else None, *args)

    def _run(self, command: list[str], timeout: int) -> subprocess.CompletedProcess[str]:
        """Run kubectl; a missing binary or a call that hangs is a DeployError."""
        try:
            return subprocess.run(
                command, capture_output=True, text=True, timeout=timeout, check=False
            )
        except FileNotFoundError:
            raise DeployError(
                f"{self.kubectl} not found on PATH: the kubernetes target drives the cluster "
                "with kubectl (install it and point it at the cluster, e.g. KUBECONFIG)"
            ) from None
        except subprocess.TimeoutExpired:
            raise DeployError(f"`{' '.join(command)}` gave no answer within {timeout} s") from None

    def _must(self, command: list[str], timeout: int) -> subprocess.CompletedProcess[str]:
        done = self._run(command, timeout)
        if done.returncode != 0:
            raise DeployError(f"`{' '.join(command)}` failed: {_reason(done)}")
        return done

    def deploy(self, release: Release) -> Observed:
        """Render the overlay with ``release``, apply it and wait for the rollout; a rollout
        that fails is undone, the previous overlay files come back and a DeployError says why."""
        environment = self.environment.model_copy(update={"release": release})
        files = overlay_files(self.name, environment, self.names, self.serve)
        saved = _snapshot(self.overlay)
        _write({self.overlay / file: text for file, text in files.items()}, list(saved))
        seconds = self.settings.rollout_timeout_seconds
        try:
            self._must(
                self.command("apply", "-k", str(self.overlay), namespaced=False), QUICK_SECONDS
            )
        except DeployError as problem:
            _restore(self.overlay, saved)
            raise DeployError(f"{self.name}: {release.bento} not applied: {problem}") from None
        status = self.command(
            "rollout", "status", f"deployment/{self.names.app}", f"--timeout={seconds}s"
        )
        try:
            self._must(status, seconds + QUICK_SECONDS)
        except DeployError as problem:
            undone = self._undo()
            _restore(self.overlay, saved)
            raise DeployError(
                f"{self.name}: {release.bento} did not roll out in {self.where}: {problem}; "
                f"{undone}"
            ) from None
        return self.observe()

    def _undo(self) -> str:
        """Roll the Deployment back to its previous template; say how that went."""
        try:
            self._must(
                self.command("rollout", "undo", f"deployment/{self.names.app}"), QUICK_SECONDS
            )
        except DeployError as problem:
            return f"the undo failed too: {problem}"
        return "rolled back with `kubectl rollout undo`; the previous pods kept serving"

    def observe(self) -> Observed:
        """The Deployment as the cluster reports it; an unreachable cluster, a missing
        Deployment or a missing kubectl is reported as not running, with the reason."""
        command = self.command("get", "deployment", self.names.app, "-o", "json")
        try:
            done = self._run(command, QUICK_SECONDS)
        except DeployError as problem:
            return self._down(str(problem))
        if done.returncode != 0:
            return self._down(_reason(done))
        try:
            deployment = json.loads(done.stdout)
        except json.JSONDecodeError:
            return self._down(f"`{' '.join(command)}` answered something that is not JSON")
        return observed_from(deployment, self.names, self.where)

    def _down(self, reason: str) -> Observed:
        return Observed(False, False, None, None, None, self.where, reason)

    def stop(self) -> None:
        """Delete what the overlay describes (the namespace with it); nothing there is fine."""
        if not (self.overlay / NAMESPACE_FILE).is_file():
            log.info("%s: the overlay describes nothing (no release), nothing to delete", self.name)
            return
        seconds = self.settings.rollout_timeout_seconds
        command = self.command(
            "delete", "-k", str(self.overlay), "--ignore-not-found", f"--timeout={seconds}s",
            namespaced=False,
        )  # fmt: skip
        self._must(command, seconds + QUICK_SECONDS)


def _write_bytes(path: Path, content: bytes) -> None:
    write_with(path, lambda tmp: tmp.write_bytes(content))


def _snapshot(folder: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in sorted(folder.glob("*")) if path.is_file()}


def _restore(folder: Path, saved: Mapping[Path, bytes]) -> None:
    """Put the folder's files back as they were (files added since are removed)."""
    for path in sorted(folder.glob("*")):
        if path.is_file() and path not in saved:
            path.unlink()
    for path, content in saved.items():
        _write_bytes(path, content)


def observed_from(deployment: Mapping[str, Any], names: Names, where: str) -> Observed:
    """What a Deployment (`kubectl get deployment -o json`) says runs."""
    spec = deployment.get("spec", {})
    status = deployment.get("status", {})
    template = spec.get("template", {})
    annotations = template.get("metadata", {}).get("annotations", {}) or {}
    containers = template.get("spec", {}).get("containers", [])
    image = next((c.get("image", "") for c in containers if c.get("name") == names.app), "")
    bento = bento_of(image) or annotations.get(names.bento)
    wanted = int(spec.get("replicas", status.get("replicas", 0)) or 0)
    ready = int(status.get("readyReplicas", 0) or 0)
    updated = int(status.get("updatedReplicas", 0) or 0)
    since = None
    for condition in status.get("conditions", []) or []:
        if (
            condition.get("type") == "Progressing"
            and condition.get("reason") == "NewReplicaSetAvailable"
        ):
            since = _timestamp(condition.get("lastUpdateTime"))
    detail = f"{ready}/{wanted} replicas ready, image {image or '?'}"
    if updated < wanted:
        detail += f"; rollout in progress ({updated}/{wanted} updated)"
    return Observed(
        running=True,
        ready=ready > 0,
        bento=bento,
        model_tag=annotations.get(names.model_tag),
        since=since,
        where=where,
        detail=detail,
    )


def _timestamp(text: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text))
    except ValueError:
        return None


# ---- command line --------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m credit_risk.deploy.kubernetes",
        description="Render the Kubernetes manifests and Argo CD applications from deploy/*.yaml.",
    )
    parser.add_argument("command", choices=["render", "check"])
    parser.add_argument(
        "--folder", type=Path, default=ENVIRONMENTS_DIR, help="the environment files"
    )
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS)
    args = parser.parse_args(argv)
    if args.command == "render":
        written = render_all(args.folder, args.params)
        print(f"rendered {len(written)} files under {args.folder}")
        return
    stale = check(args.folder, args.params)
    if stale:
        print("the rendered manifests are out of date (run `make manifests`):", file=sys.stderr)
        for line in stale:
            print(f"  {line}", file=sys.stderr)
        sys.exit(1)
    print(f"the rendered manifests under {args.folder} match deploy/*.yaml")


if __name__ == "__main__":
    run("manifests", main)
