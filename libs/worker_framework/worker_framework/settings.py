"""Worker configuration, read from environment variables with pydantic-settings.

Every field's environment variable is its name in upper case, without prefix
(``worker_prefetch`` <- ``WORKER_PREFETCH``). Apps subclass :class:`WorkerSettings` to add their
own fields. :func:`load_settings` turns a validation failure into a :class:`SettingsError` that
names the variable, which the CLI prints as one line before exiting with status 2.
"""

from __future__ import annotations

from typing import Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker_framework.errors import SettingsError

#: Below RabbitMQ's default ``consumer_timeout`` (30 min): a delivery held longer than that gets
#: its channel closed by the broker, so the framework gives up on a task (and retries it) first.
#: Counted from delivery, as the broker counts: a running task is abandoned at the limit, and a
#: prefetched delivery still waiting for a thread at half the limit is requeued unstarted.
DEFAULT_TASK_TIMEOUT_S = 25 * 60

#: Threads of tasks abandoned at the time limit that may still be running before the worker
#: exits for a restart: each holds memory and maybe a connection, and Python cannot stop them.
DEFAULT_MAX_ABANDONED_THREADS = 5

#: A worker whose I/O loop has not turned for this long fails its liveness probe. The loop turns
#: at least every 0.2 s, and a reconnect attempt (every node of ``AMQP_URL``, each with pika's
#: socket timeouts) blocks it for tens of seconds at worst: a minute means really stuck.
DEFAULT_LIVENESS_TIMEOUT_S = 60.0

LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")

SettingsT = TypeVar("SettingsT", bound="WorkerSettings")


class WorkerSettings(BaseSettings):
    """Settings every worker shares; see the table in the framework README."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)

    amqp_url: str = "amqp://guest:guest@localhost:5672/%2F"
    worker_queue: str | None = None
    worker_prefetch: int = Field(default=10, ge=1, le=65535)
    worker_concurrency: int = Field(default=1, ge=1, le=1000)
    worker_max_retries: int = Field(default=5, ge=0)
    worker_initial_delay_ms: int = Field(default=1000, ge=1)
    worker_backoff_factor: float = Field(default=2.0, ge=1.0)
    worker_max_delay_ms: int = Field(default=3_600_000, ge=1)
    worker_queue_type: Literal["classic", "quorum"] = "classic"
    worker_heartbeat_s: int = Field(default=60, ge=1)
    worker_shutdown_grace_s: float = Field(default=30, ge=0)
    worker_task_timeout_s: float = Field(default=DEFAULT_TASK_TIMEOUT_S, gt=0)
    worker_max_abandoned_threads: int = Field(default=DEFAULT_MAX_ABANDONED_THREADS, ge=0)
    #: Metrics and health endpoints are off unless a port is given: a port is a deployment
    #: decision (two workers on one host would fight over a fixed one), see docs/observability.md.
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    worker_metrics_host: str = "0.0.0.0"  # noqa: S104 - scraped from other hosts by design
    worker_liveness_timeout_s: float = Field(default=DEFAULT_LIVENESS_TIMEOUT_S, gt=0)
    graphql_url: str | None = None
    graphql_token: SecretStr | None = None
    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"

    @field_validator("amqp_url")
    @classmethod
    def _check_amqp_urls(cls, value: str) -> str:
        return normalize_amqp_urls(value)

    @field_validator("graphql_url")
    @classmethod
    def _check_graphql_url(cls, value: str | None) -> str | None:
        # Blank means unset (e.g. ``GRAPHQL_URL=`` in a compose file). Never echo the value.
        if value is None or not value.strip():
            return None
        url = value.strip()
        if not url.lower().startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        try:
            urlsplit(url).port  # noqa: B018 - reading the port is what validates it
        except ValueError:
            raise ValueError("has an invalid port") from None
        return url

    @field_validator("worker_metrics_port", mode="before")
    @classmethod
    def _blank_port_is_unset(cls, value: object) -> object:
        # Blank means unset, as for GRAPHQL_URL (``WORKER_METRICS_PORT=`` in a compose file).
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("worker_metrics_host")
    @classmethod
    def _check_metrics_host(cls, value: str) -> str:
        host = value.strip()
        if not host or any(character.isspace() for character in host):
            raise ValueError("must be an address or host name to listen on, e.g. 0.0.0.0")
        return host

    @field_validator("worker_queue")
    @classmethod
    def _check_queue(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}")
        return level

    def amqp_urls(self) -> list[str]:
        """The broker nodes to try, in order."""
        return self.amqp_url.split(",")


def normalize_amqp_urls(value: str) -> str:
    """``AMQP_URL`` as one or more comma-separated amqp(s):// URLs, blanks removed.

    Raises ValueError otherwise; the message never echoes the value (it may hold a password).
    Shared by every service that reads ``AMQP_URL``.
    """
    urls = [part.strip() for part in value.split(",") if part.strip()]
    if not urls:
        raise ValueError("expected one or more comma-separated amqp:// or amqps:// URLs")
    if not all(url.startswith(("amqp://", "amqps://")) for url in urls):
        raise ValueError("every comma-separated URL must start with amqp:// or amqps://")
    return ",".join(urls)


def load_settings(model: type[SettingsT], **overrides: object) -> SettingsT:
    """Read ``model`` from the environment; keyword overrides win over the environment.

    Raises :class:`SettingsError` naming the first invalid variable.
    """
    try:
        return model(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        first = error.errors(include_input=False, include_url=False)[0]
        variable = str(first["loc"][0]).upper() if first["loc"] else "settings"
        raise SettingsError(variable, str(first["msg"])) from None
