"""Kubernetes settings that cannot work are refused when the environment file is read, and the
error names the key."""

from __future__ import annotations

from typing import Any

import pytest
from k8s_workspace import ROOT, edited

from credit_risk.deploy.environments import environment_names, load_environment, parse_environment
from credit_risk.errors import ConfigError

ENVIRONMENTS = environment_names(ROOT / "deploy")


def bad_settings(environment: str) -> list[tuple[dict[str, Any], str]]:
    """Changes that break the environment's settings, with the key the error must name."""
    kube = load_environment(environment, ROOT / "deploy").kubernetes
    return [
        ({"kubernetes.max_replicas": kube.replicas - 1}, "max_replicas"),
        ({"kubernetes.min_available": kube.replicas + 1}, "min_available"),
        ({"kubernetes.namespace": "Credit_Risk"}, "kubernetes.namespace"),
        ({"kubernetes.namespace": "x" * 64}, "kubernetes.namespace"),
        ({"kubernetes.replicas": 0}, "kubernetes.replicas"),
        ({"kubernetes.target_cpu_percent": 0}, "kubernetes.target_cpu_percent"),
        ({"kubernetes.rollout_timeout_seconds": 1}, "kubernetes.rollout_timeout_seconds"),
        ({"kubernetes.resources.limits.memory": "2 GB"}, "kubernetes.resources.limits.memory"),
        ({"kubernetes.argocd.revision": ""}, "kubernetes.argocd.revision"),
        ({"kubernetes.prediction_log.size": "50 GB"}, "kubernetes.prediction_log.size"),
        ({"kubernetes.prediction_log.size": "500m"}, "kubernetes.prediction_log.size"),
        ({"kubernetes.prediction_log.size": 50}, "kubernetes.prediction_log.size"),
        (
            {"kubernetes.prediction_log.storage_class": "Fast SSD"},
            "kubernetes.prediction_log.storage_class",
        ),
        ({"kubernetes.prediction_log": None}, "kubernetes.prediction_log"),
    ]


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_bad_kubernetes_settings_are_config_errors_naming_the_key(environment: str) -> None:
    path = ROOT / "deploy" / f"{environment}.yaml"
    for changes, key in bad_settings(environment):
        with pytest.raises(ConfigError) as refused:
            parse_environment(edited(path, changes), path)
        message = str(refused.value)
        assert key in message and str(path) in message, (changes, message)


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_a_misspelled_kubernetes_key_is_named(environment: str) -> None:
    path = ROOT / "deploy" / f"{environment}.yaml"
    text = edited(path, {"kubernetes.max_replica": 3}, new=True)
    with pytest.raises(ConfigError, match=r"kubernetes\.max_replica: unknown key"):
        parse_environment(text, path)


def test_a_bad_log_volume_size_says_what_a_size_is() -> None:
    path = ROOT / "deploy" / f"{ENVIRONMENTS[0]}.yaml"
    text = edited(path, {"kubernetes.prediction_log.size": "50GB"})
    with pytest.raises(ConfigError, match=r"kubernetes\.prediction_log\.size: .*Mi, Gi or Ti"):
        parse_environment(text, path)


def test_the_committed_settings_read_back() -> None:
    for environment in ENVIRONMENTS:
        path = ROOT / "deploy" / f"{environment}.yaml"
        parse_environment(path.read_text(encoding="utf-8"), path)
