"""Outbox mode (no SMTP_HOST): messages become .eml files, one per task id."""

from __future__ import annotations

from collections.abc import Callable
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

from email_service.settings import EmailSettings
from email_service.task import EmailTask
from email_service.worker import EmailWorker
from worker_framework import TaskContext
from worker_framework.testing import RecordingReporter

ContextFactory = Callable[..., TaskContext]


def _outbox_worker(folder: Path) -> EmailWorker:
    return EmailWorker(
        EmailSettings(email_outbox_dir=folder, email_from="Jupiter <no-reply@jupiter.example.com>")
    )


def _task(**overrides: Any) -> EmailTask:
    body: dict[str, Any] = {
        "id": "reset-9",
        "to": "ana@example.com",
        "bcc": "audit@example.com",
        "template": "password-reset",
        "variables": {"name": "Ana", "reset_url": "https://app.example.com/reset?t=abc"},
    }
    body.update(overrides)
    return EmailTask.model_validate(body)


def test_without_smtp_host_the_message_is_written_as_a_parseable_eml_file(
    tmp_path: Path, make_context: ContextFactory
) -> None:
    outbox = tmp_path / "outbox"
    result = _outbox_worker(outbox).execute_task(_task(), make_context("reset-9"))

    path = outbox / "reset-9.eml"
    assert result.transport == "outbox"
    assert result.path == str(path)
    assert result.accepted == ["ana@example.com", "audit@example.com"]
    message = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert message["Message-ID"] == result.message_id == "<reset-9@jupiter.example.com>"
    assert message["To"] == "ana@example.com"
    assert message["Subject"] == "Reset your Jupiter password"
    assert message["Bcc"] is None
    assert message.get_content_type() == "multipart/alternative"


def test_a_redelivered_task_overwrites_its_file_instead_of_adding_one(
    tmp_path: Path, make_context: ContextFactory
) -> None:
    worker = _outbox_worker(tmp_path)
    worker.execute_task(
        _task(variables={"name": "First", "reset_url": "https://x"}), make_context("reset-9")
    )
    worker.execute_task(
        _task(variables={"name": "Second", "reset_url": "https://x"}),
        make_context("reset-9", attempt=2, redelivered=True),
    )
    assert [path.name for path in tmp_path.iterdir()] == ["reset-9.eml"]
    assert b"Second" in (tmp_path / "reset-9.eml").read_bytes()


def test_ids_unsafe_for_file_names_get_a_stable_digest_name(
    tmp_path: Path, make_context: ContextFactory
) -> None:
    worker = _outbox_worker(tmp_path)
    first = worker.execute_task(_task(id="../../etc/passwd"), make_context("../../etc/passwd"))
    second = worker.execute_task(_task(id="../../etc/passwd"), make_context("../../etc/passwd"))
    assert first.path == second.path
    assert first.path is not None and Path(first.path).parent == tmp_path
    assert Path(first.path).name.startswith("sha256-")
    assert len(list(tmp_path.iterdir())) == 1


def test_the_outbox_folder_is_created_when_missing(
    tmp_path: Path, make_context: ContextFactory
) -> None:
    outbox = tmp_path / "deep" / "er" / "outbox"
    _outbox_worker(outbox).execute_task(_task(), make_context("reset-9"))
    assert (outbox / "reset-9.eml").is_file()


def test_progress_in_outbox_mode_uses_the_same_steps(
    tmp_path: Path, make_context: ContextFactory, reporter: RecordingReporter
) -> None:
    worker = _outbox_worker(tmp_path)
    first_step = worker.initial_step(_task())
    worker.execute_task(_task(), make_context("reset-9"))
    steps = [first_step, *(update.current_step for update in reporter.updates)]
    assert steps == ["rendering", "connecting", "sending", "done"]
