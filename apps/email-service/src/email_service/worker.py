"""The email worker: render, compose, connect, send."""

from __future__ import annotations

from typing import ClassVar

from loguru import logger
from worker_framework import BaseWorker, TaskContext, WorkerSettings

from email_service.message import compose, content_of
from email_service.settings import EmailSettings
from email_service.task import EmailResult, EmailTask
from email_service.templates import TemplateRenderer


class EmailWorker(BaseWorker[EmailTask, EmailResult]):
    """Sends one email per task, through SMTP or into the outbox folder.

    Progress steps: ``rendering`` (template or body; the framework reports it as the
    initial step), ``connecting`` (to the server, or preparing the outbox), ``sending``,
    ``done``. Errors are ``WorkerError``s whose
    ``permanent`` flag follows :mod:`email_service.smtp_transport`; invalid tasks never get
    here (the framework dead-letters them).
    """

    default_queue: ClassVar[str] = "email-service"
    settings_model: ClassVar[type[WorkerSettings]] = EmailSettings

    def __init__(self, settings: WorkerSettings) -> None:
        super().__init__(settings)
        if not isinstance(settings, EmailSettings):
            raise TypeError(f"EmailWorker needs EmailSettings, got {type(settings).__name__}")
        self.email_settings = settings
        self._sender = settings.sender()
        self._renderer = TemplateRenderer()
        self._transport = settings.transport()

    def worker_type(self) -> str:
        """Shown in logs and progress updates."""
        return "email"

    def initialize(self) -> None:
        """Say where mail goes; connections are opened per task."""
        logger.info(
            "email-service delivers via {} from {}", self._transport.describe(), self._sender
        )

    def initial_step(self, task: EmailTask) -> str:
        """The first thing a task does is render its content."""
        return "rendering"

    def execute_task(self, task: EmailTask, ctx: TaskContext) -> EmailResult:
        """Render the content, compose the message and deliver it."""
        # No progress call for "rendering": the framework reports initial_step() as the task starts.
        if task.template is not None:
            content = self._renderer.render(task.template, task.variables)
        else:
            content = content_of(task)
        message = compose(task, content, self._sender)
        message_id = str(message["Message-ID"])
        if ctx.redelivered:
            # Delivery may have happened before the crash; the stable Message-ID lets
            # receiving systems recognise the duplicate.
            ctx.logger.warning("redelivered task: re-sending as {}", message_id)

        ctx.progress(25, "connecting")
        with self._transport.connect() as session:
            ctx.progress(50, "sending")
            delivery = session.send(message, self._sender.address, task.envelope_recipients())
        ctx.progress(100, "done")

        ctx.logger.info(
            "sent {} via {} to {} recipient(s), {} refused",
            message_id,
            delivery.transport,
            len(delivery.accepted),
            len(delivery.refused),
        )
        return EmailResult(
            message_id=message_id,
            transport=delivery.transport,
            accepted=delivery.accepted,
            refused=delivery.refused,
            path=delivery.path,
        )
