"""End to end: generate workers into a copy of the repository and build, lint, check and test them.

This is what catches a stale template: when the framework's API changes, the generated code
stops type-checking or its tests stop passing here. It runs a nested ``./pants`` in a temporary
build root holding the repository's Pants configuration, launcher, lockfiles, ``libs/``,
``apps/BUILD`` and ``scripts/``, so it takes minutes and needs RabbitMQ (``AMQP_URL``); the
target is tagged ``e2e``. The repository is ``JUPITER_REPO_ROOT`` or, when the test runs from a
checkout rather than a Pants sandbox, the folder holding ``pants.toml`` above this file. See
docs/worker-generator.md for the command.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

#: What a build root needs to generate, build and test a worker (no other app is copied).
COPIED = (
    "pants",
    "pants.toml",
    # The test defaults (the framework's pytest plugin) and what its targets need.
    "BUILD",
    ".dockerignore",
    "mypy.ini",
    "pyproject.toml",
    ".gitignore",
    "3rdparty",
    "libs",
    "apps/BUILD",
    "scripts",
    # What a new worker's image target needs (the other apps' image targets are not copied).
    "docker/BUILD",
    "docker/Dockerfile",
    "docker/compose.yaml",
    # create-worker adds the worker's Kubernetes manifests here; remove-worker takes them out.
    "deploy",
)

#: Never copied: caches and outputs of tools, which may be large and are not inputs.
IGNORED = shutil.ignore_patterns(
    "__pycache__", "*.pyc", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".pants.d", "dist"
)

#: Environment passed to the nested Pants (the test's own is a sandbox's, and it must not pass
#: on options such as PANTS_PYTEST_INSTALL_FROM_RESOLVE meant for the plugin's tests).
PASSED_ENV = (
    "PATH",
    "AMQP_URL",
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "PYENV_ROOT",
    "LANG",
    "DOCKER_HOST",
    "PYTHON_IMAGE",
)

#: The longest name allowed, sorting after worker_framework: the worst case for line lengths and
#: import order in the generated code.
LONG_NAME = "zz-" + "x" * 27

#: A cold nested Pants building, linting, checking and testing two apps on a 2-core machine.
PANTS_TIMEOUT_S = 1500


def repo_root() -> Path:
    explicit = os.environ.get("JUPITER_REPO_ROOT")
    if explicit:
        return Path(explicit).resolve()
    for folder in Path(__file__).resolve().parents:
        if (folder / "pants.toml").is_file() and (folder / "pants").is_file():
            return folder
    pytest.fail(
        "cannot find the repository: set JUPITER_REPO_ROOT to its root and pass it to the test "
        "(see docs/worker-generator.md)"
    )


def copy_build_root(source: Path, target: Path) -> None:
    for relative in COPIED:
        origin = source / relative
        if origin.is_dir():
            shutil.copytree(origin, target / relative, ignore=IGNORED, symlinks=True)
        else:
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, target / relative)


def nested_pants(build_root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {name: os.environ[name] for name in PASSED_ENV if name in os.environ}
    # The launcher keeps its Pants venv under ~/.cache; Pants sandboxes do not pass HOME.
    env["HOME"] = os.environ.get("HOME") or pwd.getpwuid(os.getuid()).pw_dir
    return subprocess.run(
        ["./pants", "--no-pantsd", *args],
        cwd=build_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=PANTS_TIMEOUT_S,
        check=False,
    )


def docker_engine_answers() -> bool:
    """An engine answers and has the base image (a build would otherwise try to pull it)."""
    if shutil.which("docker") is None:
        return False
    info = subprocess.run(["docker", "info"], capture_output=True, timeout=60, check=False)
    if info.returncode != 0:
        return False
    base = os.environ.get("PYTHON_IMAGE") or "python:3.11-slim"
    present = subprocess.run(
        ["docker", "image", "inspect", base], capture_output=True, timeout=60, check=False
    )
    return present.returncode == 0


def check_images(build_root: Path, names: tuple[str, ...], offline_worker: str) -> None:
    """Build each worker's image with Pants; run ``offline_worker``'s example task in its image."""
    packaged = nested_pants(build_root, "package", *(f"docker:{name}" for name in names))
    assert packaged.returncode == 0, packaged.stdout + packaged.stderr[-20000:]
    example = (build_root / "apps" / offline_worker / "examples" / "task.json").read_text()
    ran = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--interactive",
            "--network",
            "none",
            f"jupiter/{offline_worker}",
            "run-task",
            "-",
        ],
        input=example,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)


def check_compose_services(build_root: Path, names: tuple[str, ...]) -> None:
    """Each worker's compose.yaml adds its service to docker/compose.yaml's stack."""
    if shutil.which("docker-compose") is None:
        return
    overlays = [item for name in names for item in ("-f", f"apps/{name}/compose.yaml")]
    services = subprocess.run(
        [
            "docker-compose",
            "-p",
            "e2e",
            "-f",
            "docker/compose.yaml",
            *overlays,
            "config",
            "--services",
        ],
        cwd=build_root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert services.returncode == 0, services.stderr
    assert set(names) <= set(services.stdout.split())


def files_under(root: Path) -> set[str]:
    return {path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file()}


def test_generated_workers_lint_check_test_and_package_then_remove_cleanly(
    tmp_path: Path,
) -> None:
    build_root = tmp_path / "repo"
    copy_build_root(repo_root(), build_root)
    apps_before = files_under(build_root / "apps")
    docker_before = files_under(build_root / "docker")
    kustomization = build_root / "deploy" / "base" / "kustomization.yaml"
    deploy_before = files_under(build_root / "deploy")
    kustomization_before = kustomization.read_text()

    for name, template_type in ((LONG_NAME, "basic"), ("e2e-page-reader", "http-scraper")):
        created = nested_pants(
            build_root, "create-worker", f"--name={name}", f"--type={template_type}"
        )
        assert created.returncode == 0, created.stdout + created.stderr
        assert (build_root / "deploy" / "base" / "workers" / f"{name}.yaml").is_file()
        assert f"  - workers/{name}.yaml" in kustomization.read_text()

    built = nested_pants(
        build_root,
        "lint",
        "check",
        "test",
        "package",
        f"apps/{LONG_NAME}::",
        "apps/e2e-page-reader::",
    )
    assert built.returncode == 0, built.stdout + built.stderr[-20000:]
    for name in (LONG_NAME, "e2e-page-reader"):
        # apps/BUILD's defaults reach a generated app: its PEX starts from a venv, not a zipapp.
        with zipfile.ZipFile(build_root / "dist" / f"apps.{name}" / f"{name}.pex") as pex:
            assert json.loads(pex.read("PEX-INFO"))["venv"] is True
    check_compose_services(build_root, (LONG_NAME, "e2e-page-reader"))
    if docker_engine_answers():
        # The basic worker's example needs no network (the scraper's fetches a web page).
        check_images(build_root, (LONG_NAME, "e2e-page-reader"), offline_worker=LONG_NAME)

    for name in (LONG_NAME, "e2e-page-reader"):
        removed = nested_pants(build_root, "remove-worker", f"--name={name}")
        assert removed.returncode == 0, removed.stdout + removed.stderr

    assert files_under(build_root / "apps") == apps_before
    assert files_under(build_root / "docker") == docker_before
    assert files_under(build_root / "deploy") == deploy_before
    assert kustomization.read_text() == kustomization_before
