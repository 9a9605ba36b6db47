"""The Kubernetes manifests in deploy/ render with kustomize and are valid for a pinned API.

Every overlay is rendered with ``kubectl kustomize`` (kustomize built into kubectl, no cluster
needed) and each rendered object is validated offline by ``kubernetes-validate`` against the
schemas of :data:`KUBERNETES_VERSION`, strictly (an unknown field fails). KEDA's
``ScaledObject`` and ``TriggerAuthentication`` have no schema there: the tests check that they
point at what exists (the Deployment, its queue, the Secret's key) instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

#: The Kubernetes API the manifests must be valid for (a version still in wide use).
KUBERNETES_VERSION = "1.30"
DEPLOY = Path("deploy")
OVERLAYS = sorted(path.parent for path in (DEPLOY / "overlays").glob("*/kustomization.yaml"))
#: Kinds of KEDA, checked for consistency rather than against a schema.
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}


def render(kustomization: Path) -> list[dict[str, Any]]:
    """The objects ``kubectl kustomize`` renders from ``kustomization``."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        if os.environ.get("CI"):
            pytest.fail("CI must render the manifests: kubectl is not on PATH")
        pytest.skip("kubectl (which renders kustomizations) is not installed")
    result = subprocess.run(
        [kubectl, "kustomize", str(kustomization)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module", params=OVERLAYS, ids=lambda path: path.name)
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    """Every object of one overlay."""
    return render(request.param)


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    """Objects of ``kind`` by name."""
    return {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] == kind}


def workers(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The worker Deployments by name."""
    return {
        name: deployment
        for name, deployment in by_kind(objects, "Deployment").items()
        if deployment["metadata"]["labels"].get("app.kubernetes.io/component") == "worker"
    }


def container_env(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The first container's ``env`` entries by name."""
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {entry["name"]: entry for entry in container.get("env", [])}


def test_there_is_an_example_overlay() -> None:
    assert DEPLOY / "overlays" / "example" in OVERLAYS


def test_every_object_is_valid_for_the_pinned_kubernetes_api(rendered) -> None:
    for obj in rendered:
        if obj["kind"] in KEDA_KINDS:
            continue
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_the_base_renders_on_its_own() -> None:
    names = {obj["kind"] for obj in render(DEPLOY / "base")}
    assert {"Deployment", "Service", "PodDisruptionBudget", "ScaledObject"} <= names


def test_a_misspelled_field_fails_validation(rendered) -> None:
    # The validation above can fail: strict mode refuses a field the API does not know.
    deployment = next(iter(by_kind(rendered, "Deployment").values()))
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_every_app_runs_from_its_image_with_requests_and_probes(rendered) -> None:
    deployments = by_kind(rendered, "Deployment")
    assert {"task-api", "email-service", "scraper-anses"} <= set(deployments)
    for name, deployment in deployments.items():
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert f"jupiter/{name}" in container["image"], name
        assert container["resources"]["requests"].keys() >= {"cpu", "memory"}, name
        assert "readinessProbe" in container and "livenessProbe" in container, name


def test_workers_are_probed_over_http_on_their_metrics_port(rendered) -> None:
    [config] = [
        cm
        for name, cm in by_kind(rendered, "ConfigMap").items()
        if name.startswith("jupiter-worker-config")
    ]
    metrics_port = int(config["data"]["WORKER_METRICS_PORT"])
    for name, deployment in workers(rendered).items():
        template = deployment["spec"]["template"]
        container = template["spec"]["containers"][0]
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        assert ports["metrics"] == metrics_port, name
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
        assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "metrics"}
        assert template["metadata"]["annotations"]["prometheus.io/port"] == str(metrics_port)


def test_termination_grace_outlasts_the_worker_shutdown_grace(rendered) -> None:
    [config] = [
        cm
        for name, cm in by_kind(rendered, "ConfigMap").items()
        if name.startswith("jupiter-worker-config")
    ]
    grace = float(config["data"]["WORKER_SHUTDOWN_GRACE_S"])
    for name, deployment in workers(rendered).items():
        env = container_env(deployment)
        own = (
            float(env["WORKER_SHUTDOWN_GRACE_S"]["value"])
            if "WORKER_SHUTDOWN_GRACE_S" in env
            else grace
        )
        assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > own, name


def test_every_secret_reference_names_a_key_of_the_rendered_secret(rendered) -> None:
    secrets = by_kind(rendered, "Secret")
    for deployment in by_kind(rendered, "Deployment").values():
        for entry in container_env(deployment).values():
            ref = entry.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["key"] in secrets[ref["name"]]["data"], (ref, sorted(secrets))
    for auth in by_kind(rendered, "TriggerAuthentication").values():
        for ref in auth["spec"]["secretTargetRef"]:
            assert ref["key"] in secrets[ref["name"]]["data"], ref


def test_every_worker_has_a_disruption_budget_and_scales_on_its_own_queue(rendered) -> None:
    budgets = by_kind(rendered, "PodDisruptionBudget")
    scaled = by_kind(rendered, "ScaledObject")
    auths = by_kind(rendered, "TriggerAuthentication")
    for name, deployment in workers(rendered).items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert any(
            budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
            for budget in budgets.values()
        ), name
        [scaler] = [s for s in scaled.values() if s["spec"]["scaleTargetRef"]["name"] == name]
        [trigger] = scaler["spec"]["triggers"]
        assert trigger["type"] == "rabbitmq"
        assert (
            trigger["metadata"]["queueName"] == container_env(deployment)["WORKER_QUEUE"]["value"]
        )
        assert trigger["authenticationRef"]["name"] in auths


def test_the_generators_worker_manifests_are_valid_too() -> None:
    # What `create-worker` adds to deploy/base for a new worker (see docs/worker-generator.md).
    template = Path("scripts/jupiter_plugins/templates/kubernetes/worker.yaml.tmpl")
    text = template.read_text().replace("{{ name }}", "pdf-render")
    objects = [doc for doc in yaml.safe_load_all(text) if doc]
    assert {obj["kind"] for obj in objects} == {"Deployment", "PodDisruptionBudget", "ScaledObject"}
    for obj in objects:
        if obj["kind"] not in KEDA_KINDS:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    [scaler] = by_kind(objects, "ScaledObject").values()
    assert scaler["spec"]["triggers"][0]["metadata"]["queueName"] == "pdf-render"
