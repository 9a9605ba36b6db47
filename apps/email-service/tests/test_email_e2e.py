"""End to end: tasks published to RabbitMQ, consumed by the email worker, delivered over SMTP."""

from __future__ import annotations

from collections.abc import Callable
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
from email_service.settings import EmailSettings
from email_service.worker import EmailWorker
from email_smtp_server import SMTP_PASSWORD, SMTP_USER, ServerFactory, SmtpServer
from worker_framework import TaskStatus
from worker_framework.testing import QueueClient, RecordingReporter, WorkerThread, wait_for

WELCOME = {
    "to": ["Ana Gómez <ana@example.com>"],
    "template": "welcome",
    "variables": {"name": "Ana", "login_url": "https://app.example.com/login"},
}


@pytest.fixture
def e2e_settings(make_settings: Callable[..., EmailSettings]) -> Callable[..., EmailSettings]:
    """``e2e_settings(server, ca_file, **overrides)``: settings on a fresh queue, deleted after."""

    def make(server: SmtpServer, ca_file: Path, **overrides: Any) -> EmailSettings:
        values: dict[str, Any] = {
            "worker_max_retries": 2,
            "worker_max_delay_ms": 200,
            "smtp_host": "127.0.0.1",
            "smtp_port": server.port,
            "smtp_security": "starttls",
            "smtp_username": SMTP_USER,
            "smtp_password": SMTP_PASSWORD,
            "smtp_ca_file": ca_file,
            "email_from": "Jupiter <no-reply@jupiter.example.com>",
        }
        return make_settings(**(values | overrides))

    return make


def test_a_queued_task_is_delivered_and_its_result_returned(
    start_smtp_server: ServerFactory,
    ca_file: Path,
    e2e_settings: Any,
    client: QueueClient,
    reply_queue: str,
) -> None:
    server = start_smtp_server("starttls")
    settings = e2e_settings(server, ca_file)
    reporter = RecordingReporter()
    with WorkerThread(EmailWorker, settings, reporter=reporter):
        task_id = client.publish_task(
            settings.worker_queue, {"id": "e2e-welcome-1", **WELCOME}, reply_to=reply_queue
        )
        [reply] = client.wait_for_messages(reply_queue, 1)

    assert task_id == "e2e-welcome-1"
    assert reply.json() == {
        "message_id": "<e2e-welcome-1@jupiter.example.com>",
        "transport": "smtp",
        "accepted": ["ana@example.com"],
        "refused": {},
        "path": None,
    }
    [received] = server.received
    message = message_from_bytes(received.data, policy=policy.default)
    assert message["Message-ID"] == "<e2e-welcome-1@jupiter.example.com>"
    assert message["Subject"] == "Welcome to Jupiter, Ana!"
    updates = reporter.for_task(task_id)
    steps = [update.current_step for update in updates if update.status is TaskStatus.PROCESSING]
    assert [step for step in steps if step] == ["rendering", "connecting", "sending", "done"]
    assert updates[-1].status is TaskStatus.COMPLETED


def test_a_4xx_is_retried_and_the_retry_keeps_the_message_id(
    start_smtp_server: ServerFactory,
    ca_file: Path,
    e2e_settings: Any,
    client: QueueClient,
    reply_queue: str,
) -> None:
    server = start_smtp_server("starttls", first_data_replies=["451 4.3.0 Try again later"])
    settings = e2e_settings(server, ca_file)
    reporter = RecordingReporter()
    with WorkerThread(EmailWorker, settings, reporter=reporter):
        task_id = client.publish_task(
            settings.worker_queue, {"id": "e2e-retry-1", **WELCOME}, reply_to=reply_queue
        )
        [reply] = client.wait_for_messages(reply_queue, 1)

    assert reply.json()["message_id"] == "<e2e-retry-1@jupiter.example.com>"
    assert reply.header("x-attempt") == 2
    [received] = server.received
    assert b"Message-ID: <e2e-retry-1@jupiter.example.com>" in received.data
    statuses = [update.status for update in reporter.for_task(task_id)]
    assert TaskStatus.RETRY_SCHEDULED in statuses and statuses[-1] is TaskStatus.COMPLETED


def test_recipients_deferred_while_others_were_accepted_are_retried_alone(
    start_smtp_server: ServerFactory,
    ca_file: Path,
    e2e_settings: Any,
    client: QueueClient,
    reply_queue: str,
) -> None:
    server = start_smtp_server("starttls", greylisted={"bruno@example.com"})
    settings = e2e_settings(server, ca_file)
    reporter = RecordingReporter()
    task = {"id": "e2e-grey-1", **WELCOME, "cc": ["bruno@example.com"], "bcc": ["c@example.com"]}
    with WorkerThread(EmailWorker, settings, reporter=reporter):
        client.publish_task(settings.worker_queue, task, reply_to=reply_queue)
        [reply] = client.wait_for_messages(reply_queue, 1)

    first, second = server.received
    assert first.rcpt_tos == ["ana@example.com", "c@example.com"]
    assert second.rcpt_tos == ["bruno@example.com"]
    assert reply.header("x-attempt") == 2
    assert reply.json()["accepted"] == ["ana@example.com", "c@example.com", "bruno@example.com"]
    statuses = [update.status for update in reporter.for_task("e2e-grey-1")]
    assert TaskStatus.RETRY_SCHEDULED in statuses and statuses[-1] is TaskStatus.COMPLETED


def test_recipients_still_deferred_when_retries_run_out_fail_the_task(
    start_smtp_server: ServerFactory,
    ca_file: Path,
    e2e_settings: Any,
    client: QueueClient,
) -> None:
    server = start_smtp_server(
        "starttls", rcpt_replies={"bruno@example.com": "450 4.2.0 Greylisted, come back later"}
    )
    settings = e2e_settings(server, ca_file)
    reporter = RecordingReporter()
    task = {"id": "e2e-grey-2", **WELCOME, "cc": ["bruno@example.com"]}
    with WorkerThread(EmailWorker, settings, reporter=reporter):
        client.publish_task(settings.worker_queue, task)
        [dead] = client.wait_for_messages(f"{settings.worker_queue}.dlq", 1)
        wait_for(lambda: reporter.for_task("e2e-grey-2")[-1].status is TaskStatus.FAILED)

    # Ana got the message once; the retries went to bruno alone, who never accepted it.
    assert [received.rcpt_tos for received in server.received] == [["ana@example.com"]]
    assert "retries exhausted" in dead.header("x-error-message")
    assert "bruno@example.com" in dead.header("x-error-message")


def test_a_5xx_dead_letters_the_task_with_the_servers_reply(
    start_smtp_server: ServerFactory, ca_file: Path, e2e_settings: Any, client: QueueClient
) -> None:
    server = start_smtp_server("starttls", data_reply="554 5.7.1 Rejected by policy")
    settings = e2e_settings(server, ca_file)
    with WorkerThread(EmailWorker, settings):
        client.publish_task(settings.worker_queue, {"id": "e2e-554", **WELCOME})
        [dead] = client.wait_for_messages(f"{settings.worker_queue}.dlq", 1)

    assert dead.json()["id"] == "e2e-554"
    assert "554 5.7.1 Rejected by policy" in dead.header("x-error-message")
    assert dead.header("x-attempt") == 1
    assert server.received == []


def test_a_header_injection_task_is_dead_lettered_and_nothing_is_sent(
    start_smtp_server: ServerFactory, ca_file: Path, e2e_settings: Any, client: QueueClient
) -> None:
    server = start_smtp_server("starttls")
    settings = e2e_settings(server, ca_file)
    evil = {"id": "e2e-evil", "to": "ana@example.com", "subject": "Hi\r\nBcc: x@example.com"}
    with WorkerThread(EmailWorker, settings):
        client.publish_task(settings.worker_queue, {**evil, "text": "hello"})
        [dead] = client.wait_for_messages(f"{settings.worker_queue}.dlq", 1)

    assert "header injection" in dead.header("x-error-message")
    assert server.received == []
    wait_for(lambda: client.message_count(settings.worker_queue) == 0, message="queue empty")
