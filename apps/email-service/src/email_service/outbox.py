"""The outbox transport: messages become ``.eml`` files in a folder instead of being sent.

It is the default when no SMTP server is configured, so the service runs on a laptop with
nothing else installed. Files are written atomically (a temporary file renamed into place)
and named after the Message-ID token, which derives from the task id: a redelivered task
overwrites its own file instead of adding a second one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from email import policy
from email.message import EmailMessage
from pathlib import Path

from worker_framework import WorkerError

from email_service.transport import Delivery, TransportSession


def _file_name(message: EmailMessage) -> str:
    message_id = str(message["Message-ID"])
    return message_id.strip("<>").partition("@")[0] + ".eml"


class OutboxSession:
    """Writes each message to ``<folder>/<task token>.eml``."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder

    def send(self, message: EmailMessage, sender: str, recipients: list[str]) -> Delivery:
        """Write the message as it would go over SMTP (CRLF line ends) and return its path."""
        target = self._folder / _file_name(message)
        data = message.as_bytes(policy=policy.SMTP)
        try:
            handle, temporary = tempfile.mkstemp(dir=self._folder, prefix=".", suffix=".eml.tmp")
            try:
                with os.fdopen(handle, "wb") as stream:
                    stream.write(data)
                    stream.flush()
                    os.fsync(stream.fileno())
                os.replace(temporary, target)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        except OSError as error:
            # A full disk or a permission problem may be fixed without touching the task.
            raise WorkerError(f"cannot write {target}: {error}", permanent=False) from error
        return Delivery(transport="outbox", accepted=list(recipients), path=str(target))


class OutboxTransport:
    """Delivers into a folder; see the module docstring."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder.resolve()

    def describe(self) -> str:
        """Where the files go."""
        return f"outbox folder {self.folder} (SMTP_HOST is not set)"

    @contextmanager
    def connect(self) -> Iterator[TransportSession]:
        """Make sure the folder exists and hand out a session writing into it."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise WorkerError(f"cannot create outbox folder {self.folder}: {error}") from error
        yield OutboxSession(self.folder)
