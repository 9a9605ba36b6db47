"""create-worker adds a worker's Kubernetes manifests to deploy/base; remove-worker removes them."""

from __future__ import annotations

from pathlib import Path

from jupiter_plugins.kubernetes_manifests import (
    KUSTOMIZATION,
    add_worker_manifests,
    manifest_path,
    remove_worker_manifests,
    render_manifests,
    with_resource,
    without_resource,
)
from jupiter_plugins.worker_names import derive_names

BASE = """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization

resources:
  - task-api/deployment.yaml
  # One file per worker (the worker generator adds a line here).
  - workers/email-service.yaml
  - workers/scraper-anses.yaml
"""


def repo_with_base(tmp_path: Path) -> Path:
    (tmp_path / "deploy" / "base").mkdir(parents=True)
    (tmp_path / KUSTOMIZATION).write_text(BASE)
    return tmp_path


def test_the_manifests_name_the_worker_its_image_and_its_queue() -> None:
    text = render_manifests(derive_names("pdf-render")).decode()

    assert "{{" not in text
    for kind in ("kind: Deployment", "kind: PodDisruptionBudget", "kind: ScaledObject"):
        assert kind in text
    assert "image: jupiter/pdf-render" in text
    assert "queueName: pdf-render" in text
    assert "name: WORKER_QUEUE\n              value: pdf-render" in text
    assert "httpGet: {path: /livez, port: metrics}" in text
    assert "httpGet: {path: /readyz, port: metrics}" in text


def test_the_worker_is_listed_after_the_other_workers_once() -> None:
    listed = with_resource(BASE, "pdf-render")

    assert listed.endswith("  - workers/scraper-anses.yaml\n  - workers/pdf-render.yaml\n")
    assert with_resource(listed, "pdf-render") == listed
    assert without_resource(listed, "pdf-render") == BASE


def test_create_writes_the_manifests_and_remove_takes_them_out(tmp_path: Path) -> None:
    root = repo_with_base(tmp_path)
    names = derive_names("pdf-render")

    assert add_worker_manifests(root, names) == [manifest_path("pdf-render"), KUSTOMIZATION]
    assert (root / manifest_path("pdf-render")).read_bytes() == render_manifests(names)
    assert "  - workers/pdf-render.yaml" in (root / KUSTOMIZATION).read_text()

    assert remove_worker_manifests(root, names) == (
        [manifest_path("pdf-render"), KUSTOMIZATION],
        [],
    )
    assert not (root / manifest_path("pdf-render")).exists()
    assert (root / KUSTOMIZATION).read_text() == BASE


def test_changed_manifests_are_left_in_place(tmp_path: Path) -> None:
    root = repo_with_base(tmp_path)
    names = derive_names("pdf-render")
    add_worker_manifests(root, names)
    target = root / manifest_path("pdf-render")
    target.write_text(target.read_text() + "# tuned by hand\n")

    assert remove_worker_manifests(root, names) == ([], [manifest_path("pdf-render")])
    assert target.exists()


def test_an_existing_manifest_is_never_overwritten(tmp_path: Path) -> None:
    root = repo_with_base(tmp_path)
    target = root / manifest_path("pdf-render")
    target.parent.mkdir(parents=True)
    target.write_text("mine")

    assert add_worker_manifests(root, derive_names("pdf-render")) == []
    assert target.read_text() == "mine"


def test_a_repository_without_a_kustomize_base_gets_nothing(tmp_path: Path) -> None:
    assert add_worker_manifests(tmp_path, derive_names("pdf-render")) == []
    assert not (tmp_path / "deploy").exists()
