"""Settings of the email service: the framework's, plus SMTP and the outbox.

Each field is read from the environment variable of the same name in upper case
(``smtp_host`` <- ``SMTP_HOST``). With no ``SMTP_HOST`` the service writes ``.eml`` files to
``EMAIL_OUTBOX_DIR`` instead of sending, so it runs with nothing else installed.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from pydantic import Field, FilePath, SecretStr, ValidationError, field_validator, model_validator
from worker_framework import WorkerSettings

from email_service.addresses import Mailbox
from email_service.outbox import OutboxTransport
from email_service.smtp_transport import DEFAULT_PORTS, SmtpConfig, SmtpSecurity, SmtpTransport
from email_service.transport import Transport


class EmailSettings(WorkerSettings):
    """Configuration of the email worker (see the README's settings table)."""

    smtp_host: str | None = Field(default=None, description="SMTP server; unset -> outbox mode")
    smtp_port: int | None = Field(
        default=None, ge=1, le=65535, description="default 25 / 587 / 465 by SMTP_SECURITY"
    )
    smtp_username: str | None = Field(default=None, description="log in when set")
    smtp_password: SecretStr | None = Field(default=None, description="required with a username")
    smtp_security: SmtpSecurity = Field(
        default="starttls",
        description="none, starttls (upgrade after connecting) or tls (implicit)",
    )
    smtp_timeout_s: float = Field(default=30.0, gt=0, description="per network operation")
    smtp_ca_file: FilePath | None = Field(
        default=None, description="PEM CA bundle trusted for the server certificate"
    )
    email_from: str = Field(
        default="Jupiter <no-reply@example.com>", description="sender of every message"
    )
    email_outbox_dir: Path = Field(default=Path("outbox"), description="outbox mode folder")

    @field_validator("smtp_host", "smtp_username", "smtp_password", mode="before")
    @classmethod
    def _empty_means_unset(cls, value: Any) -> Any:
        # `SMTP_HOST=` in a compose file or .env means "not set", not "a host named ''".
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("email_from")
    @classmethod
    def _email_from_is_a_mailbox(cls, value: str) -> str:
        try:
            return str(Mailbox.model_validate(value))
        except ValidationError as error:
            # Only the reason: a nested ValidationError would print as several lines.
            raise ValueError(error.errors()[0]["msg"]) from None

    @model_validator(mode="after")
    def _credentials_come_in_pairs(self) -> EmailSettings:
        if self.smtp_username and self.smtp_password is None:
            raise ValueError("SMTP_PASSWORD is required when SMTP_USERNAME is set")
        return self

    def sender(self) -> Mailbox:
        """``EMAIL_FROM`` as a mailbox."""
        return Mailbox.model_validate(self.email_from)

    def transport(self) -> Transport:
        """The SMTP transport when ``SMTP_HOST`` is set, else the outbox."""
        if self.smtp_host is None:
            return OutboxTransport(self.email_outbox_dir)
        context: ssl.SSLContext | None = None
        if self.smtp_ca_file is not None:
            context = ssl.create_default_context(cafile=str(self.smtp_ca_file))
        return SmtpTransport(
            SmtpConfig(
                host=self.smtp_host,
                port=self.smtp_port or DEFAULT_PORTS[self.smtp_security],
                security=self.smtp_security,
                timeout_s=self.smtp_timeout_s,
                username=self.smtp_username,
                password=self.smtp_password.get_secret_value() if self.smtp_password else None,
                ssl_context=context,
            )
        )
