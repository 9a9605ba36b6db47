"""The packaged PEX files run on a bare CPython 3.11, as in a python:3.11-slim container.

Each PEX is started with `-I -S` (isolated: no site-packages, no user site, no PYTHON*
variables), an empty environment and a working directory outside the repository, so only what
the PEX itself carries can be imported. The last test does what docker/Dockerfile does: unpack
the PEX into a venv with PEX_TOOLS=1 and start the app from it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

APPS = ("email-service", "scraper-anses", "task-api")
WORKER_COMMANDS = ("run", "run-task", "enqueue", "dlq", "healthcheck")
EXAMPLE = Path("apps/email-service/examples/welcome.json")


def _pex(app: str) -> Path:
    return Path(f"apps.{app}/{app}.pex").resolve()


@pytest.fixture(scope="module")
def bare_python() -> str:
    # A CPython 3.11 that is not the test's own interpreter (that one has the test's packages).
    for candidate in ("/usr/bin/python3.11", "/usr/local/bin/python3.11", "python3.11"):
        found = shutil.which(candidate)
        if found:
            return found
    pytest.fail("no CPython 3.11 found to run the PEX files with")


def _run_bare(python: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [python, "-I", "-S", *args], env={}, cwd=cwd, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("app", APPS)
def test_pex_carries_wheels_for_linux_x86_64_and_aarch64(app):
    with zipfile.ZipFile(_pex(app)) as pex:
        wheels = {name.split("/")[1] for name in pex.namelist() if name.startswith(".deps/")}
    native = [wheel for wheel in wheels if "-cp311-" in wheel]
    assert native, f"{app}: expected compiled wheels (pydantic-core at least)"
    for arch in ("x86_64", "aarch64"):
        assert any(arch in wheel for wheel in native), f"{app}: no {arch} wheel in {sorted(wheels)}"


@pytest.mark.parametrize("app", ("email-service", "scraper-anses"))
def test_worker_pex_shows_every_command_with_a_bare_python(app, bare_python, tmp_path):
    completed = _run_bare(bare_python, str(_pex(app)), "--help", cwd=tmp_path)

    assert completed.returncode == 0, completed.stderr
    for command in WORKER_COMMANDS:
        assert command in completed.stdout


def test_task_api_pex_starts_with_a_bare_python(bare_python, tmp_path):
    completed = _run_bare(bare_python, str(_pex("task-api")), "--help", cwd=tmp_path)

    assert completed.returncode == 0, completed.stderr
    assert "TASK_API_PORT" in completed.stdout


def test_email_pex_runs_a_task_with_a_bare_python(bare_python, tmp_path):
    completed = _run_bare(
        bare_python, str(_pex("email-service")), "run-task", str(EXAMPLE.resolve()), cwd=tmp_path
    )

    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)
    eml = tmp_path / "outbox" / "welcome-ana-0001.eml"
    assert result["transport"] == "outbox"
    assert Path(result["path"]) == eml
    assert b"Message-ID: <welcome-ana-0001@" in eml.read_bytes()


@pytest.mark.parametrize("app", APPS)
def test_pex_unpacks_into_a_venv_that_starts_as_in_the_dockerfile(app, bare_python, tmp_path):
    venv = tmp_path / "venv"
    for scope in ("deps", "srcs"):
        completed = subprocess.run(
            [bare_python, str(_pex(app)), "venv", f"--scope={scope}", "--compile", str(venv)],
            env={"PEX_TOOLS": "1"},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert completed.returncode == 0, completed.stderr

    started = subprocess.run(
        [str(venv / "pex"), "--help"], env={}, cwd=tmp_path, capture_output=True, text=True
    )

    assert started.returncode == 0, started.stderr
    assert "Usage:" in started.stdout
