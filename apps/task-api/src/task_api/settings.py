"""Settings of task-api, read from the environment with pydantic-settings."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from worker_framework.settings import normalize_amqp_urls

#: Big enough for a task payload or a result of a few hundred kilobytes, small enough that a
#: misbehaving client cannot make the server buffer arbitrary amounts of memory.
DEFAULT_MAX_BODY_BYTES = 1024 * 1024


class TaskApiSettings(BaseSettings):
    """Configuration of the task-api process.

    Every field maps to an upper-case environment variable with the ``TASK_API_`` prefix,
    except ``amqp_url`` which shares the workers' ``AMQP_URL``.
    """

    model_config = SettingsConfigDict(env_prefix="TASK_API_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=4000, ge=0, le=65535)
    #: ``sqlite:///tasks.db`` (relative to the working directory), ``sqlite:////abs/path.db``
    #: or ``postgresql://user@host:5432/db``.
    database_url: str = "sqlite:///tasks.db"
    #: Comma-separated bearer tokens; empty means the API is open (a warning is logged).
    tokens: SecretStr | None = None
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1024)
    amqp_url: SecretStr = Field(
        default=SecretStr("amqp://guest:guest@localhost:5672/%2F"),
        validation_alias="AMQP_URL",
    )
    log_level: str = "INFO"

    @field_validator("amqp_url")
    @classmethod
    def _amqp_urls_only(cls, value: SecretStr) -> SecretStr:
        # The workers' rule for the same variable.
        return SecretStr(normalize_amqp_urls(value.get_secret_value()))

    @field_validator("database_url")
    @classmethod
    def _known_database_scheme(cls, value: str) -> str:
        if not value.startswith(("sqlite://", "postgresql://", "postgres://")):
            raise ValueError("must start with sqlite:// or postgresql://")
        return value

    def amqp_urls(self) -> list[str]:
        """The RabbitMQ nodes of ``AMQP_URL`` to try, in order."""
        return self.amqp_url.get_secret_value().split(",")

    def token_list(self) -> list[str]:
        """The accepted bearer tokens (empty when authentication is off)."""
        if self.tokens is None:
            return []
        return [t.strip() for t in self.tokens.get_secret_value().split(",") if t.strip()]
