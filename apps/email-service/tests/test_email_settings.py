"""EmailSettings: defaults, the transport they select, and refusing bad values at start."""

from __future__ import annotations

from pathlib import Path

import pytest
from email_service.outbox import OutboxTransport
from email_service.settings import EmailSettings
from email_service.smtp_transport import SmtpTransport
from pydantic import SecretStr
from worker_framework.errors import SettingsError
from worker_framework.testing import worker_settings


def test_without_smtp_host_the_transport_is_the_outbox_in_the_current_folder() -> None:
    transport = EmailSettings().transport()
    assert isinstance(transport, OutboxTransport)
    assert transport.folder == Path("outbox").resolve()


def test_an_empty_smtp_host_means_outbox_mode() -> None:
    assert isinstance(EmailSettings(smtp_host="  ").transport(), OutboxTransport)


def test_the_default_port_follows_the_security_mode() -> None:
    ports = {}
    for security in ("none", "starttls", "tls"):
        transport = EmailSettings(smtp_host="mail.example.com", smtp_security=security).transport()
        assert isinstance(transport, SmtpTransport)
        ports[security] = transport.config.port
    assert ports == {"none": 25, "starttls": 587, "tls": 465}


def test_an_explicit_port_wins() -> None:
    transport = EmailSettings(smtp_host="mail.example.com", smtp_port=2525).transport()
    assert isinstance(transport, SmtpTransport) and transport.config.port == 2525


def test_the_transport_description_never_shows_the_password() -> None:
    settings = EmailSettings(
        smtp_host="mail.example.com",
        smtp_username="mailer",
        smtp_password=SecretStr("hunter2-secret"),
    )
    assert "hunter2-secret" not in settings.transport().describe()
    assert "hunter2-secret" not in repr(settings)


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"smtp_security": "ssl"}, "SMTP_SECURITY"),
        ({"smtp_port": 70000}, "SMTP_PORT"),
        ({"smtp_timeout_s": 0}, "SMTP_TIMEOUT_S"),
        ({"email_from": "not an address"}, "EMAIL_FROM"),
        ({"email_from": "Evil\r\nBcc: x@example.com <a@example.com>"}, "EMAIL_FROM"),
        ({"smtp_ca_file": "/nonexistent/ca.pem"}, "SMTP_CA_FILE"),
    ],
)
def test_an_invalid_value_is_refused_naming_the_variable(
    overrides: dict[str, object], variable: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        worker_settings(EmailSettings, **overrides)
    assert caught.value.variable == variable


def test_a_username_needs_a_password() -> None:
    with pytest.raises(SettingsError) as caught:
        worker_settings(EmailSettings, smtp_host="mail.example.com", smtp_username="mailer")
    assert "SMTP_PASSWORD is required" in str(caught.value)


def test_email_from_is_normalised_and_gives_the_message_id_domain() -> None:
    settings = EmailSettings(email_from="Jupiter <No-Reply@Jupiter.EXAMPLE.com>")
    assert settings.email_from == "Jupiter <No-Reply@jupiter.example.com>"
    assert settings.sender().domain == "jupiter.example.com"
