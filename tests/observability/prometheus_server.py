"""A real Prometheus for tests: its own config, port and data directory, queried over HTTP.

Debian's ``prometheus`` package provides ``prometheus`` and ``promtool`` (``.ci/run``
installs it when missing). Without them a test skips with one line, and fails under CI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
import requests
import yaml

#: Prometheus starts (replays an empty write-ahead log) in about a second.
STARTUP_TIMEOUT_S = 60.0


def require_tool(name: str) -> str:
    """The path of ``name`` (``prometheus``, ``promtool``); skip the test without it, fail in CI."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian package `prometheus`; .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(f"{message} and CI is set")
        pytest.skip(message)
    return path


def run_promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``promtool args...``, its output captured."""
    return subprocess.run(
        [require_tool("promtool"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


class PrometheusServer:
    """``prometheus`` on 127.0.0.1:``port``, scraping ``jobs`` (job name -> targets) every second.

    ``rule_files`` are loaded too, so their alerts can be read from ``/api/v1/alerts``.
    """

    def __init__(
        self, port: int, jobs: dict[str, list[str]], rule_files: list[Path] | None = None
    ) -> None:
        self.port = port
        self._jobs = jobs
        self._rule_files = rule_files or []
        self._tmp = tempfile.TemporaryDirectory(prefix="prometheus-")
        self._process: subprocess.Popen[bytes] | None = None
        self.log_path = Path(self._tmp.name) / "prometheus.log"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def _write_config(self) -> Path:
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(path) for path in self._rule_files],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": targets}]}
                for job, targets in self._jobs.items()
            ],
        }
        path = Path(self._tmp.name) / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        return path

    def start(self) -> PrometheusServer:
        """Start it and wait until it answers ``/-/ready``."""
        command = [
            require_tool("prometheus"),
            f"--config.file={self._write_config()}",
            f"--storage.tsdb.path={Path(self._tmp.name) / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"prometheus exited at start:\n{self.log()}")
            try:
                if requests.get(f"{self.base_url}/-/ready", timeout=1).ok:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"prometheus not ready within {STARTUP_TIMEOUT_S}s:\n{self.log()}")

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL) and delete its data."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def log(self) -> str:
        """What Prometheus wrote so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def api(self, path: str, **params: str) -> Any:
        """GET ``/api/v1/<path>``: the ``data`` of a success; raises with Prometheus' error."""
        response = requests.get(f"{self.base_url}/api/v1/{path}", params=params, timeout=30)
        body = response.json()
        if body.get("status") != "success":
            raise PromQLError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def now(self) -> str:
        """An evaluation time for several queries that must see the same samples."""
        return f"{time.time():.3f}"

    def query(self, expr: str, *, at: str | None = None) -> list[dict[str, Any]]:
        """The instant vector (a scalar as a one-element list) of ``expr``, now or ``at``."""
        params = {"query": expr} if at is None else {"query": expr, "time": at}
        data = self.api("query", **params)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def values(self, expr: str, label: str, *, at: str | None = None) -> dict[str, float]:
        """``expr``'s samples, keyed by the value of ``label``."""
        return {s["metric"].get(label, ""): float(s["value"][1]) for s in self.query(expr, at=at)}

    def wait_until(
        self, expr: str, label: str, check: Callable[[dict[str, float]], bool], timeout_s: float
    ) -> dict[str, float]:
        """Query ``expr`` until ``check`` accepts its values; the last values either way."""
        deadline = time.monotonic() + timeout_s
        while True:
            values = self.values(expr, label)
            if check(values) or time.monotonic() > deadline:
                return values
            time.sleep(0.5)

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        self._tmp.cleanup()


class PromQLError(Exception):
    """Prometheus refused a query (it does not parse, or failed to run)."""
