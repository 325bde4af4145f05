"""`kustomize build` for the rendered overlays, in Python: no kustomize binary runs here.

It does what kustomize does for the fields the overlays use: resources (files, and folders
holding a kustomization), strategic-merge patches, images and namespace. Any other field is an
error, so a render that starts using one fails the tests instead of being checked wrongly.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

FIELDS = {"apiVersion", "kind", "resources", "namespace", "images", "patches"}
CLUSTER_SCOPED = {"Namespace"}  # kinds the namespace field leaves alone
# Lists that a strategic-merge patch merges item by item, and the key that pairs the items
# (as the Kubernetes API declares them); every other list in a patch replaces the original.
MERGE_KEYS = {"containers": "name", "volumes": "name", "volumeMounts": "mountPath", "env": "name"}


def build(folder: Path) -> list[dict[str, Any]]:
    """The objects `kustomize build <folder>` prints."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text(encoding="utf-8"))
    unknown = set(kustomization) - FIELDS
    assert not unknown, f"{folder}: kustomization fields this stand-in does not know: {unknown}"
    assert kustomization["kind"] == "Kustomization"
    objects: list[dict[str, Any]] = []
    for entry in kustomization.get("resources") or []:
        path = folder / entry
        if path.is_dir():
            objects.extend(build(path))
        else:
            text = path.read_text(encoding="utf-8")
            objects.extend(document for document in yaml.safe_load_all(text) if document)
    for patch in kustomization.get("patches") or []:
        assert set(patch) == {"path"}, f"{folder}: only patches from files are supported"
        body = yaml.safe_load((folder / patch["path"]).read_text(encoding="utf-8"))
        matches = [item for item in objects if _same_object(item, body)]
        assert len(matches) == 1, f"{folder}/{patch['path']} patches {len(matches)} objects"
        _merge(matches[0], body)
    for image in kustomization.get("images") or []:
        assert set(image) <= {"name", "newName", "newTag"}, image
        for item in objects:
            for container in _containers(item):
                if _image_name(container["image"]) == image["name"]:
                    name = image.get("newName", image["name"])
                    tag = image.get("newTag")
                    container["image"] = f"{name}:{tag}" if tag else name
    namespace = kustomization.get("namespace")
    if namespace:
        for item in objects:
            if item["kind"] not in CLUSTER_SCOPED:
                item["metadata"]["namespace"] = namespace
    return objects


def _same_object(item: dict[str, Any], patch: dict[str, Any]) -> bool:
    group = item["apiVersion"].rpartition("/")[0]
    return (
        item["kind"] == patch["kind"]
        and item["metadata"]["name"] == patch["metadata"]["name"]
        and group == patch["apiVersion"].rpartition("/")[0]
    )


def _merge(into: dict[str, Any], patch: dict[str, Any]) -> None:
    """A strategic merge: maps merge key by key, keyed lists item by item."""
    for key, value in patch.items():
        assert not key.startswith("$"), f"patch directive {key} is not supported"
        present = into.get(key)
        if isinstance(value, dict) and isinstance(present, dict):
            _merge(present, value)
        elif isinstance(value, list) and isinstance(present, list) and key in MERGE_KEYS:
            pair = MERGE_KEYS[key]
            for item in value:
                same = [old for old in present if old.get(pair) == item[pair]]
                if same:
                    _merge(same[0], item)
                else:
                    present.append(copy.deepcopy(item))
        else:
            into[key] = copy.deepcopy(value)


def _containers(item: dict[str, Any]) -> list[dict[str, Any]]:
    spec = item.get("spec", {}).get("template", {}).get("spec", {})
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def _image_name(image: str) -> str:
    """An image reference without its tag or digest."""
    name = image.partition("@")[0]
    path, _, last = name.rpartition("/")
    return f"{path}/{last.partition(':')[0]}" if path else last.partition(":")[0]
