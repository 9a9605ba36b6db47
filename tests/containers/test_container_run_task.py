"""`run-task` in a container: one task from stdin or from a mounted file, result on stdout."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

WELCOME = Path("apps/email-service/examples/welcome.json")


def _run_task(
    image: str, *options: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    # No network at all: run-task needs no broker, and email-service without SMTP_HOST writes an
    # .eml file to its outbox instead of sending.
    return subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "none",
            *options,
            image,
            "run-task",
            *([] if stdin is None else ["-"]),
        ],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_run_task_reads_the_task_from_stdin_and_prints_the_completed_result(image):
    done = _run_task(image("email-service"), "--interactive", stdin=WELCOME.read_text())

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["transport"] == "outbox"
    assert result["accepted"] == ["ana@example.com"]


def test_run_task_reads_a_mounted_task_file(image, tmp_path):
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    shutil.copyfile(WELCOME, tasks / "welcome.json")
    # The container runs as an unprivileged user: the file must be readable by others.
    tasks.chmod(0o755)
    (tasks / "welcome.json").chmod(0o644)

    done = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "none",
            "--volume",
            f"{tasks}:/tasks:ro",
            image("email-service"),
            "run-task",
            "/tasks/welcome.json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["accepted"] == ["ana@example.com"]


def test_run_task_exits_2_on_an_invalid_task(image):
    done = _run_task(
        image("email-service"), "--interactive", stdin='{"id": "x", "to": "not a list"}'
    )

    assert done.returncode == 2
    assert done.stdout == ""
