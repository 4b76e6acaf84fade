"""Offline renderer for the kustomizations in this folder, for machines without kubectl or kustomize.

Deploy with ``kubectl apply -k deploy/k8s/overlays/<env>``; this module exists so that tests (and anyone
without kubectl) can see the same output. It supports exactly the kustomization features used here and
raises :class:`UnsupportedKustomization` on anything else, rather than rendering something kustomize would not:

- ``resources``: YAML files (several documents each) and directories holding a ``kustomization.yaml``;
- ``namespace``: set on every namespaced resource;
- ``labels``: ``pairs`` added to ``metadata.labels`` only (``includeSelectors``/``includeTemplates`` false);
- ``images``: ``name`` with ``newTag`` and/or ``newName``, applied to pod-template containers;
- ``patches``: JSON 6902 operations (``add``, ``replace``, ``remove``), inline (``patch``) or from a file
  (``path``), selected by ``target`` ``kind`` and optional ``name``; a target matching nothing is an error.

``tests/unit/test_k8s.py`` compares this output with ``kubectl kustomize`` whenever kubectl is installed.

    .venv/bin/python deploy/k8s/render.py deploy/k8s/overlays/prod
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import yaml

KUSTOMIZATION_KEYS = {"apiVersion", "kind", "resources", "namespace", "labels", "images", "patches"}
CLUSTER_SCOPED_KINDS = {"Namespace"}
POD_CONTAINER_LISTS = ("initContainers", "containers")


class UnsupportedKustomization(ValueError):
    """The kustomization uses a feature (or a form of one) this renderer does not implement."""


def build(directory: Path | str) -> list[dict]:
    """Render the kustomization in ``directory`` to a list of resources (documents in input order)."""
    directory = Path(directory)
    kustomization = _load_kustomization(directory)
    resources: list[dict] = []
    for entry in kustomization.get("resources", []):
        resources.extend(_load_resource(directory / entry))
    for patch in kustomization.get("patches", []):
        _apply_patch(resources, patch, directory)
    if namespace := kustomization.get("namespace"):
        for res in resources:
            if res["kind"] not in CLUSTER_SCOPED_KINDS:
                res["metadata"]["namespace"] = namespace
    for label in kustomization.get("labels", []):
        _add_labels(resources, label)
    for image in kustomization.get("images", []):
        _set_image(resources, image)
    return resources


def render(directory: Path | str) -> str:
    return yaml.safe_dump_all(build(directory), sort_keys=False, explicit_start=True)


def _load_kustomization(directory: Path) -> dict:
    path = directory / "kustomization.yaml"
    if not path.is_file():
        raise UnsupportedKustomization(f"{directory}: no kustomization.yaml")
    kustomization = yaml.safe_load(path.read_text()) or {}
    unknown = set(kustomization) - KUSTOMIZATION_KEYS
    if unknown:
        raise UnsupportedKustomization(f"{path}: unsupported fields {sorted(unknown)}")
    return kustomization


def _load_resource(path: Path) -> list[dict]:
    if path.is_dir():
        return build(path)
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _apply_patch(resources: list[dict], patch: dict, directory: Path) -> None:
    target = patch.get("target") or {}
    if not target.get("kind") or set(target) - {"kind", "name"} or set(patch) - {"target", "patch", "path"}:
        raise UnsupportedKustomization(f"patch needs exactly target.kind (and optional target.name): {patch}")
    text = patch["patch"] if "patch" in patch else (directory / patch["path"]).read_text()
    operations = yaml.safe_load(text)
    if not isinstance(operations, list):
        raise UnsupportedKustomization(f"only JSON 6902 patches (a list of operations) are supported: {target}")
    matched = [r for r in resources if r["kind"] == target["kind"]
               and target.get("name", r["metadata"]["name"]) == r["metadata"]["name"]]
    if not matched:
        raise UnsupportedKustomization(f"patch target matches no resource: {target}")
    for res in matched:
        for op in operations:
            _json_patch(res, op)


def _json_patch(doc: dict, op: dict) -> None:
    parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
    parent = doc
    for part in parts[:-1]:
        parent = parent[int(part)] if isinstance(parent, list) else parent[part]
    last = parts[-1]
    kind = op["op"]
    if kind not in ("add", "replace", "remove"):
        raise UnsupportedKustomization(f"unsupported JSON patch operation {kind!r}")
    if isinstance(parent, list):
        index = len(parent) if (last == "-" and kind == "add") else int(last)
        if kind == "add":
            parent.insert(index, copy.deepcopy(op["value"]))
        elif kind == "replace":
            parent[index] = copy.deepcopy(op["value"])
        else:
            del parent[index]
        return
    if kind != "add" and last not in parent:
        raise KeyError(f"JSON patch {kind} of missing path {op['path']}")
    if kind == "remove":
        del parent[last]
    else:
        parent[last] = copy.deepcopy(op["value"])


def _add_labels(resources: list[dict], label: dict) -> None:
    if set(label) - {"pairs", "includeSelectors", "includeTemplates"} or label.get("includeSelectors") \
            or label.get("includeTemplates"):
        raise UnsupportedKustomization(f"labels: only pairs on metadata are supported: {label}")
    for res in resources:
        res["metadata"].setdefault("labels", {}).update(label["pairs"])


def _set_image(resources: list[dict], image: dict) -> None:
    if set(image) - {"name", "newName", "newTag"}:
        raise UnsupportedKustomization(f"images: only name, newName and newTag are supported: {image}")
    for res in resources:
        pod = res.get("spec", {}).get("template", {}).get("spec", {})
        for container in (c for key in POD_CONTAINER_LISTS for c in pod.get(key, [])):
            name, tag = _split_image(container["image"])
            if name == image["name"]:
                new_tag = str(image.get("newTag", tag or ""))
                container["image"] = image.get("newName", name) + (f":{new_tag}" if new_tag else "")


def _split_image(ref: str) -> tuple[str, str | None]:
    """``registry:5000/app:1.2`` → (``registry:5000/app``, ``1.2``); digests are not supported."""
    if "@" in ref:
        raise UnsupportedKustomization(f"image digests are not supported: {ref}")
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    return (ref[:colon], ref[colon + 1:]) if colon > slash else (ref, None)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(f"usage: {sys.argv[0]} KUSTOMIZATION_DIR")
    sys.stdout.write(render(sys.argv[1]))
