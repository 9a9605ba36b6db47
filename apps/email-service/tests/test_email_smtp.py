"""Delivery through a real SMTP server (aiosmtpd): the bytes it receives, how failures classify."""

from __future__ import annotations

import base64
from collections.abc import Callable
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from email_service.settings import EmailSettings
from email_service.task import EmailResult, EmailTask
from email_service.worker import EmailWorker
from email_smtp_server import SMTP_PASSWORD, ServerFactory, SmtpServer
from worker_framework import TaskContext, WorkerError
from worker_framework.testing import RecordingReporter

SettingsFor = Callable[..., EmailSettings]
ContextFactory = Callable[..., TaskContext]

PDF_BYTES = b"%PDF-1.4\n" + bytes(range(256)) * 4


def _welcome(**overrides: Any) -> EmailTask:
    body: dict[str, Any] = {
        "id": "welcome-42",
        "to": ["Ana Gómez <ana@example.com>"],
        "cc": ["bruno@example.com"],
        "bcc": ["audit@example.com"],
        "reply_to": "Support <support@example.com>",
        "template": "welcome",
        "variables": {"name": "Ana", "login_url": "https://app.example.com/login"},
    }
    body.update(overrides)
    return EmailTask.model_validate(body)


def _send(settings: EmailSettings, task: EmailTask, make_context: ContextFactory) -> EmailResult:
    worker = EmailWorker(settings)
    worker.initialize()
    return worker.execute_task(task, make_context(task.id))


def _failure(settings: EmailSettings, task: EmailTask, make_context: ContextFactory) -> WorkerError:
    with pytest.raises(WorkerError) as caught:
        _send(settings, task, make_context)
    return caught.value


def _parsed(data: bytes) -> EmailMessage:
    return message_from_bytes(data, policy=policy.default)


def test_a_templated_email_arrives_over_starttls_after_login(
    smtp_server: SmtpServer, ca_file: Path, settings_for: SettingsFor, make_context: ContextFactory
) -> None:
    result = _send(settings_for(smtp_server, ca_file), _welcome(), make_context)

    [received] = smtp_server.received
    assert received.tls and received.login == "mailer"
    assert received.mail_from == "accounts@jupiter.example.com"
    assert received.rcpt_tos == ["ana@example.com", "bruno@example.com", "audit@example.com"]
    message = _parsed(received.data)
    assert message["From"] == "Jupiter Accounts <accounts@jupiter.example.com>"
    assert message["To"] == "Ana Gómez <ana@example.com>"
    assert message["Cc"] == "bruno@example.com"
    assert message["Reply-To"] == "Support <support@example.com>"
    assert message["Subject"] == "Welcome to Jupiter, Ana!"
    assert message["Message-ID"] == "<welcome-42@jupiter.example.com>"
    assert message["Bcc"] is None and b"audit@example.com" not in received.data
    assert message.get_content_type() == "multipart/alternative"
    text_part = message.get_body(preferencelist=("plain",))
    html_part = message.get_body(preferencelist=("html",))
    assert text_part is not None and "https://app.example.com/login" in text_part.get_content()
    assert (
        html_part is not None and 'href="https://app.example.com/login"' in html_part.get_content()
    )
    assert result == EmailResult(
        message_id="<welcome-42@jupiter.example.com>",
        transport="smtp",
        accepted=["ana@example.com", "bruno@example.com", "audit@example.com"],
        refused={},
        path=None,
    )


def test_the_wire_format_is_seven_bit_with_crlf_line_ends(
    smtp_server: SmtpServer, ca_file: Path, settings_for: SettingsFor, make_context: ContextFactory
) -> None:
    _send(
        settings_for(smtp_server, ca_file),
        _welcome(variables={"name": "Zoë", "login_url": "https://x"}),
        make_context,
    )
    data = smtp_server.received[0].data
    assert data.isascii()
    assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")
    assert "Zoë" in _parsed(data)["Subject"]


def test_attachments_arrive_byte_for_byte_with_name_and_type(
    smtp_server: SmtpServer, ca_file: Path, settings_for: SettingsFor, make_context: ContextFactory
) -> None:
    task = EmailTask.model_validate(
        {
            "id": "invoice-7",
            "to": "ana@example.com",
            "subject": "Your invoice",
            "text": "Invoice attached.",
            "attachments": [
                {
                    "name": "invoice-7.pdf",
                    "content_type": "application/pdf",
                    "content": base64.b64encode(PDF_BYTES).decode(),
                },
                {
                    "name": "notes.txt",
                    "content_type": "text/plain",
                    "content": base64.b64encode(b"line 1\nline 2\n").decode(),
                },
            ],
        }
    )
    _send(settings_for(smtp_server, ca_file), task, make_context)

    message = _parsed(smtp_server.received[0].data)
    assert message.get_content_type() == "multipart/mixed"
    attachments = list(message.iter_attachments())
    assert [(a.get_filename(), a.get_content_type()) for a in attachments] == [
        ("invoice-7.pdf", "application/pdf"),
        ("notes.txt", "text/plain"),
    ]
    assert attachments[0].get_payload(decode=True) == PDF_BYTES
    assert attachments[1].get_payload(decode=True) == b"line 1\nline 2\n"
    body = message.get_body(preferencelist=("plain",))
    assert body is not None and body.get_content().strip() == "Invoice attached."


def test_an_html_only_body_is_sent_as_a_single_html_part(
    smtp_server: SmtpServer, ca_file: Path, settings_for: SettingsFor, make_context: ContextFactory
) -> None:
    task = EmailTask.model_validate(
        {"id": "h-1", "to": "ana@example.com", "subject": "Hi", "html": "<p>Hi &amp; bye</p>"}
    )
    _send(settings_for(smtp_server, ca_file), task, make_context)
    message = _parsed(smtp_server.received[0].data)
    assert message.get_content_type() == "text/html"
    assert message.get_content().strip() == "<p>Hi &amp; bye</p>"


def test_a_redelivered_task_is_sent_with_the_same_message_id(
    smtp_server: SmtpServer, ca_file: Path, settings_for: SettingsFor, make_context: ContextFactory
) -> None:
    worker = EmailWorker(settings_for(smtp_server, ca_file))
    first = worker.execute_task(_welcome(), make_context("welcome-42"))
    second = worker.execute_task(
        _welcome(), make_context("welcome-42", attempt=2, redelivered=True)
    )
    assert first.message_id == second.message_id
    ids = [_parsed(received.data)["Message-ID"] for received in smtp_server.received]
    assert ids == ["<welcome-42@jupiter.example.com>"] * 2


def test_progress_goes_through_rendering_connecting_sending_done(
    smtp_server: SmtpServer,
    ca_file: Path,
    settings_for: SettingsFor,
    make_context: ContextFactory,
    reporter: RecordingReporter,
) -> None:
    worker = EmailWorker(settings_for(smtp_server, ca_file))
    task = _welcome()
    first_step = worker.initial_step(task)  # the framework reports it when the task starts
    worker.execute_task(task, make_context(task.id))
    steps = [first_step, *(update.current_step for update in reporter.updates)]
    assert steps == ["rendering", "connecting", "sending", "done"]
    assert [update.progress for update in reporter.updates] == [25, 50, 100]


# aiosmtpd cannot tell that an implicit-TLS session is encrypted, hence its warning.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_implicit_tls_delivers(
    start_smtp_server: ServerFactory,
    ca_file: Path,
    settings_for: SettingsFor,
    make_context: ContextFactory,
) -> None:
    server = start_smtp_server("tls")
    _send(settings_for(server, ca_file, smtp_security="tls"), _welcome(), make_context)
    [received] = server.received
    assert received.tls and received.login == "mailer"


def test_a_plain_relay_without_login_delivers(
    start_smtp_server: ServerFactory,
    ca_file: Path,
    settings_for: SettingsFor,
    make_context: ContextFactory,
) -> None:
    server = start_smtp_server("none")
    settings = settings_for(
        server, ca_file, smtp_security="none", smtp_username=None, smtp_password=None
    )
    _send(settings, _welcome(), make_context)
    [received] = server.received
    assert not received.tls and received.login is None


def test_a_rejected_login_is_permanent_and_does_not_reveal_the_password(
    smtp_server: SmtpServer, ca_file: Path, settings_for: SettingsFor, make_context: ContextFactory
) -> None:
    error = _failure(
        settings_for(smtp_server, ca_file, smtp_password="wrong-password"), _welcome(), make_context
    )
    assert error.permanent
    assert "535" in str(error)
    assert "wrong-password" not in str(error) and SMTP_PASSWORD not in str(error)
    assert smtp_server.received == []


def test_an_untrusted_server_certificate_is_permanent(
    smtp_server: SmtpServer, ca_file: Path, settings_for: SettingsFor, make_context: ContextFactory
) -> None:
    error = _failure(
        settings_for(smtp_server, ca_file, smtp_ca_file=None), _welcome(), make_context
    )
    assert error.permanent
    assert "certificate" in str(error) and "SMTP_CA_FILE" in str(error)


def test_a_5xx_reply_to_the_message_is_permanent(
    start_smtp_server: ServerFactory,
    ca_file: Path,
    settings_for: SettingsFor,
    make_context: ContextFactory,
) -> None:
    server = start_smtp_server(data_reply="550 5.7.1 Message rejected as spam")
    error = _failure(settings_for(server, ca_file), _welcome(), make_context)
    assert error.permanent
    assert "550 5.7.1 Message rejected as spam" in str(error)


def test_a_4xx_reply_to_the_message_is_transient(
    start_smtp_server: ServerFactory,
    ca_file: Path,
    settings_for: SettingsFor,
    make_context: ContextFactory,
) -> None:
    server = start_smtp_server(data_reply="451 4.3.0 Temporary local problem, try again later")
    error = _failure(settings_for(server, ca_file), _welcome(), make_context)
    assert not error.permanent
    assert "451" in str(error)


def test_all_recipients_refused_is_permanent(
    start_smtp_server: ServerFactory,
    ca_file: Path,
    settings_for: SettingsFor,
    make_context: ContextFactory,
) -> None:
    refusals = {
        address: "550 5.1.1 No such user"
        for address in ("ana@example.com", "bruno@example.com", "audit@example.com")
    }
    server = start_smtp_server(rcpt_replies=refusals)
    error = _failure(settings_for(server, ca_file), _welcome(), make_context)
    assert error.permanent
    assert "all recipients refused" in str(error) and "ana@example.com" in str(error)
    assert server.received == []


def test_all_recipients_deferred_with_4xx_is_transient(
    start_smtp_server: ServerFactory,
    ca_file: Path,
    settings_for: SettingsFor,
    make_context: ContextFactory,
) -> None:
    deferrals = {
        address: "450 4.2.0 Greylisted, come back later"
        for address in ("ana@example.com", "bruno@example.com", "audit@example.com")
    }
    server = start_smtp_server(rcpt_replies=deferrals)
    error = _failure(settings_for(server, ca_file), _welcome(), make_context)
    assert not error.permanent


def test_some_recipients_refused_still_delivers_and_reports_them(
    start_smtp_server: ServerFactory,
    ca_file: Path,
    settings_for: SettingsFor,
    make_context: ContextFactory,
) -> None:
    server = start_smtp_server(rcpt_replies={"bruno@example.com": "550 5.1.1 No such user"})
    result = _send(settings_for(server, ca_file), _welcome(), make_context)
    assert result.accepted == ["ana@example.com", "audit@example.com"]
    assert result.refused == {"bruno@example.com": "550 5.1.1 No such user"}
    assert server.received[0].rcpt_tos == ["ana@example.com", "audit@example.com"]


def test_a_retry_sends_only_to_recipients_its_earlier_attempts_did_not_settle(
    start_smtp_server: ServerFactory,
    ca_file: Path,
    settings_for: SettingsFor,
    make_context: ContextFactory,
) -> None:
    server = start_smtp_server()
    ctx = make_context("welcome-42", attempt=2)
    # What the first attempt saved, plus an address the task does not list: it is ignored.
    ctx.state = {"accepted": ["ana@example.com", "mallory@example.com"], "refused": {}}
    worker = EmailWorker(settings_for(server, ca_file))
    result = worker.execute_task(_welcome(), ctx)
    assert server.received[0].rcpt_tos == ["bruno@example.com", "audit@example.com"]
    assert result.accepted == ["ana@example.com", "bruno@example.com", "audit@example.com"]


def test_a_refused_connection_is_transient(
    closed_port: int, ca_file: Path, settings_for: SettingsFor, make_context: ContextFactory
) -> None:
    error = _failure(settings_for(closed_port, ca_file), _welcome(), make_context)
    assert not error.permanent
    assert f"127.0.0.1:{closed_port}" in str(error)


def test_a_server_that_never_answers_times_out_as_transient(
    silent_port: int, ca_file: Path, settings_for: SettingsFor, make_context: ContextFactory
) -> None:
    error = _failure(
        settings_for(silent_port, ca_file, smtp_timeout_s=0.3), _welcome(), make_context
    )
    assert not error.permanent
    assert "timed out" in str(error)


def test_a_subject_injected_through_a_template_variable_sends_nothing(
    smtp_server: SmtpServer, ca_file: Path, settings_for: SettingsFor, make_context: ContextFactory
) -> None:
    task = _welcome(variables={"name": "Ana\r\nBcc: victim@example.com", "login_url": "https://x"})
    error = _failure(settings_for(smtp_server, ca_file), task, make_context)
    assert error.permanent and "header injection" in str(error)
    assert smtp_server.received == []
