"""Entry point: ``task-api`` serves the GraphQL API on TASK_API_HOST:TASK_API_PORT."""

from __future__ import annotations

import signal
import sys

import click
import uvicorn
from loguru import logger
from pydantic import ValidationError
from shared_utils.redaction import redact_url

from task_api.http_app import GRAPHQL_PATH, TaskApiApp
from task_api.publisher import TaskPublisher
from task_api.schema import ApiContext
from task_api.settings import TaskApiSettings
from task_api.storage import open_store


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
        click.echo(f"task-api: invalid {variable}: {first['msg']}", err=True)
        sys.exit(2)


@click.command(
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="Settings come from the environment: TASK_API_HOST, TASK_API_PORT,"
    " TASK_API_DATABASE_URL, TASK_API_TOKENS, TASK_API_MAX_BODY_BYTES, TASK_API_LOG_LEVEL,"
    " AMQP_URL.",
)
def cli() -> None:
    """Serve the task progress GraphQL API (POST /graphql) and the task page (GET /)."""
    settings = load_settings()
    logger.remove()
    # diagnose off: loguru would print every variable of a traceback, database URL included.
    logger.add(sys.stderr, level=settings.log_level.upper(), diagnose=False, backtrace=False)
    store = open_store(settings.database_url)
    try:
        store.migrate()
    except Exception as error:  # noqa: BLE001 - any driver error means the same: cannot start
        click.echo(
            f"task-api: cannot open the database TASK_API_DATABASE_URL="
            f"{redact_url(settings.database_url)}: {type(error).__name__}: {error}",
            err=True,
        )
        sys.exit(1)
    publisher = TaskPublisher(
        settings.amqp_urls(),
        connection_name=f"task-api@{settings.host}:{settings.port}",
    )
    tokens = settings.token_list()
    if not tokens:
        logger.warning("TASK_API_TOKENS is not set: the API is open to anyone who can reach it")
    app = TaskApiApp(
        ApiContext(store=store, publisher=publisher),
        tokens=tokens,
        max_body_bytes=settings.max_body_bytes,
    )
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
    try:
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level.lower(),
            # One line per request would dominate the log (and the CPU) under worker load.
            access_log=False,
            h11_max_incomplete_event_size=settings.max_body_bytes,
        )
    finally:
        publisher.close()
        store.close()


def _exit_cleanly(_signum: int, _frame: object) -> None:
    sys.exit(0)


def main() -> None:
    """Console entry point (the pex_binary's ``task_api.main:main``)."""
    cli()


if __name__ == "__main__":
    main()
