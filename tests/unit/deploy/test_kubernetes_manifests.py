"""The rendered Kubernetes manifests: valid for the API server, doing what the environment file
says, in sync with it, and the Argo CD Applications that follow them."""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from k8s_workspace import (
    ROOT,
    a_release,
    build,
    copy_settings,
    edit,
    git_repository,
    with_releases,
)

from credit_risk.config import load_params
from credit_risk.deploy.environments import (
    Environment,
    environment_names,
    load_environment,
    write_release,
)
from credit_risk.deploy.kubernetes import (
    BENTO_UID,
    HTTP_PORT,
    MARKER,
    PREDICTION_LOG_PATH,
    Layout,
    Names,
    check,
    image_of,
    main,
    observed_from,
    origin_url,
    render_all,
)
from credit_risk.errors import ConfigError
from credit_risk.monitoring.predictions import LOG_VARIABLE

# The oldest Kubernetes the manifests are written for, and the newest whose schemas ship.
KUBERNETES_VERSIONS = ("1.30", kubernetes_validate.latest_version())
ENVIRONMENTS = environment_names(ROOT / "deploy")


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Validation reads the schemas kubernetes-validate ships: any connection is a failure."""

    def refuse(*_: object) -> None:
        raise AssertionError("a test of the manifests tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture
def released(tmp_path: Path) -> Path:
    """A copy of the environment files with a release in each, rendered."""
    folder = with_releases(tmp_path)
    render_all(folder, tmp_path / "params.yaml")
    return folder


def names_for(folder: Path) -> Names:
    return Names.of(load_params(folder.parent / "params.yaml").serve)


def built(folder: Path, environment: str) -> dict[str, dict[str, Any]]:
    """The environment's objects as the cluster gets them, by kind."""
    objects = build(Layout(folder).overlay(environment))
    by_kind = {item["kind"]: item for item in objects}
    assert len(by_kind) == len(objects), "one object of each kind"
    return by_kind


def validate(item: dict[str, Any]) -> None:
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(item, version, strict=True)
        except kubernetes_validate.ValidationError as problem:
            where = ".".join(str(part) for part in problem.path)
            pytest.fail(
                f"{item['kind']} invalid for Kubernetes {version}: {where}: {problem.message}"
            )


def test_every_base_object_validates(released: Path) -> None:
    base = Layout(released).base
    kustomization = yaml.safe_load((base / "kustomization.yaml").read_text())
    for file in kustomization["resources"]:
        validate(yaml.safe_load((base / file).read_text()))


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_every_object_an_overlay_makes_validates(released: Path, environment: str) -> None:
    objects = built(released, environment)
    assert set(objects) == {
        "Namespace",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "PersistentVolumeClaim",
    }
    for item in objects.values():
        validate(item)


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_an_overlay_runs_what_its_environment_file_says(released: Path, environment: str) -> None:
    settings = load_environment(environment, released)
    release, kube = settings.release, settings.kubernetes
    assert release is not None
    objects = built(released, environment)
    for item in objects.values():
        if item["kind"] != "Namespace":
            assert item["metadata"]["namespace"] == kube.namespace
    assert objects["Namespace"]["metadata"]["name"] == kube.namespace

    deployment = objects["Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == release.bento  # no registry: the image is the bento tag
    assert container["resources"] == kube.resources.model_dump()
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == "/livez"
    assert container["ports"] == [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}]
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    assert deployment["spec"]["progressDeadlineSeconds"] == kube.rollout_timeout_seconds
    assert "replicas" not in deployment["spec"]  # the autoscaler owns the count

    autoscaler = objects["HorizontalPodAutoscaler"]["spec"]
    assert autoscaler["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert (autoscaler["minReplicas"], autoscaler["maxReplicas"]) == (
        kube.replicas,
        kube.max_replicas,
    )
    (metric,) = autoscaler["metrics"]
    assert metric["resource"]["target"]["averageUtilization"] == kube.target_cpu_percent
    budget = objects["PodDisruptionBudget"]["spec"]
    assert budget["minAvailable"] == kube.min_available

    pods = deployment["spec"]["template"]["metadata"]["labels"]
    for selector in (
        deployment["spec"]["selector"]["matchLabels"],
        objects["Service"]["spec"]["selector"],
        budget["selector"]["matchLabels"],
    ):
        assert selector.items() <= pods.items()
    assert objects["Service"]["spec"]["ports"][0]["targetPort"] == "http"


def test_the_pods_run_hardened(released: Path) -> None:
    deployment = built(released, ENVIRONMENTS[0])["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    context = container["securityContext"]
    assert context["runAsNonRoot"] and context["readOnlyRootFilesystem"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["runAsUser"] == BENTO_UID
    mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
    home = next(item["value"] for item in container["env"] if item["name"] == "BENTOML_HOME")
    assert any(home.startswith(mount) for mount in mounts), "BentoML's home must be writable"
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(HTTP_PORT)
    assert annotations["prometheus.io/path"] == "/metrics"


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_the_prediction_log_is_written_to_the_environments_volume(
    released: Path, environment: str
) -> None:
    volume = load_environment(environment, released).kubernetes.prediction_log
    objects = built(released, environment)
    claim = objects["PersistentVolumeClaim"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # every replica writes to it
    assert claim["spec"]["storageClassName"] == volume.storage_class
    assert claim["spec"]["resources"]["requests"]["storage"] == volume.size

    pod = objects["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {item["name"]: item.get("value") for item in container["env"]}
    folder = env[LOG_VARIABLE]
    (mount,) = [item for item in container["volumeMounts"] if item["mountPath"] == folder]
    assert not mount.get("readOnly") and not mount.get("subPath")
    (source,) = [item for item in pod["volumes"] if item["name"] == mount["name"]]
    assert source["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    # The mount is the one writable place besides the scratch folder, and the pod's group owns
    # it (where the storage lets fsGroup act) without a walk through every file at each start.
    assert container["securityContext"]["readOnlyRootFilesystem"]
    assert pod["securityContext"]["fsGroup"] == BENTO_UID
    assert pod["securityContext"]["fsGroupChangePolicy"] == "OnRootMismatch"


def test_with_the_log_disabled_no_volume_is_rendered(tmp_path: Path) -> None:
    """serve.prediction_log.enabled is the one switch: off, no claim, mount or variable."""
    folder = with_releases(tmp_path)
    params = tmp_path / "params.yaml"
    render_all(folder, params)
    edit(params, {"serve.prediction_log.enabled": False})
    assert any("pvc" in line for line in check(folder, params))
    render_all(folder, params)
    assert check(folder, params) == []
    for environment in ENVIRONMENTS:
        objects = built(folder, environment)
        assert "PersistentVolumeClaim" not in objects
        pod = objects["Deployment"]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert LOG_VARIABLE not in {item["name"] for item in container["env"]}
        assert PREDICTION_LOG_PATH not in {item["mountPath"] for item in container["volumeMounts"]}
        assert [volume["name"] for volume in pod["volumes"]] == ["scratch"]
        for item in objects.values():
            validate(item)


def test_the_pods_run_as_the_user_bentoml_images_have() -> None:
    # BentoML's own constant (internal): if a BentoML release changes its user, this fails.
    from bentoml._internal.container.generate import BENTO_UID_GID

    assert BENTO_UID == BENTO_UID_GID


def test_a_registry_prefixes_the_image(tmp_path: Path) -> None:
    folder = with_releases(tmp_path)
    environment = ENVIRONMENTS[-1]
    edit(folder / f"{environment}.yaml", {"kubernetes.image_registry": "ghcr.io/acme/"})
    render_all(folder, tmp_path / "params.yaml")
    release = load_environment(environment, folder).release
    assert release is not None
    deployment = built(folder, environment)["Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"ghcr.io/acme/{release.bento}"


@pytest.mark.parametrize("registry", ["https://ghcr.io/acme", "ghcr.io/acme:v1", "GHCR.io"])
def test_a_bad_registry_is_a_config_error_naming_the_key(registry: str) -> None:
    release = a_release(ROOT / "params.yaml", 1)
    with pytest.raises(ConfigError, match=r"kubernetes\.image_registry"):
        image_of(release, registry)


def test_pods_record_their_release_where_observe_reads_it(released: Path) -> None:
    """What the renderer writes on the pods is what the target reads back."""
    names = names_for(released)
    for environment in ENVIRONMENTS:
        release = load_environment(environment, released).release
        assert release is not None
        deployment = built(released, environment)["Deployment"]
        seen = observed_from(deployment, names, "here")
        assert (seen.bento, seen.model_tag) == (release.bento, release.model_tag)
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations[names.model_version] == str(release.model_version)


def test_without_a_release_an_overlay_runs_nothing(tmp_path: Path) -> None:
    folder = copy_settings(tmp_path)
    for environment in ENVIRONMENTS:
        edit(folder / f"{environment}.yaml", {"release": None})
    render_all(folder, tmp_path / "params.yaml")
    for environment in ENVIRONMENTS:
        overlay = Layout(folder).overlay(environment)
        assert [path.name for path in overlay.iterdir()] == ["kustomization.yaml"]
        assert build(overlay) == []
        assert "release: null" in (overlay / "kustomization.yaml").read_text()


def test_a_release_going_back_to_none_removes_its_patches(released: Path) -> None:
    params = released.parent / "params.yaml"
    environment = ENVIRONMENTS[0]
    edit(released / f"{environment}.yaml", {"release": None})
    render_all(released, params)
    assert build(Layout(released).overlay(environment)) == []
    assert check(released, params) == []


def test_every_rendered_file_says_it_is_generated_and_from_what(released: Path) -> None:
    for path in render_all(released, released.parent / "params.yaml"):
        first, second = path.read_text().splitlines()[:2]
        assert MARKER in first and "do not edit by hand" in second.lower(), path
        if "overlays" in path.parts:
            assert f"deploy/{path.parent.name}.yaml" in first, path


def test_the_committed_manifests_match_the_environment_files() -> None:
    stale = check(ROOT / "deploy", ROOT / "params.yaml")
    assert stale == [], "run `make manifests` and commit the result:\n" + "\n".join(stale)


def test_check_names_each_file_a_render_would_change(released: Path) -> None:
    params = released.parent / "params.yaml"
    assert check(released, params) == []
    environment = ENVIRONMENTS[-1]
    settings = load_environment(environment, released).kubernetes
    edit(released / f"{environment}.yaml", {"kubernetes.max_replicas": settings.max_replicas + 1})
    overlay = Layout(released).overlay(environment)
    (overlay / "deployment-patch.yaml").write_text("# edited by hand\n")
    leftover = Layout(released).overlay("gone")
    leftover.mkdir()
    (leftover / "kustomization.yaml").write_text(f"# Generated {MARKER} from deploy/gone.yaml\n")
    assert check(released, params) == [
        f"{overlay / 'deployment-patch.yaml'}: differs from a fresh render",
        f"{overlay / 'hpa-patch.yaml'}: differs from a fresh render",
        f"{leftover / 'kustomization.yaml'}: no longer rendered",
    ]
    render_all(released, params)
    assert check(released, params) == []
    assert not (leftover / "kustomization.yaml").exists()


def test_rendering_is_stable_and_writes_only_what_changed(released: Path) -> None:
    params = released.parent / "params.yaml"
    before = {
        path: (path.read_bytes(), path.stat().st_mtime_ns) for path in Layout(released).generated()
    }
    again = render_all(released, params)
    assert again == sorted(before)
    assert {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in again} == before


# ---- Argo CD ---------------------------------------------------------------------------------


def applications(folder: Path) -> dict[str, dict[str, Any]]:
    return {
        name: yaml.safe_load(Layout(folder).application(name).read_text())
        for name in environment_names(folder)
    }


def assert_application_shape(
    application: dict[str, Any], environment: Environment, root: Path
) -> None:
    assert application["apiVersion"] == "argoproj.io/v1alpha1"
    assert application["kind"] == "Application"
    assert application["metadata"]["namespace"] == "argocd"
    spec = application["spec"]
    assert set(spec) == {"project", "source", "destination", "syncPolicy"}
    assert (root / spec["source"]["path"] / "kustomization.yaml").is_file()
    assert spec["source"]["targetRevision"] == environment.kubernetes.argocd.revision
    assert spec["destination"]["namespace"] == environment.kubernetes.namespace
    assert spec["destination"]["server"] == "https://kubernetes.default.svc"
    assert spec["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}


def test_an_application_per_environment_follows_its_overlay(tmp_path: Path) -> None:
    folder = with_releases(tmp_path)
    git_repository(tmp_path, "git@github.com:acme/models.git")
    render_all(folder, tmp_path / "params.yaml")
    found = applications(folder)
    for name, application in found.items():
        assert_application_shape(application, load_environment(name, folder), tmp_path)
        assert application["spec"]["source"]["repoURL"] == "https://github.com/acme/models.git"
    assert len({app["metadata"]["name"] for app in found.values()}) == len(found)
    production = Layout(folder).application("production").read_text()
    assert "Production syncs automatically too" in production


def test_the_environment_file_names_the_repository_before_origin(tmp_path: Path) -> None:
    folder = copy_settings(tmp_path)
    git_repository(tmp_path, "https://github.com/acme/models.git")
    url = "https://git.example.org/team/models.git"
    environment = ENVIRONMENTS[0]
    edit(folder / f"{environment}.yaml", {"kubernetes.argocd.repo_url": url})
    render_all(folder, tmp_path / "params.yaml")
    assert applications(folder)[environment]["spec"]["source"]["repoURL"] == url


def test_no_repository_means_no_application_and_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = copy_settings(tmp_path)
    git_repository(tmp_path, None)
    with caplog.at_level(logging.WARNING):
        render_all(folder, tmp_path / "params.yaml")
    assert not (folder / "argocd").exists()
    for environment in ENVIRONMENTS:
        assert f"{Layout(folder).application(environment)} not written" in caplog.text
    assert check(folder, tmp_path / "params.yaml") == []


def test_an_origin_from_another_clone_does_not_make_the_files_stale(tmp_path: Path) -> None:
    """A clone's origin is not part of the environment file: check accepts the URL a
    committed Application holds, and a clone without Applications."""
    folder = copy_settings(tmp_path)
    git_repository(tmp_path, "https://github.com/acme/models.git")
    params = tmp_path / "params.yaml"
    render_all(folder, params)
    clone = tmp_path / "clone"
    clone.mkdir()
    clone_folder = copy_settings(clone)
    git_repository(clone, "https://github.com/someone-else/fork.git")
    assert check(folder, params) == []  # the same files, checked in a clone with another origin
    render_all(clone_folder, clone / "params.yaml")
    for path in Layout(clone_folder).generated():
        if path.parent.name == "argocd":
            path.unlink()
    assert check(clone_folder, clone / "params.yaml") == []


@pytest.mark.parametrize(
    ("origin", "expected"),
    [
        ("git@github.com:acme/models.git", "https://github.com/acme/models.git"),
        ("ssh://git@github.com/acme/models.git", "https://github.com/acme/models.git"),
        ("https://gitlab.com/acme/models.git", "https://gitlab.com/acme/models.git"),
        ("git@gitlab.com:acme/models.git", "git@gitlab.com:acme/models.git"),
        ("/srv/git/models.git", None),
    ],
)
def test_origin_as_argo_cd_can_reach_it(tmp_path: Path, origin: str, expected: str | None) -> None:
    git_repository(tmp_path, origin)
    url, why = origin_url(tmp_path)
    assert url == expected
    assert bool(why) == (expected is None)


# ---- settings that cannot be rendered --------------------------------------------------------


def test_a_service_name_kubernetes_cannot_use_is_a_config_error() -> None:
    serve = load_params(ROOT / "params.yaml").serve
    assert Names.of(serve.model_copy(update={"model_name": "scoring_model.v2"})).app == (
        "scoring-model-v2"
    )
    with pytest.raises(ConfigError, match=r"serve\.model_name"):
        Names.of(serve.model_copy(update={"model_name": "2fast"}))


def test_a_release_is_rendered_by_write_release_alone(tmp_path: Path) -> None:
    """The deploy commands write a release with write_release; a render then needs nothing else."""
    folder = copy_settings(tmp_path)
    params = tmp_path / "params.yaml"
    environment = ENVIRONMENTS[0]
    release = a_release(params, 7)
    write_release(environment, release, folder)
    render_all(folder, params)
    kustomization = yaml.safe_load(
        (Layout(folder).overlay(environment) / "kustomization.yaml").read_text()
    )
    assert kustomization["images"] == [
        {
            "name": names_for(folder).app,
            "newName": release.bento.partition(":")[0],
            "newTag": release.bento.partition(":")[2],
        }
    ]


def test_the_check_command_exits_1_naming_the_stale_files(
    released: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    arguments = ["--folder", str(released), "--params", str(released.parent / "params.yaml")]
    main(["check", *arguments])
    assert "match" in capsys.readouterr().out
    environment = ENVIRONMENTS[0]
    settings = load_environment(environment, released).kubernetes
    edit(released / f"{environment}.yaml", {"kubernetes.min_available": settings.min_available + 1})
    with pytest.raises(SystemExit) as stopped:
        main(["check", *arguments])
    assert stopped.value.code == 1
    assert str(Layout(released).overlay(environment) / "pdb-patch.yaml") in capsys.readouterr().err
    main(["render", *arguments])
    main(["check", *arguments])
