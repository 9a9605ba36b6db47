"""What the container tests share: the Docker engine, the app images, containers, and two small
real servers that stand between a container and the world (a TCP relay to RabbitMQ that can be cut,
an HTTP server that holds requests open).

The images are built from the PEX files Pants packaged for the test (`apps.<app>/<app>.pex` in the
sandbox) with `docker/Dockerfile`, exactly as `./pants package docker:<app>` does; the base image
is `PYTHON_IMAGE` when set (CI sets it to the image `.ci/docker-engine` made), else the
Dockerfile's default. Every container uses the host's network: the host's RabbitMQ and a test's
servers are at 127.0.0.1.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from worker_framework.testing import amqp_url, wait_for

#: Where the sandbox holds the Dockerfile and the compose files (a `files` dependency).
DOCKER_DIR = Path("docker")

#: Image builds on a cold cache unpack a PEX and compile every module: minutes on a loaded box.
BUILD_TIMEOUT_S = 900

#: docker run/stop/inspect answer in seconds; this only stops a wedged engine from hanging CI.
COMMAND_TIMEOUT_S = 180

#: Docker's own health probe of a test container runs this often (the image says 30 s).
TEST_HEALTH_INTERVAL = "1s"


#: The Dockerfile's default `PYTHON_IMAGE`.
DEFAULT_BASE_IMAGE = "python:3.11-slim"


class DockerError(RuntimeError):
    """A docker command failed; the message holds the command and what it printed."""


def engine_problem() -> str | None:
    """Why no Docker engine can be used here, or None when `docker info` answers."""
    if shutil.which("docker") is None:
        return "no docker command on PATH"
    try:
        answer = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "docker info did not answer within 30 s"
    if answer.returncode != 0 or not answer.stdout.strip():
        last_line = (answer.stderr.strip().splitlines() or ["no output"])[-1]
        return f"docker info failed: {last_line}"
    base = base_image()
    present = subprocess.run(
        ["docker", "image", "inspect", base], capture_output=True, timeout=30, check=False
    )
    if present.returncode != 0:
        # A build would try to pull it, which fails (or hangs) where no registry answers.
        return (
            f"the base image {base} is not on this engine: `docker pull {base}`, or set "
            "PYTHON_IMAGE to a local CPython 3.11 image (.ci/docker-engine makes one)"
        )
    return None


def base_image() -> str:
    """The image the app images are built on: `PYTHON_IMAGE`, else the Dockerfile's default."""
    return os.environ.get("PYTHON_IMAGE") or DEFAULT_BASE_IMAGE


def docker(*args: str, stdin: str | None = None, timeout: float = COMMAND_TIMEOUT_S) -> str:
    """Run `docker <args>`; return stdout. Raises DockerError on a non-zero exit."""
    done = subprocess.run(
        ["docker", *args], input=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise DockerError(f"docker {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
    return done.stdout


def base_image_args() -> list[str]:
    """The `--build-arg PYTHON_IMAGE=...` of this machine."""
    return ["--build-arg", f"PYTHON_IMAGE={base_image()}"]


def stage_of(app: str) -> str:
    """The Dockerfile stage an app's image is built from."""
    return "task-api" if app == "task-api" else "worker"


def pex_of(app: str) -> Path:
    """The PEX Pants packaged for the test."""
    return Path(f"apps.{app}/{app}.pex").resolve()


def build_image(app: str) -> str:
    """Build `jupiter-test/<app>` from the app's PEX and return its name."""
    tag = f"jupiter-test/{app}:latest"
    with tempfile.TemporaryDirectory(prefix="image-context-") as context:
        # The context holds only the PEX, at the path the Dockerfile copies it from.
        target = Path(context) / f"apps.{app}" / f"{app}.pex"
        target.parent.mkdir()
        shutil.copyfile(pex_of(app), target)
        docker(
            "build",
            "--quiet",
            "--file",
            str((DOCKER_DIR / "Dockerfile").resolve()),
            "--target",
            stage_of(app),
            "--build-arg",
            f"APP={app}",
            *base_image_args(),
            "--tag",
            tag,
            context,
            timeout=BUILD_TIMEOUT_S,
        )
    return tag


class Container:
    """A detached container on the host network, removed by :meth:`remove`."""

    def __init__(self, image: str, *args: str, env: dict[str, str], options: Sequence[str] = ()):
        self.name = f"jupiter-test-{uuid.uuid4().hex[:12]}"
        env_args = [item for key, value in env.items() for item in ("--env", f"{key}={value}")]
        docker(
            "run",
            "--detach",
            "--name",
            self.name,
            "--network",
            "host",
            *env_args,
            *options,
            image,
            *args,
        )

    def state(self) -> dict[str, Any]:
        """`docker inspect`'s State of the container."""
        state: dict[str, Any] = json.loads(
            docker("inspect", "--format", "{{json .State}}", self.name)
        )
        return state

    def health(self) -> str:
        """Docker's health status: starting, healthy or unhealthy."""
        return str(self.state().get("Health", {}).get("Status", "none"))

    def wait_healthy(self, timeout: float = 120.0) -> None:
        """Wait until Docker's own probe (the image's HEALTHCHECK) reports it healthy."""
        wait_for(
            lambda: self._running_health() == "healthy",
            timeout,
            interval=0.5,
            message=f"{self.name} healthy; logs:\n{self.logs()}",
        )

    def _running_health(self) -> str:
        state = self.state()
        if not state.get("Running"):
            raise AssertionError(
                f"{self.name} stopped (exit {state.get('ExitCode')}):\n{self.logs()}"
            )
        return str(state.get("Health", {}).get("Status", "none"))

    def exec(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a command inside the container (as its user); the completed process."""
        return subprocess.run(
            ["docker", "exec", self.name, *args],
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )

    def stop(self, grace_s: int) -> int:
        """`docker stop -t grace_s` (SIGTERM, SIGKILL after grace_s); the exit code."""
        docker("stop", "--time", str(grace_s), self.name, timeout=grace_s + COMMAND_TIMEOUT_S)
        return int(self.state()["ExitCode"])

    def logs(self) -> str:
        """What the container printed (stdout and stderr)."""
        done = subprocess.run(
            ["docker", "logs", self.name], capture_output=True, text=True, timeout=60, check=False
        )
        return done.stdout + done.stderr

    def remove(self) -> None:
        """Remove the container, running or not."""
        subprocess.run(
            ["docker", "rm", "--force", "--volumes", self.name],
            capture_output=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )


@contextmanager
def running(
    image: str, *args: str, env: dict[str, str], options: Sequence[str] = ()
) -> Iterator[Container]:
    """A :class:`Container` for the block; its logs are printed when the block fails."""
    container = Container(image, *args, env=env, options=options)
    try:
        yield container
    except BaseException:
        print(f"--- logs of {container.name} ---\n{container.logs()}")
        raise
    finally:
        container.remove()


class HeldRequestServer:
    """An HTTP server on 127.0.0.1 that answers nothing until :meth:`release` (or close).

    :attr:`request_arrived` is set as soon as a request comes in: a task that fetched from it is
    then certainly in the middle of its work.
    """

    def __init__(self) -> None:
        self.request_arrived = threading.Event()
        self._released = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # - the name http.server calls
                outer.request_arrived.set()
                outer._released.wait(timeout=600)
                self.send_error(503)

            def log_message(self, *_args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def release(self) -> None:
        """Answer the held requests (503) and stop serving."""
        self._released.set()
        self._server.shutdown()
        self._server.server_close()


#: `docker run` options that make Docker probe a test container every second, not every 30 s.
FAST_HEALTH_PROBE = ("--health-interval", TEST_HEALTH_INTERVAL, "--health-retries", "2")


def worker_env(queue: str, amqp: str | None = None, **more: str) -> dict[str, str]:
    """A worker container's environment: the test broker (or ``amqp``), ``queue``, ``more``."""
    return {"AMQP_URL": amqp or amqp_url(), "WORKER_QUEUE": queue, **more}
