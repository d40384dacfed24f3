#!/usr/bin/env python3
"""Renders a kustomize directory without kustomize, for deploy/check.sh.

    python3 deploy/render.py [DIR] > rendered.yaml     (DIR: deploy/k8s/base)

Reads DIR/kustomization.yaml and writes the documents of its `resources:`
files, in order, as one YAML stream, with its `images:` applied. It is strict
where kustomize would differ or a mistake would go unseen: a listed file that
is missing, a file in DIR that is not listed, a directory or URL resource, a
duplicate object, or any kustomization field other than `resources` and
`images` (generators, patches, labels...) is an error, not silently ignored.
`kubectl kustomize DIR` must produce the same objects.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SUPPORTED_FIELDS = {"apiVersion", "kind", "resources", "images"}
POD_TEMPLATE_PATHS = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}


class RenderError(Exception):
    pass


def kustomization_file(base: Path) -> Path:
    found = [base / name for name in KUSTOMIZATION_NAMES if (base / name).is_file()]
    if len(found) != 1:
        raise RenderError(f"{base}: expected exactly one of {', '.join(KUSTOMIZATION_NAMES)}, found {len(found)}")
    return found[0]


def load_kustomization(base: Path) -> tuple[Path, dict]:
    path = kustomization_file(base)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise RenderError(f"{path}: not valid YAML: {error}") from error
    if not isinstance(data, dict):
        raise RenderError(f"{path}: not a mapping")
    if data.get("apiVersion") != "kustomize.config.k8s.io/v1beta1" or data.get("kind") != "Kustomization":
        raise RenderError(f"{path}: apiVersion/kind must be kustomize.config.k8s.io/v1beta1 Kustomization")
    unsupported = sorted(set(data) - SUPPORTED_FIELDS)
    if unsupported:
        raise RenderError(
            f"{path}: render.py implements only {sorted(SUPPORTED_FIELDS)}; found {unsupported} "
            "(extend render.py or keep them in an overlay)"
        )
    return path, data


def listed_resources(base: Path, kustomization: Path, data: dict) -> list[Path]:
    resources = data.get("resources") or []
    if not isinstance(resources, list) or not all(isinstance(r, str) for r in resources):
        raise RenderError(f"{kustomization}: resources must be a list of file names")
    paths: list[Path] = []
    for entry in resources:
        if "://" in entry or entry.startswith("github.com/"):
            raise RenderError(f"{kustomization}: remote resource {entry!r} is not supported")
        path = (base / entry).resolve()
        if path.parent != base.resolve():
            raise RenderError(f"{kustomization}: resource {entry!r} is not a file directly in {base}")
        if path.is_dir():
            raise RenderError(f"{kustomization}: resource {entry!r} is a directory (not supported)")
        if not path.is_file():
            raise RenderError(f"{kustomization}: listed resource {entry!r} does not exist")
        if path in paths:
            raise RenderError(f"{kustomization}: resource {entry!r} is listed twice")
        paths.append(path)
    present = {p.resolve() for p in base.iterdir() if p.resolve() != kustomization.resolve()}
    unlisted = sorted(p.name for p in present - set(paths))
    if unlisted:
        raise RenderError(f"{base}: not listed in {kustomization.name} resources: {', '.join(unlisted)}")
    return paths


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """`name[:tag][@digest]` → (name, tag, digest); a registry port is not a tag."""
    name, _, digest = image.partition("@")
    tag = None
    slash, colon = name.rfind("/"), name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
    return name, tag, digest or None


def apply_images(doc: dict, images: list[dict], source: Path) -> None:
    path = POD_TEMPLATE_PATHS.get(doc.get("kind"))
    if path is None:
        return
    spec = doc
    for key in path:
        spec = (spec or {}).get(key)
    if not isinstance(spec, dict):
        raise RenderError(f"{source}: {doc['kind']}/{doc['metadata']['name']} has no pod spec")
    for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        name, tag, digest = split_image(container.get("image", ""))
        for image in images:
            if image.get("name") != name:
                continue
            new_name = image.get("newName", name)
            if image.get("digest"):
                container["image"] = f"{new_name}@{image['digest']}"
            elif image.get("newTag"):
                container["image"] = f"{new_name}:{image['newTag']}"
            else:
                container["image"] = new_name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


def render(base: Path) -> list[dict]:
    base = Path(base)
    if not base.is_dir():
        raise RenderError(f"{base}: not a directory")
    kustomization, data = load_kustomization(base)
    images = data.get("images") or []
    if not isinstance(images, list) or not all(isinstance(i, dict) and i.get("name") for i in images):
        raise RenderError(f"{kustomization}: images must be a list of mappings with a name")
    documents: list[dict] = []
    seen: dict[tuple, Path] = {}
    for path in listed_resources(base, kustomization, data):
        try:
            docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        except yaml.YAMLError as error:
            raise RenderError(f"{path}: not valid YAML: {error}") from error
        if not docs:
            raise RenderError(f"{path}: holds no Kubernetes object")
        for doc in docs:
            if not isinstance(doc, dict) or not all(doc.get(k) for k in ("apiVersion", "kind", "metadata")):
                raise RenderError(f"{path}: every document needs apiVersion, kind and metadata")
            name = (doc.get("metadata") or {}).get("name")
            if not name:
                raise RenderError(f"{path}: a {doc['kind']} has no metadata.name")
            group = doc["apiVersion"].rpartition("/")[0]
            key = (group, doc["kind"], doc["metadata"].get("namespace"), name)
            if key in seen:
                raise RenderError(f"{path}: {doc['kind']}/{name} is also defined in {seen[key].name}")
            seen[key] = path
            apply_images(doc, images, path)
            documents.append(doc)
    return documents


def main(argv: list[str]) -> int:
    base = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent / "k8s" / "base"
    try:
        documents = render(base)
    except RenderError as error:
        print(f"render.py: {error}", file=sys.stderr)
        return 1
    yaml.safe_dump_all(documents, sys.stdout, sort_keys=False, default_flow_style=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
