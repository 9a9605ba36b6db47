"""Helpers for tests and benchmarks that need a real task-api process.

``TaskApiServer`` starts ``python -m task_api.main`` as a subprocess on a free port and waits
until it answers; ``graphql`` sends one request. Used by task-api's own tests, the framework's
GraphQL reporter tests, the end-to-end tests and the progress benchmark.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import requests
from shared_utils.child_process import inherited_pythonpath

# Imported, not only named, so Pants ships the entry point with whatever uses this module.
from task_api import main as task_api_main

#: Starting Python, strawberry and the schema takes about a second; allow for a loaded CI box.
STARTUP_TIMEOUT_S = 30.0


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class TaskApiServer:
    """A task-api process for tests: ``with TaskApiServer(database_url=...) as api: api.url``.

    ``tokens`` is a list (every token has every scope) or a mapping of token -> scopes.
    ``port`` may be given to restart a server on the same address (``stop()`` then
    ``start()``); the log of the process is kept in ``log_path`` for assertions and for
    diagnosing a failed start.
    """

    def __init__(
        self,
        *,
        database_url: str | None = None,
        tokens: list[str] | Mapping[str, list[str]] | None = None,
        port: int | None = None,
        extra_env: Mapping[str, str] | None = None,
        workdir: Path | None = None,
    ) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="task-api-")
        self.workdir = workdir or Path(self._tmp.name)
        self.database_url = database_url or f"sqlite:///{self.workdir / 'tasks.db'}"
        #: The accepted tokens, and (when given as a mapping) the scopes of each.
        self.tokens: list[str] = list(tokens or [])
        self.token_scopes = dict(tokens) if isinstance(tokens, Mapping) else None
        self.port = port or free_port()
        self.extra_env = dict(extra_env or {})
        self.log_path = Path(self._tmp.name) / "task-api.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The GraphQL endpoint."""
        return f"{self.base_url}/graphql"

    def env(self) -> dict[str, str]:
        """The environment the process runs with."""
        env = dict(os.environ)
        env.update(
            PYTHONPATH=inherited_pythonpath(),
            TASK_API_HOST="127.0.0.1",
            TASK_API_PORT=str(self.port),
            TASK_API_DATABASE_URL=self.database_url,
            TASK_API_LOG_LEVEL="INFO",
        )
        for variable in ("TASK_API_TOKENS", "TASK_API_TOKENS_FILE", "TASK_API_ALLOW_ANONYMOUS"):
            env.pop(variable, None)
        if self.token_scopes is not None:
            env["TASK_API_TOKENS"] = json.dumps(self.token_scopes)
        elif self.tokens:
            env["TASK_API_TOKENS"] = ",".join(self.tokens)
        env.update(self.extra_env)
        return env

    def start(self) -> None:
        """Start the process and wait until ``/healthz`` answers."""
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", task_api_main.__name__],
                env=self.env(),
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"task-api exited at start:\n{self.log()}")
            try:
                if requests.get(f"{self.base_url}/healthz", timeout=1).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"task-api did not answer within {STARTUP_TIMEOUT_S}s:\n{self.log()}")

    @property
    def pid(self) -> int | None:
        """The process id while it runs."""
        return None if self._process is None else self._process.pid

    def wait_for_exit(self, timeout_s: float = 30.0) -> int:
        """Wait until the process ends by itself (e.g. killed at a fault point); its status."""
        assert self._process is not None, "not started"
        code = self._process.wait(timeout=timeout_s)
        self._process = None
        return code

    def stop(self) -> int | None:
        """Stop the process (SIGTERM, then SIGKILL after 10 s); its exit code, if it ran."""
        process, self._process = self._process, None
        if process is None:
            return None
        if process.poll() is not None:
            return process.returncode
        process.terminate()
        try:
            return process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()

    def log(self) -> str:
        """Everything the process has written so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def graphql(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """POST one GraphQL request (with the first configured token unless given)."""
        default_token = self.tokens[0] if self.tokens else None
        return graphql(self.url, query, variables, token=token or default_token, headers=headers)

    def __enter__(self) -> TaskApiServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        self._tmp.cleanup()


def graphql(
    url: str,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    token: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """POST a GraphQL request (with extra HTTP ``headers``, e.g. ``traceparent``) and return the
    decoded response (``data`` and maybe ``errors``)."""
    sent = dict(headers or {})
    if token:
        sent["Authorization"] = f"Bearer {token}"
    response = requests.post(
        url, json={"query": query, "variables": variables or {}}, headers=sent, timeout=30
    )
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


TASK_FIELDS = """
    id queue status progress currentStep attempt workerType errorMessage nextRetryAt result
    payload createdAt updatedAt traceId
    history {
        status progress currentStep attempt errorMessage nextRetryAt result workerType recordedAt
    }
"""

TASK_QUERY = f"query Task($id: ID!) {{ task(id: $id) {{ {TASK_FIELDS} }} }}"


def fetch_task(url: str, task_id: str, *, token: str | None = None) -> dict[str, Any] | None:
    """``task(id)`` with every field and the history, or None when unknown."""
    body = graphql(url, TASK_QUERY, {"id": task_id}, token=token)
    if body.get("errors"):
        raise RuntimeError(f"task({task_id}) failed: {body['errors']}")
    task: dict[str, Any] | None = body["data"]["task"]
    return task
