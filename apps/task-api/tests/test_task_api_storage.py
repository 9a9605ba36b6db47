"""Storage behaviour that only shows with a database server: losing the connection."""

from __future__ import annotations

import psycopg
import pytest
from task_api.testing import fetch_task

REPORT = """
mutation Report($input: TaskProgressInput!) { reportTaskProgress(input: $input) { id status } }
"""


def terminate_connections_to(admin_url: str, database: str) -> int:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchall()
    return len(rows)


def test_the_api_carries_on_when_postgresql_drops_its_connection(api, task_id, postgres_admin_url):
    if not api.database_url.startswith("postgresql"):
        pytest.skip("only a database server can drop the connection")
    api.graphql(REPORT, {"input": {"taskId": task_id, "workerType": "d", "status": "QUEUED"}})

    database = api.database_url.rsplit("/", 1)[1]
    terminated = terminate_connections_to(postgres_admin_url, database)
    body = api.graphql(
        REPORT, {"input": {"taskId": task_id, "workerType": "d", "status": "PROCESSING"}}
    )

    assert terminated >= 1
    assert "errors" not in body, body
    task = fetch_task(api.url, task_id)
    assert task is not None
    assert task["status"] == "PROCESSING"
