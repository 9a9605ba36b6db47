"""A real SMTP server for tests: aiosmtpd in a thread, on a free port of 127.0.0.1.

The fixtures in ``conftest.py`` start these; test modules import the types and constants.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from email_service.settings import EmailSettings

SMTP_USER = "mailer"
SMTP_PASSWORD = "s3cret-pa55"


@dataclass(frozen=True)
class ReceivedMessage:
    """One message as the SMTP server received it."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    tls: bool
    login: str | None


@dataclass
class RecordingHandler:
    """An aiosmtpd handler that stores messages, or answers with scripted replies.

    ``rcpt_replies`` maps a recipient to the reply its RCPT gets (e.g. ``"550 5.1.1 no such
    user"``); ``data_reply`` replaces every DATA acceptance (e.g. ``"451 4.3.0 try later"``);
    ``first_data_replies`` replace only the first DATA acceptances, one each, in order.
    ``greylisted`` recipients get ``450`` on their first RCPT and are accepted afterwards, as a
    greylisting server does.
    """

    rcpt_replies: dict[str, str] = field(default_factory=dict)
    greylisted: set[str] = field(default_factory=set)
    data_reply: str | None = None
    first_data_replies: list[str] = field(default_factory=list)
    received: list[ReceivedMessage] = field(default_factory=list)

    async def handle_RCPT(  # - aiosmtpd's hook name
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        reply = self.rcpt_replies.get(address)
        if reply is not None:
            return reply
        if address in self.greylisted:
            self.greylisted.discard(address)
            return "450 4.2.0 Greylisted, come back later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        if self.data_reply is not None:
            return self.data_reply
        if self.first_data_replies:
            return self.first_data_replies.pop(0)
        assert server.transport is not None
        login = (
            session.auth_data.login.decode()
            if isinstance(session.auth_data, LoginPassword)
            else None
        )
        self.received.append(
            ReceivedMessage(
                mail_from=str(envelope.mail_from),
                rcpt_tos=list(envelope.rcpt_tos),
                data=bytes(envelope.original_content or b""),
                tls=server.transport.get_extra_info("ssl_object") is not None,
                login=login,
            )
        )
        return "250 2.0.0 Message accepted for delivery"


def _authenticate(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    valid = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == SMTP_USER.encode()
        and auth_data.password == SMTP_PASSWORD.encode()
    )
    # handled=False: let aiosmtpd answer "535 ..." itself on failure.
    return AuthResult(success=valid, handled=False, auth_data=auth_data if valid else None)


class _BoundController(Controller):
    """aiosmtpd's threaded controller, serving on a socket bound to a free port up front."""

    def __init__(self, handler: RecordingHandler, **kwargs: Any) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        super().__init__(
            handler,
            hostname="127.0.0.1",
            port=self._socket.getsockname()[1],
            server_hostname="smtp.localhost",
            **kwargs,
        )

    def _create_server(self) -> Any:
        return self.loop.create_server(
            self._factory_invoker, sock=self._socket, ssl=self.ssl_context
        )


@dataclass
class SmtpServer:
    """A running test SMTP server: where it listens and what it received."""

    port: int
    handler: RecordingHandler

    @property
    def received(self) -> list[ReceivedMessage]:
        """Messages accepted so far."""
        return self.handler.received


def start_server(
    security: str, tls_context: ssl.SSLContext, **handler_options: Any
) -> tuple[Controller, SmtpServer]:
    """Start a server; the caller stops the returned controller.

    ``security``: ``"starttls"`` (STARTTLS required, AUTH required and offered only over
    TLS), ``"tls"`` (implicit TLS, AUTH required) or ``"none"`` (plain, no AUTH).
    ``handler_options`` configure the :class:`RecordingHandler`.
    """
    handler = RecordingHandler(**handler_options)
    options: dict[str, Any] = {}
    if security == "starttls":
        options = {
            "tls_context": tls_context,
            "require_starttls": True,
            "auth_required": True,
            "auth_require_tls": True,
            "authenticator": _authenticate,
        }
    elif security == "tls":
        options = {
            "ssl_context": tls_context,
            # The whole connection is TLS; aiosmtpd only recognises STARTTLS as such.
            "auth_require_tls": False,
            "auth_required": True,
            "authenticator": _authenticate,
        }
    controller = _BoundController(handler, **options)
    controller.start()
    return controller, SmtpServer(port=controller.port, handler=handler)


ServerFactory = Callable[..., SmtpServer]


def smtp_settings(server: SmtpServer | int, ca_file: Path, **overrides: Any) -> EmailSettings:
    """Settings pointing at a test server, logged in over STARTTLS unless overridden."""
    port = server.port if isinstance(server, SmtpServer) else server
    values: dict[str, Any] = {
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "smtp_security": "starttls",
        "smtp_username": SMTP_USER,
        "smtp_password": SMTP_PASSWORD,
        "smtp_ca_file": ca_file,
        "smtp_timeout_s": 5.0,
        "email_from": "Jupiter Accounts <accounts@jupiter.example.com>",
    }
    values.update(overrides)
    return EmailSettings(**values)
