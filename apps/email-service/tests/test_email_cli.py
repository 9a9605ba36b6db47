"""The service as a user runs it: ``email-service run-task FILE`` in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from email import message_from_bytes, policy
from pathlib import Path

from email_service import main as email_service_main
from email_service.worker import EmailWorker
from email_smtp_server import SMTP_PASSWORD, SMTP_USER, ServerFactory
from shared_utils.child_process import inherited_pythonpath
from worker_framework import testing_processes

#: What ``--help`` needs none of: the framework's commands and settings, and what they import.
NOT_NEEDED_FOR_HELP = {*testing_processes.NOT_NEEDED_FOR_HELP, "jinja2"}

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

#: Generous: a cold interpreter importing pydantic and jinja2 on a busy 2-core CI machine.
PROCESS_TIMEOUT_S = 120


def _run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    clean = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("SMTP_", "EMAIL_", "WORKER_", "GRAPHQL_", "LOG_"))
    }
    # The child imports exactly what this test process imports.
    clean["PYTHONPATH"] = inherited_pythonpath()
    clean.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", email_service_main.__name__, *args],
        cwd=cwd,
        env=clean,
        input=stdin,
        capture_output=True,
        timeout=PROCESS_TIMEOUT_S,
        check=False,
    )


def test_run_task_of_the_welcome_example_writes_to_the_outbox_and_prints_the_result(
    tmp_path: Path,
) -> None:
    completed = _run_cli("run-task", str(EXAMPLES / "welcome.json"), cwd=tmp_path)

    assert completed.returncode == 0, completed.stderr.decode()
    result = json.loads(completed.stdout)
    eml = tmp_path / "outbox" / "welcome-ana-0001.eml"
    assert result == {
        "message_id": "<welcome-ana-0001@example.com>",
        "transport": "outbox",
        "accepted": ["ana@example.com"],
        "refused": {},
        "path": str(eml),
    }
    message = message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert message["Subject"] == "Welcome to Jupiter, Ana!"


def test_every_example_task_runs_to_completion(tmp_path: Path) -> None:
    for example in sorted(EXAMPLES.glob("*.json")):
        completed = _run_cli("run-task", str(example), cwd=tmp_path)
        assert completed.returncode == 0, f"{example.name}: {completed.stderr.decode()}"


def test_run_task_delivers_over_smtp_configured_by_environment(
    start_smtp_server: ServerFactory, ca_file: Path, tmp_path: Path
) -> None:
    server = start_smtp_server("starttls")
    env = {
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(server.port),
        "SMTP_SECURITY": "starttls",
        "SMTP_USERNAME": SMTP_USER,
        "SMTP_PASSWORD": SMTP_PASSWORD,
        "SMTP_CA_FILE": str(ca_file),
        "EMAIL_FROM": "Jupiter <no-reply@jupiter.example.com>",
    }
    completed = _run_cli("run-task", str(EXAMPLES / "password-reset.json"), cwd=tmp_path, env=env)

    assert completed.returncode == 0, completed.stderr.decode()
    assert json.loads(completed.stdout)["transport"] == "smtp"
    [received] = server.received
    assert received.tls and received.login == SMTP_USER
    assert b"Message-ID: <password-reset-ana-0001@jupiter.example.com>" in received.data
    assert SMTP_PASSWORD.encode() not in completed.stderr
    assert not (tmp_path / "outbox").exists()


def test_a_header_injection_task_is_invalid_input_and_nothing_is_written(tmp_path: Path) -> None:
    task = {
        "id": "evil-1",
        "to": "ana@example.com",
        "subject": "Hi\r\nBcc: victim@example.com",
        "text": "x",
    }
    completed = _run_cli("run-task", "-", cwd=tmp_path, stdin=json.dumps(task).encode())

    assert completed.returncode == 2
    assert b"header injection" in completed.stderr
    assert not (tmp_path / "outbox").exists()


def test_an_unknown_template_fails_the_task_naming_it(tmp_path: Path) -> None:
    task = {"id": "t-404", "to": "ana@example.com", "template": "newsletter"}
    completed = _run_cli("run-task", "-", cwd=tmp_path, stdin=json.dumps(task).encode())

    assert completed.returncode == 1
    assert b"unknown template 'newsletter'" in completed.stderr
    assert b"failed permanently" in completed.stderr


def test_an_invalid_setting_stops_the_process_naming_the_variable(tmp_path: Path) -> None:
    completed = _run_cli(
        "run-task",
        str(EXAMPLES / "welcome.json"),
        cwd=tmp_path,
        env={"SMTP_SECURITY": "ssl-please"},
    )
    assert completed.returncode == 2
    assert b"SMTP_SECURITY" in completed.stderr
    assert not (tmp_path / "outbox").exists()


def test_a_username_without_a_password_is_refused_at_start(tmp_path: Path) -> None:
    completed = _run_cli(
        "run-task",
        str(EXAMPLES / "welcome.json"),
        cwd=tmp_path,
        env={"SMTP_HOST": "127.0.0.1", "SMTP_USERNAME": "mailer"},
    )
    assert completed.returncode == 2
    assert b"SMTP_PASSWORD" in completed.stderr


def test_help_names_the_worker_and_its_queue_without_importing_them_or_the_framework() -> None:
    completed, imported, by_class = testing_processes.help_by_name_and_by_class(
        email_service_main.__name__, f"{EmailWorker.__module__}:EmailWorker"
    )

    assert completed.returncode == 0, completed.stderr
    # As the class itself gives it: its name, its default_queue as the program name.
    assert completed.stdout == by_class
    assert "Usage: email-service [OPTIONS]" in completed.stdout
    assert not imported & {*NOT_NEEDED_FOR_HELP, EmailWorker.__module__}
