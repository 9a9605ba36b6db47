"""The email worker: render, compose, connect, send."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from loguru import logger
from worker_framework import BaseWorker, TaskContext, WorkerError, WorkerSettings

from email_service.message import compose, content_of
from email_service.settings import EmailSettings
from email_service.task import EmailResult, EmailTask
from email_service.templates import TemplateRenderer
from email_service.transport import Delivery


class EmailWorker(BaseWorker[EmailTask, EmailResult]):
    """Sends one email per task, through SMTP or into the outbox folder.

    Progress steps: ``rendering`` (template or body; the framework reports it as the
    initial step), ``connecting`` (to the server, or preparing the outbox), ``sending``,
    ``done``. Errors are ``WorkerError``s whose
    ``permanent`` flag follows :mod:`email_service.smtp_transport`; invalid tasks never get
    here (the framework dead-letters them).
    """

    default_queue: ClassVar[str] = "email-service"
    #: Shown in the ``worker_build_info`` metric; the images are tagged with it too.
    version: ClassVar[str] = "0.1.0"
    settings: EmailSettings

    def __init__(self, settings: WorkerSettings) -> None:
        super().__init__(settings)
        self._sender = self.settings.sender()
        self._renderer = TemplateRenderer()
        self._transport = self.settings.transport()

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

        earlier = EarlierAttempts.from_state(ctx.state, task.envelope_recipients())
        recipients = earlier.remaining(task.envelope_recipients())
        if not recipients:
            # Every recipient was settled by earlier attempts: nothing left to send.
            return self._result(message_id, "smtp", earlier, None)
        ctx.progress(25, "connecting")
        with self._transport.connect() as session:
            ctx.progress(50, "sending")
            delivery = session.send(message, self._sender.address, recipients)
        done = earlier.after(delivery)
        deferred = {rcpt: reply for rcpt, reply in delivery.refused.items() if reply[:1] == "4"}
        if deferred:
            # Only these are retried: the retry reads ctx.state and skips everyone else.
            ctx.state = done.as_state()
            raise WorkerError(
                f"{len(deferred)} recipient(s) deferred by the server, retried later (the "
                f"{len(done.accepted)} accepted are not sent again): {deferred}",
                permanent=False,
            )
        ctx.progress(100, "done")

        ctx.logger.info(
            "sent {} via {} to {} recipient(s), {} refused",
            message_id,
            delivery.transport,
            len(done.accepted),
            len(done.refused),
        )
        return self._result(message_id, delivery.transport, done, delivery.path)

    def _result(
        self,
        message_id: str,
        transport: Literal["smtp", "outbox"],
        done: EarlierAttempts,
        path: str | None,
    ) -> EmailResult:
        return EmailResult(
            message_id=message_id,
            transport=transport,
            accepted=done.accepted,
            refused=done.refused,
            path=path,
        )


@dataclass(frozen=True)
class EarlierAttempts:
    """Recipients earlier attempts of a task settled: accepted, or refused for good (5xx).

    Carried in ``ctx.state`` from an attempt that had recipients deferred (4xx) to its retry,
    so the retry sends to the deferred ones only. The state comes with the message, so only
    addresses the task itself lists are taken from it: it can narrow the recipients, never
    widen them.
    """

    accepted: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_state(cls, state: dict[str, Any], recipients: list[str]) -> EarlierAttempts:
        """Read what ``as_state`` wrote, keeping only addresses among ``recipients``."""
        listed = set(recipients)
        accepted = state.get("accepted")
        refused = state.get("refused")
        return cls(
            accepted=[r for r in accepted if r in listed] if isinstance(accepted, list) else [],
            refused=(
                {r: str(reply) for r, reply in refused.items() if r in listed}
                if isinstance(refused, dict)
                else {}
            ),
        )

    def remaining(self, recipients: list[str]) -> list[str]:
        """``recipients`` this attempt still has to send to, in order."""
        settled = set(self.accepted) | set(self.refused)
        return [rcpt for rcpt in recipients if rcpt not in settled]

    def after(self, delivery: Delivery) -> EarlierAttempts:
        """Earlier attempts plus ``delivery``'s accepted and permanently refused recipients."""
        permanent = {rcpt: reply for rcpt, reply in delivery.refused.items() if reply[:1] != "4"}
        return EarlierAttempts(
            accepted=self.accepted + delivery.accepted, refused={**self.refused, **permanent}
        )

    def as_state(self) -> dict[str, Any]:
        """What ``from_state`` reads back."""
        return {"accepted": self.accepted, "refused": self.refused}
