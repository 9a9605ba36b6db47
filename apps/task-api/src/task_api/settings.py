"""Settings of task-api, read from the environment with pydantic-settings."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from worker_framework.settings import normalize_amqp_urls

from task_api.access import TokenConfigError, TokenTable, parse_tokens

#: Big enough for a task payload or a result of a few hundred kilobytes, small enough that a
#: misbehaving client cannot make the server buffer arbitrary amounts of memory.
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
#: A worker's batch of 256 reports is a 23 KB document; a person's query is far smaller.
DEFAULT_MAX_QUERY_BYTES = 64 * 1024
#: The deepest query task-api's schema needs is 5 levels (tasks/edges/node/history/field).
DEFAULT_MAX_DEPTH = 10
#: A worker's batch carries one alias per report (256 by default).
DEFAULT_MAX_ALIASES = 512
#: A worker's batch of 256 reports is about 4,900 tokens.
DEFAULT_MAX_TOKENS = 10_000
#: Task payloads and results are documents, not trees of arbitrary depth; Python's own
#: recursion limit (1,000) must stay far away for every layer that walks them.
DEFAULT_MAX_JSON_DEPTH = 64
#: Estimated memory of the cached parsed documents and validation results together.
DEFAULT_DOCUMENT_CACHE_BYTES = 32 * 1024 * 1024


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
    #: JSON object of token -> scopes (or, legacy, comma-separated tokens with every scope).
    tokens: SecretStr | None = None
    #: A file holding the same JSON object, instead of ``tokens``.
    tokens_file: Path | None = None
    #: Without tokens, listening on anything but loopback needs this set on purpose.
    allow_anonymous: bool = False
    #: ``GET /metrics`` without a token, for a Prometheus that cannot send one. The metrics
    #: hold counts only (no task ids, queues or tokens); keep the port off the internet.
    metrics_public: bool = False
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1024)
    max_query_bytes: int = Field(default=DEFAULT_MAX_QUERY_BYTES, ge=256)
    max_depth: int = Field(default=DEFAULT_MAX_DEPTH, ge=2, le=100)
    max_aliases: int = Field(default=DEFAULT_MAX_ALIASES, ge=0)
    max_tokens: int = Field(default=DEFAULT_MAX_TOKENS, ge=100)
    max_json_depth: int = Field(default=DEFAULT_MAX_JSON_DEPTH, ge=2, le=200)
    document_cache_bytes: int = Field(default=DEFAULT_DOCUMENT_CACHE_BYTES, ge=0)
    #: Seconds between two sweeps of the outbox (tasks recorded but not yet published).
    outbox_sweep_s: float = Field(default=10.0, gt=0)
    #: How long a publisher holds a task before another may publish it (above the time a
    #: publish can take: connecting to every node of AMQP_URL, then the broker's confirm).
    outbox_lease_s: float = Field(default=60.0, gt=0)
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

    def token_table(self) -> TokenTable | None:
        """The accepted tokens and their scopes; None when the API runs without tokens.

        Raises :class:`TokenConfigError` when malformed, both variables are set, or the file
        cannot be read.
        """
        text = self.tokens.get_secret_value() if self.tokens is not None else ""
        if self.tokens_file is not None:
            if text.strip():
                raise TokenConfigError("set TASK_API_TOKENS or TASK_API_TOKENS_FILE, not both")
            try:
                text = self.tokens_file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as error:
                raise TokenConfigError(
                    f"cannot read the file: {error.__class__.__name__}"
                ) from None
            if not text.strip():
                raise TokenConfigError("the file is empty")
        return parse_tokens(text) if text.strip() else None
