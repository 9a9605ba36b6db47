"""Entry point: ``task-api`` serves the GraphQL API on TASK_API_HOST:TASK_API_PORT."""

from __future__ import annotations

import click


@click.command(
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="Settings come from the environment: TASK_API_HOST, TASK_API_PORT,"
    " TASK_API_DATABASE_URL, TASK_API_TOKENS or TASK_API_TOKENS_FILE,"
    " TASK_API_ALLOW_ANONYMOUS, TASK_API_METRICS_PUBLIC, TASK_API_MAX_BODY_BYTES,"
    " TASK_API_MAX_QUERY_BYTES, TASK_API_MAX_DEPTH, TASK_API_MAX_ALIASES, TASK_API_MAX_TOKENS,"
    " TASK_API_MAX_JSON_DEPTH,"
    " TASK_API_DOCUMENT_CACHE_BYTES, TASK_API_OUTBOX_SWEEP_S, TASK_API_OUTBOX_LEASE_S,"
    " TASK_API_LOG_LEVEL, AMQP_URL, OTEL_EXPORTER_OTLP_ENDPOINT (spans; optional).",
)
def cli() -> None:
    """Serve the GraphQL API (POST /graphql), the task page (GET /) and metrics (GET /metrics)."""
    # Imported here: the server's modules (uvicorn, strawberry, graphql-core, pika) take most of
    # a second to import, which --help and a usage error need not pay.
    from task_api.server import serve

    serve()


def main() -> None:
    """Console entry point (the pex_binary's ``task_api.main:main``)."""
    cli()


if __name__ == "__main__":
    main()
