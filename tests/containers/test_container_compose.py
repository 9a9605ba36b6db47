"""docker/compose.yaml: it validates with every Compose found (v1 `docker-compose`, v2
`docker compose`), passes the base image through to the builds, and with docker/compose.host.yaml
brings task-api and a worker up on the host's RabbitMQ, PostgreSQL and an SMTP server, where a
task submitted through task-api is COMPLETED and its e-mail delivered."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import requests
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from containers.container_support import DOCKER_DIR, base_image_args, pex_of
from psycopg import sql
from task_api.testing import free_port, graphql
from worker_framework import WorkerSettings
from worker_framework.testing import (
    QueueClient,
    amqp_url,
    delete_worker_queues,
    wait_for,
    worker_settings,
)

WELCOME = Path("apps/email-service/examples/welcome.json")
POSTGRES_ADMIN_URL = os.environ.get(
    "TASK_API_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
SUBMIT = """
mutation Submit($queue: String!, $payload: JSON!) {
  submitTask(queue: $queue, payload: $payload) { id }
}
"""
STATUS = "query Status($id: ID!) { task(id: $id) { status } }"

#: A cold build of two images plus `up` on a loaded machine.
UP_TIMEOUT_S = 900


def _compose_commands() -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []
    if shutil.which("docker-compose"):
        found.append(("docker-compose",))
    version = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    if version.returncode == 0:
        found.append(("docker", "compose"))
    return found


@pytest.fixture(scope="module")
def compose_commands() -> list[tuple[str, ...]]:
    """Every Compose on this machine; none skips (fails in CI)."""
    found = _compose_commands()
    if not found:
        message = "no docker-compose (v1) or docker compose (v2) found"
        if os.environ.get("CI"):
            pytest.fail(f"CI needs Compose for the compose tests: {message}")
        pytest.skip(message)
    return found


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The repository as compose sees it: docker/, .dockerignore and the PEX files in dist/."""
    shutil.copytree(DOCKER_DIR, tmp_path / "docker")
    shutil.copyfile(".dockerignore", tmp_path / ".dockerignore")
    for app in ("task-api", "email-service", "scraper-anses"):
        target = tmp_path / "dist" / f"apps.{app}" / f"{app}.pex"
        target.parent.mkdir(parents=True)
        shutil.copyfile(pex_of(app), target)
    return tmp_path


def _run(command: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    done = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}:\n{done.stderr}"
    return done.stdout


def _base_env(**more: str) -> dict[str, str]:
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
    for name in ("DOCKER_HOST", "PYTHON_IMAGE"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    env.update(more)
    return env


def test_compose_files_validate_and_pass_the_base_image_to_every_build(compose_commands, project):
    env = _base_env(PYTHON_IMAGE="registry.example/python-base")
    for cli in compose_commands:
        for files in (["docker/compose.yaml"], ["docker/compose.yaml", "docker/compose.host.yaml"]):
            options = [item for name in files for item in ("-f", name)]
            config = _run([*cli, "-p", "jupiter", *options, "config"], project, env)
            assert config.count("PYTHON_IMAGE: registry.example/python-base") == 2 + len(files), (
                cli,
                files,
            )


def test_build_context_of_the_repository_holds_only_the_pex_files(project):
    # What .dockerignore must keep out: everything but dist/apps.*/*.pex (sources, secrets, ...).
    (project / "dist" / "apps.email-service" / "notes.bin").write_bytes(os.urandom(8 << 20))
    (project / "local-data.bin").write_bytes(os.urandom(8 << 20))
    pex_files = sum(path.stat().st_size for path in project.glob("dist/apps.*/*.pex"))

    done = subprocess.run(
        [
            "docker",
            "build",
            "--no-cache",
            "--target",
            "unpack",
            "--build-arg",
            "APP=email-service",
            "--build-arg",
            "DIST=dist",
            *base_image_args(),
            "-f",
            "docker/Dockerfile",
            ".",
        ],
        cwd=project,
        env=_base_env(DOCKER_BUILDKIT="0"),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    sent = re.search(r"Sending build context to Docker daemon\s+([0-9.]+)([kMG]?B)", done.stdout)
    assert sent, done.stdout
    size = float(sent.group(1)) * {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}[sent.group(2)]
    assert pex_files <= size < pex_files + 1e6


@dataclass
class MailSink:
    """An SMTP server's handler that keeps every message's recipients."""

    recipients: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.recipients.extend(envelope.rcpt_tos)
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, MailSink]]:
    """A real SMTP server on 127.0.0.1: (port, what it received)."""
    sink = MailSink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller.port, sink
    controller.stop()


@pytest.fixture
def database_url() -> Iterator[str]:
    """A fresh PostgreSQL database for task-api, dropped after the test."""
    name = f"jupiter_compose_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlunsplit(urlsplit(POSTGRES_ADMIN_URL)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def test_app_services_on_the_hosts_broker_and_database_complete_a_submitted_task(
    compose_commands, project, smtp_server, database_url, client: QueueClient
):
    smtp_port, mail = smtp_server
    api_port = free_port()
    prefix = f"compose-{uuid.uuid4().hex[:10]}-"
    queue = f"{prefix}email-service"
    worker_token, submit_token = uuid.uuid4().hex, uuid.uuid4().hex
    env = _base_env(
        JUPITER_IMAGE_TAG="compose-test",
        JUPITER_AMQP_URL=amqp_url(),
        JUPITER_DATABASE_URL=database_url,
        JUPITER_TASK_API_PORT=str(api_port),
        JUPITER_QUEUE_PREFIX=prefix,
        JUPITER_SMTP_HOST="127.0.0.1",
        JUPITER_SMTP_PORT=str(smtp_port),
        JUPITER_WORKER_TOKEN=worker_token,
        JUPITER_SUBMIT_TOKEN=submit_token,
    )
    compose = [
        *compose_commands[0],
        "-p",
        prefix.replace("-", ""),
        "-f",
        "docker/compose.yaml",
        "-f",
        "docker/compose.host.yaml",
    ]
    graphql_url = f"http://127.0.0.1:{api_port}/graphql"
    try:
        _run(
            [*compose, "up", "-d", "--build", "--no-deps", "task-api-on-host", "email-service"],
            project,
            env,
            timeout=UP_TIMEOUT_S,
        )
        wait_for(lambda: _answers(f"http://127.0.0.1:{api_port}/healthz"), 120, 0.5, "task-api up")
        wait_for(lambda: client.consumer_count(queue) > 0, 120, 0.5, f"a consumer on {queue}")

        payload = json.loads(WELCOME.read_text())
        args = {"queue": queue, "payload": payload}
        refused = graphql(graphql_url, SUBMIT, args, token=worker_token)
        assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN", refused
        submitted = graphql(graphql_url, SUBMIT, args, token=submit_token)
        assert submitted.get("errors") is None, submitted
        task_id = submitted["data"]["submitTask"]["id"]

        def status() -> str:
            return str(
                graphql(graphql_url, STATUS, {"id": task_id}, token=submit_token)["data"]["task"][
                    "status"
                ]
            )

        wait_for(lambda: status() == "COMPLETED", 120, 0.5, f"task {task_id} COMPLETED")
        assert mail.recipients == ["ana@example.com"]
    except BaseException:
        print(
            subprocess.run(
                [*compose, "logs", "--no-color"],
                cwd=project,
                env=env,
                capture_output=True,
                text=True,
                check=False,
            ).stdout
        )
        raise
    finally:
        subprocess.run(
            [*compose, "down", "--volumes", "--remove-orphans"],
            cwd=project,
            env=env,
            capture_output=True,
            timeout=300,
            check=False,
        )
        delete_worker_queues(worker_settings(WorkerSettings, worker_queue=queue))


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).ok
    except requests.RequestException:
        return False
