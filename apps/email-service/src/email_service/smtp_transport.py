"""Delivery through an SMTP server with smtplib, and the classification of its failures.

One connection per task: a worker sends at the pace of its queue, and a fresh connection
never hands out a session the server has already timed out.

Classification (``WorkerError.permanent``): the server's 5xx replies, every recipient
refused, an unusable server setup (STARTTLS/AUTH unsupported, untrusted certificate) are
permanent: retrying the same task cannot succeed. 4xx replies, refused or dropped
connections, timeouts and name resolution failures are transient: the framework retries
them with backoff.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Literal

from worker_framework import WorkerError

from email_service.transport import Delivery, TransportSession

SmtpSecurity = Literal["none", "starttls", "tls"]

#: The usual port for each kind of connection security (RFC 8314, RFC 6409, RFC 5321).
DEFAULT_PORTS: dict[SmtpSecurity, int] = {"none": 25, "starttls": 587, "tls": 465}


@dataclass(frozen=True)
class SmtpConfig:
    """Where and how to connect; ``password`` is the plain secret, never logged."""

    host: str
    port: int
    security: SmtpSecurity
    timeout_s: float
    username: str | None = None
    password: str | None = None
    ssl_context: ssl.SSLContext | None = None


def _reply(code: int, text: bytes | str) -> str:
    message = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return f"{code} {message}".strip()


def _is_permanent_code(code: int) -> bool:
    return 500 <= code < 600


def classify(error: Exception, where: str) -> WorkerError:
    """Translate an smtplib/socket/ssl failure into a WorkerError with the right permanence.

    ``where`` says what was being done (e.g. ``"smtp.example.com:587"``) for the message.
    """
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        replies = {rcpt: _reply(code, text) for rcpt, (code, text) in error.recipients.items()}
        # Every recipient refused with a 4xx (greylisting, full mailbox) may pass later;
        # one 5xx among them means this exact message can never reach everyone.
        permanent = any(_is_permanent_code(code) for code, _ in error.recipients.values())
        return WorkerError(f"{where}: all recipients refused: {replies}", permanent=permanent)
    if isinstance(error, smtplib.SMTPResponseException):
        # SMTPSenderRefused, SMTPDataError, SMTPAuthenticationError, SMTPHeloError, ...
        return WorkerError(
            f"{where}: server replied {_reply(error.smtp_code, error.smtp_error)}",
            permanent=_is_permanent_code(error.smtp_code),
        )
    if isinstance(error, smtplib.SMTPNotSupportedError):
        return WorkerError(
            f"{where}: server does not support what the settings ask: {error}", permanent=True
        )
    if isinstance(error, ssl.SSLCertVerificationError):
        return WorkerError(
            f"{where}: server certificate not trusted ({error.verify_message}); "
            "set SMTP_CA_FILE or fix the server certificate",
            permanent=True,
        )
    if isinstance(error, TimeoutError):  # socket.timeout is an alias since 3.10
        return WorkerError(f"{where}: timed out ({error})", permanent=False)
    # Disconnects, refused connections, DNS failures, TLS handshake glitches: worth retrying.
    return WorkerError(f"{where}: {type(error).__name__}: {error}", permanent=False)


class SmtpSession:
    """A connected (and, if configured, secured and authenticated) SMTP client."""

    def __init__(self, client: smtplib.SMTP, where: str) -> None:
        self._client = client
        self._where = where

    def send(self, message: EmailMessage, sender: str, recipients: list[str]) -> Delivery:
        """Send one message; recipients the server refused while others passed are reported."""
        try:
            refused = self._client.send_message(message, from_addr=sender, to_addrs=recipients)
        except Exception as error:
            raise classify(error, self._where) from error
        refused_replies = {rcpt: _reply(code, text) for rcpt, (code, text) in refused.items()}
        accepted = [rcpt for rcpt in recipients if rcpt not in refused_replies]
        return Delivery(transport="smtp", accepted=accepted, refused=refused_replies)


class SmtpTransport:
    """Delivers through one SMTP server; see the module docstring for error handling."""

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self._where = f"SMTP {config.host}:{config.port}"

    def describe(self) -> str:
        """Server, security and user name: no password."""
        user = f" as {self.config.username}" if self.config.username else ""
        return f"SMTP server {self.config.host}:{self.config.port} ({self.config.security}){user}"

    def _context(self) -> ssl.SSLContext:
        return self.config.ssl_context or ssl.create_default_context()

    def _open(self) -> smtplib.SMTP:
        config = self.config
        if config.security == "tls":
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                config.host, config.port, timeout=config.timeout_s, context=self._context()
            )
        else:
            client = smtplib.SMTP(config.host, config.port, timeout=config.timeout_s)
        try:
            client.ehlo()
            if config.security == "starttls":
                client.starttls(context=self._context())
                client.ehlo()
            if config.username:
                client.login(config.username, config.password or "")
        except BaseException:
            client.close()
            raise
        return client

    @contextmanager
    def connect(self) -> Iterator[TransportSession]:
        """Connect, secure and log in; failures are classified WorkerErrors."""
        try:
            client = self._open()
        except Exception as error:
            raise classify(error, self._where) from error
        try:
            yield SmtpSession(client, self._where)
        finally:
            try:
                client.quit()
            except (smtplib.SMTPException, OSError):
                # The message is already settled; a failed goodbye changes nothing.
                client.close()
