"""The secrets a service is configured with are masked as exact strings in every log line."""

from __future__ import annotations

import io

from loguru import logger
from pydantic import SecretStr
from worker_framework.logging import configure_logging
from worker_framework.settings import WorkerSettings
from worker_framework.testing import worker_settings


class _SettingsWithPassword(WorkerSettings):
    smtp_password: SecretStr | None = None


def _configure(settings: WorkerSettings) -> io.StringIO:
    stream = io.StringIO()
    configure_logging(settings, stream=stream)
    return stream


def test_amqp_password_with_an_unencoded_slash_never_reaches_the_log():
    settings: WorkerSettings = worker_settings(
        amqp_url="amqp://guest:gu/est-pa55@127.0.0.1:5672/%2F"
    )
    try:
        stream = _configure(settings)
        logger.error("could not connect: password gu/est-pa55 refused")
        logger.error("broker {}", settings.amqp_url)
        assert "est-pa55" not in stream.getvalue()
    finally:
        configure_logging(worker_settings())


def test_an_apps_own_secret_setting_is_masked_when_printed_alone():
    settings = worker_settings(_SettingsWithPassword, smtp_password="smtp-s3cret-value")
    try:
        stream = _configure(settings)
        logger.warning("SMTP login failed for smtp-s3cret-value")
        assert "smtp-s3cret-value" not in stream.getvalue()
        assert "SMTP login failed for ***" in stream.getvalue()
    finally:
        configure_logging(worker_settings())
