"""The seam between composing a message and delivering it.

A transport opens a session (``connect``), and the session sends messages. The worker
reports "connecting" and "sending" around those two calls, and never needs to know whether
the message went to an SMTP server or into the outbox folder.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Literal, Protocol


@dataclass(frozen=True)
class Delivery:
    """What the transport did with one message."""

    transport: Literal["smtp", "outbox"]
    accepted: list[str]
    refused: dict[str, str] = field(default_factory=dict)
    path: str | None = None


class TransportSession(Protocol):
    """An open connection (or folder) that takes messages."""

    def send(self, message: EmailMessage, sender: str, recipients: list[str]) -> Delivery:
        """Deliver ``message`` from envelope ``sender`` to envelope ``recipients``."""
        ...


class Transport(Protocol):
    """Somewhere messages can be delivered."""

    def describe(self) -> str:
        """A one-line, secret-free description for the startup log."""
        ...

    def connect(self) -> AbstractContextManager[TransportSession]:
        """Open a session; leaving the context closes it."""
        ...
