"""Fixtures of the container tests: a Docker engine and its base image (without them they skip,
saying why in one line; with CI set they fail), the app images built from the PEX files of this
run, and fresh worker queues."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
from containers.container_support import build_image, engine_problem
from worker_framework import WorkerSettings
from worker_framework.testing import delete_worker_queues, unique_queue_name, worker_settings

#: Why Docker cannot be used, when the tests skip for want of it.
_engine_problem: list[str] = []


@pytest.fixture(scope="session", autouse=True)
def docker_engine() -> None:
    """Skip every container test without an engine or base image; with CI set, fail instead."""
    problem = engine_problem()
    if problem is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI needs Docker for the container tests: {problem}")
    _engine_problem.append(problem)
    pytest.skip(f"Docker not usable: {problem}")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line saying why the container tests skipped (``pytest -q`` only counts skips)."""
    if _engine_problem:
        terminalreporter.write_line(
            f"container tests skipped: Docker not usable ({_engine_problem[0]}); "
            ".ci/docker-engine installs and starts an engine and makes a base image"
        )


@pytest.fixture(scope="session")
def image() -> Callable[[str], str]:
    """``image(app)``: the app's image, built once per session."""
    built: dict[str, str] = {}

    def get(app: str) -> str:
        if app not in built:
            built[app] = build_image(app)
        return built[app]

    return get


@pytest.fixture
def worker_queue() -> Iterator[str]:
    """A fresh queue name for a worker container; its queues are deleted after the test."""
    name = unique_queue_name("container")
    yield name
    delete_worker_queues(worker_settings(WorkerSettings, worker_queue=name))
