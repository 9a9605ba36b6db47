"""The Kubernetes manifests of a generated worker, beside its app folder.

``create-worker`` writes ``deploy/base/workers/<name>.yaml`` (Deployment, PodDisruptionBudget,
KEDA ScaledObject, from ``templates/kubernetes/worker.yaml.tmpl``) and lists it among the
``resources`` of ``deploy/base/kustomization.yaml``; ``remove-worker`` takes both out again,
unless the manifest was changed since (then it stays, and the goal says so). A repository
without ``deploy/base`` gets nothing.
"""

from __future__ import annotations

from importlib.abc import Traversable
from pathlib import Path

from jupiter_plugins.rendering import _render_text, template_root, template_values
from jupiter_plugins.worker_names import WorkerNames

BASE_DIR = "deploy/base"
KUSTOMIZATION = f"{BASE_DIR}/kustomization.yaml"
TEMPLATE = "kubernetes/worker.yaml.tmpl"
RESOURCES_KEY = "resources:"


def manifest_path(name: str) -> str:
    """Where a worker's manifests go, relative to the build root."""
    return f"{BASE_DIR}/workers/{name}.yaml"


def resource_line(name: str) -> str:
    """The worker's entry in the base kustomization's ``resources``."""
    return f"  - workers/{name}.yaml"


def render_manifests(names: WorkerNames, root: Traversable | None = None) -> bytes:
    """The worker's manifests, rendered from the template."""
    template = (root or template_root()) / TEMPLATE
    values = template_values(names, "kubernetes")
    return _render_text(template.read_text(encoding="utf-8"), values, TEMPLATE)


def with_resource(kustomization: str, name: str) -> str:
    """``kustomization`` with the worker's manifest listed (after the other workers)."""
    lines = kustomization.splitlines()
    entry = resource_line(name)
    if entry in lines:
        return kustomization
    workers = [i for i, line in enumerate(lines) if line.startswith("  - workers/")]
    if workers:
        at = workers[-1] + 1
    elif RESOURCES_KEY in lines:
        at = lines.index(RESOURCES_KEY) + 1
    else:
        lines.append(RESOURCES_KEY)
        at = len(lines)
    lines.insert(at, entry)
    return "\n".join(lines) + "\n"


def without_resource(kustomization: str, name: str) -> str:
    """``kustomization`` without the worker's manifest."""
    entry = resource_line(name)
    return "".join(
        line for line in kustomization.splitlines(keepends=True) if line.rstrip("\n") != entry
    )


def add_worker_manifests(build_root: Path, names: WorkerNames) -> list[str]:
    """Write the manifests and list them; return the paths written (none without a base)."""
    kustomization = build_root / KUSTOMIZATION
    target = build_root / manifest_path(names.name)
    if not kustomization.is_file() or target.exists():
        return []
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(render_manifests(names))
    kustomization.write_text(with_resource(kustomization.read_text(), names.name))
    return [manifest_path(names.name), KUSTOMIZATION]


def remove_worker_manifests(build_root: Path, names: WorkerNames) -> tuple[list[str], list[str]]:
    """Take the manifests out again: (paths removed or edited, paths kept because changed)."""
    target = build_root / manifest_path(names.name)
    kustomization = build_root / KUSTOMIZATION
    if not target.is_file():
        return [], []
    if target.read_bytes() != render_manifests(names):
        return [], [manifest_path(names.name)]
    target.unlink()
    changed = [manifest_path(names.name)]
    if kustomization.is_file():
        kustomization.write_text(without_resource(kustomization.read_text(), names.name))
        changed.append(KUSTOMIZATION)
    return changed, []
