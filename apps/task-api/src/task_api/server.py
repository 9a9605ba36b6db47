"""Starting task-api: settings, tokens, logging, the migrated store, the outbox and the server.

Imported by ``task_api.main`` only when the command serves, so that ``--help`` and a refused
setting do not pay for uvicorn, strawberry, graphql-core and the broker adapter.
"""

from __future__ import annotations

import ipaddress
import logging
import signal
import sys
from typing import NoReturn

import click
import uvicorn
from loguru import logger
from pydantic import ValidationError
from shared_utils.redaction import redact_url
from worker_framework.command_context import make_tracer
from worker_framework.errors import SettingsError
from worker_framework.logging import redact, register_secret, register_settings_secrets

from task_api.access import TokenConfigError, TokenTable
from task_api.http_app import GRAPHQL_PATH, RequestLimits, TaskApiApp
from task_api.metrics import TaskApiMetrics
from task_api.outbox import Outbox, OutboxTiming
from task_api.publisher import TaskPublisher
from task_api.schema import ApiContext, QueryLimits, build_schema
from task_api.settings import TaskApiSettings
from task_api.sql_store import open_store
from task_api.storage import TaskStore

#: Host names that only this machine can reach (besides loopback IP addresses).
_LOCAL_HOST_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


def load_settings() -> TaskApiSettings:
    """Read the settings; on a bad value print one line naming the variable and exit 2."""
    try:
        return TaskApiSettings()
    except ValidationError as error:
        first = error.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "?"
        is_amqp = field in ("amqp_url", "AMQP_URL")
        variable = "AMQP_URL" if is_amqp else f"TASK_API_{field.upper()}"
        # The input value is left out on purpose: it may be a secret (a token, a URL password).
        _refuse(f"invalid {variable}: {first['msg']}")


def load_tokens(settings: TaskApiSettings) -> TokenTable | None:
    """The token table; a malformed one, or none on a public address, exits 2 with one line."""
    try:
        tokens = settings.token_table()
    except TokenConfigError as error:
        variable = "TASK_API_TOKENS_FILE" if settings.tokens_file else "TASK_API_TOKENS"
        _refuse(f"invalid {variable}: {error}")
    if tokens is None and not is_loopback(settings.host) and not settings.allow_anonymous:
        _refuse(
            f"listening on {settings.host} without tokens: set TASK_API_TOKENS (or"
            " TASK_API_TOKENS_FILE), or TASK_API_ALLOW_ANONYMOUS=true to let anyone in"
        )
    return tokens


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only."""
    if host.lower() in _LOCAL_HOST_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _refuse(line: str) -> NoReturn:
    click.echo(f"task-api: {line}", err=True)
    sys.exit(2)


class _ToLoguru(logging.Handler):
    """Sends standard-library records (uvicorn's) through the same redacting sink."""

    def emit(self, record: logging.LogRecord) -> None:
        logger.opt(exception=record.exc_info).log(record.levelname, record.getMessage())


def _write_redacted(message: object) -> None:
    # sys.stderr looked up per line: test runners swap it.
    sys.stderr.write(redact(str(message)))


def configure_logging(settings: TaskApiSettings, tokens: TokenTable | None) -> None:
    """Log through the framework's redaction: URL passwords and tokens never get printed."""
    register_settings_secrets(settings)
    for token in tokens.grants_by_token if tokens is not None else ():
        register_secret(token)
    logger.remove()
    # diagnose off: loguru would print every variable of a traceback, database URL included.
    logger.add(
        _write_redacted,
        level=settings.log_level.upper(),
        diagnose=False,
        backtrace=False,
    )
    logging.basicConfig(handlers=[_ToLoguru()], level=logging.INFO, force=True)
    # pika logs every connection hiccup with a traceback; the publisher's lines say what matters.
    logging.getLogger("pika").setLevel(logging.CRITICAL)


def _warn_about_access(tokens: TokenTable | None) -> None:
    if tokens is None:
        logger.warning("TASK_API_TOKENS is not set: the API is open to anyone who can reach it")
    elif tokens.legacy:
        logger.warning(
            "TASK_API_TOKENS is a plain list: every token may report, submit to any queue and"
            " read payloads; give each token its scopes (a JSON object of token -> scopes)"
        )


def _open_migrated_store(settings: TaskApiSettings) -> TaskStore:
    """The store of ``TASK_API_DATABASE_URL``, migrated; exit 1 with one line when it cannot be."""
    store = open_store(settings.database_url)
    try:
        store.migrate()
    except Exception as error:  # noqa: BLE001 - any driver error means the same: cannot start
        click.echo(
            redact(
                f"task-api: cannot open the database TASK_API_DATABASE_URL="
                f"{redact_url(settings.database_url)}: {type(error).__name__}: {error}"
            ),
            err=True,
        )
        sys.exit(1)
    return store


def _build_app(
    settings: TaskApiSettings,
    tokens: TokenTable | None,
    context: ApiContext,
    metrics: TaskApiMetrics,
) -> TaskApiApp:
    """The ASGI application: the schema with the query limits, and the request limits."""
    schema, documents = build_schema(
        QueryLimits(
            max_depth=settings.max_depth,
            max_aliases=settings.max_aliases,
            max_tokens=settings.max_tokens,
            document_cache_bytes=settings.document_cache_bytes,
        )
    )
    return TaskApiApp(
        context,
        schema=schema,
        documents=documents,
        tokens=tokens,
        limits=RequestLimits(
            max_body_bytes=settings.max_body_bytes,
            max_query_bytes=settings.max_query_bytes,
            max_json_depth=settings.max_json_depth,
        ),
        metrics=metrics,
        metrics_public=settings.metrics_public,
    )


def serve() -> None:
    """Serve until SIGTERM/SIGINT; a bad setting or an unreachable database exits with one line."""
    settings = load_settings()
    tokens = load_tokens(settings)
    configure_logging(settings, tokens)
    store = _open_migrated_store(settings)
    metrics = TaskApiMetrics()
    publisher = TaskPublisher(
        settings.amqp_urls(),
        connection_name=f"task-api@{settings.host}:{settings.port}",
    )
    # Spans only with OTEL_EXPORTER_OTLP_ENDPOINT set; else no OpenTelemetry module loads.
    try:
        tracer = make_tracer("task-api")
    except SettingsError as error:
        _refuse(str(error))
    outbox = Outbox(
        store,
        publisher,
        OutboxTiming(lease_s=settings.outbox_lease_s, sweep_s=settings.outbox_sweep_s),
        metrics,
        tracer,
    )
    _warn_about_access(tokens)
    app = _build_app(settings, tokens, ApiContext(store=store, outbox=outbox), metrics)
    logger.info(
        "task-api serving http://{}:{}{} with {} storage",
        settings.host,
        settings.port,
        GRAPHQL_PATH,
        redact_url(settings.database_url),
    )
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then raises the signal again under the
    # handler found at start: this one turns that into exit status 0, as for the workers.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _exit_cleanly)
    outbox.start()
    try:
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level.lower(),
            # One line per request would dominate the log (and the CPU) under worker load.
            access_log=False,
            h11_max_incomplete_event_size=settings.max_body_bytes,
            # Logging is configured above: uvicorn's records go through the redacting sink.
            log_config=None,
        )
    finally:
        outbox.stop()
        tracer.shutdown()
        publisher.close()
        store.close()


def _exit_cleanly(_signum: int, _frame: object) -> None:
    sys.exit(0)
