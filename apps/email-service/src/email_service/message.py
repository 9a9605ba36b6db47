"""Turning a task and its rendered content into a MIME message."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime

from worker_framework import WorkerError

from email_service.addresses import Mailbox
from email_service.task import EmailTask
from email_service.templates import RenderedContent

#: Task ids made of these characters are used verbatim (in Message-IDs and outbox file
#: names); any other id is replaced by a digest, which is just as stable.
_PLAIN_TOKEN = re.compile(r"^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*$")

#: Long enough to stay readable in file names and headers.
_MAX_PLAIN_TOKEN_LENGTH = 128

#: Quoted-printable keeps every part 7-bit clean: relays without 8BITMIME take it as is.
_BODY_ENCODING = "quoted-printable"


def task_token(task_id: str) -> str:
    """A file-name- and Message-ID-safe token derived only from the task id.

    The same id always gives the same token, so a redelivered task produces the same
    Message-ID and overwrites the same outbox file.
    """
    if len(task_id) <= _MAX_PLAIN_TOKEN_LENGTH and _PLAIN_TOKEN.match(task_id):
        return task_id
    return "sha256-" + hashlib.sha256(task_id.encode("utf-8")).hexdigest()[:40]


def message_id_for(task_id: str, sender: Mailbox) -> str:
    """The Message-ID of the task's email, e.g. ``<task-42@example.com>``."""
    return f"<{task_token(task_id)}@{sender.domain}>"


def compose(
    task: EmailTask, content: RenderedContent, sender: Mailbox, now: datetime | None = None
) -> EmailMessage:
    """Build the message: headers, text and/or HTML alternatives, then attachments.

    Bcc recipients are deliberately absent from the headers: they are envelope-only.
    """
    subject = task.subject or content.subject
    if not subject:
        # The task model requires a subject with a direct body, so only a template without
        # subject.txt gets here: the task has to bring one.
        raise WorkerError(
            f"template {task.template!r} has no subject: give one in the task", permanent=True
        )

    message = EmailMessage()
    message["From"] = sender.header_address()
    message["To"] = [mailbox.header_address() for mailbox in task.to]
    if task.cc:
        message["Cc"] = [mailbox.header_address() for mailbox in task.cc]
    if task.reply_to:
        message["Reply-To"] = [mailbox.header_address() for mailbox in task.reply_to]
    message["Subject"] = subject
    message["Date"] = format_datetime(now or datetime.now(UTC))
    message["Message-ID"] = message_id_for(task.id, sender)
    # RFC 3834: tells auto-responders (vacation replies) not to answer.
    message["Auto-Submitted"] = "auto-generated"

    if content.text is not None:
        message.set_content(content.text, cte=_BODY_ENCODING)
        if content.html is not None:
            message.add_alternative(content.html, subtype="html", cte=_BODY_ENCODING)
    elif content.html is not None:
        message.set_content(content.html, subtype="html", cte=_BODY_ENCODING)

    for attachment in task.attachments:
        maintype, _, subtype = attachment.content_type.partition("/")
        message.add_attachment(
            attachment.data(), maintype=maintype, subtype=subtype, filename=attachment.name
        )
    return message


def content_of(task: EmailTask) -> RenderedContent:
    """The content of a task that carries its body directly (no template)."""
    return RenderedContent(subject=task.subject, text=task.text, html=task.html)
