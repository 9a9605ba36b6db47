"""The differences between SQLite and PostgreSQL that the SQL store needs to know."""

from __future__ import annotations

import functools
import sqlite3
from datetime import UTC, datetime
from typing import Any, Protocol

#: Schema versions, applied in order at start; a new version appends a list, never edits one.
_COMMON_V1 = [
    """CREATE TABLE IF NOT EXISTS task_api_tasks (
        seq {serial},
        id TEXT NOT NULL UNIQUE,
        queue TEXT,
        status TEXT NOT NULL,
        worker_type TEXT,
        progress INTEGER NOT NULL DEFAULT 0,
        current_step TEXT,
        attempt INTEGER,
        error_message TEXT,
        next_retry_at {timestamp},
        result TEXT,
        payload TEXT,
        submitted INTEGER NOT NULL DEFAULT 0,
        created_at {timestamp} NOT NULL,
        updated_at {timestamp} NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS task_api_history (
        seq {serial},
        task_id TEXT NOT NULL,
        status TEXT NOT NULL,
        worker_type TEXT,
        progress INTEGER,
        current_step TEXT,
        attempt INTEGER,
        error_message TEXT,
        next_retry_at {timestamp},
        result TEXT,
        recorded_at {timestamp} NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS task_api_history_task ON task_api_history (task_id, seq)",
    "CREATE INDEX IF NOT EXISTS task_api_tasks_status ON task_api_tasks (status, seq)",
    "CREATE INDEX IF NOT EXISTS task_api_tasks_queue ON task_api_tasks (queue, seq)",
]

#: The outbox: whether the message of a submitted task was confirmed by RabbitMQ, and until
#: when (seconds since the epoch) its current publisher holds it. Rows from before are
#: published (submission used to publish before answering).
_COMMON_V2 = [
    "ALTER TABLE task_api_tasks ADD COLUMN published INTEGER NOT NULL DEFAULT 1",
    "ALTER TABLE task_api_tasks ADD COLUMN publish_after DOUBLE PRECISION",
    "CREATE INDEX IF NOT EXISTS task_api_tasks_outbox"
    " ON task_api_tasks (published, publish_after)",
]


#: The W3C trace id of a task's messages (32 hex digits), shown by queries and the page.
_COMMON_V3 = ["ALTER TABLE task_api_tasks ADD COLUMN trace_id TEXT"]


class Connection(Protocol):
    """The part of a DB-API connection that both sqlite3 and psycopg offer."""

    def execute(self, query: Any, params: Any = ...) -> Any:
        """Run one statement and return a cursor."""

    def close(self) -> None:
        """Close the connection."""


class Dialect(Protocol):
    """What differs between the two back ends."""

    name: str
    #: Statement that starts a write transaction which serialises writers.
    begin_write: str
    #: Appended to the SELECT that reads a row about to be updated.
    lock_row: str

    def connect(self) -> Connection:
        """Open a connection in autocommit mode (transactions are explicit)."""

    def sql(self, query: str) -> str:
        """Rewrite ``?`` placeholders into this driver's style."""

    def migrations(self) -> list[list[str]]:
        """The schema versions, oldest first."""

    def to_db_time(self, value: datetime | None) -> Any:
        """A timestamp as this back end stores it."""

    def from_db_time(self, value: Any) -> datetime | None:
        """A stored timestamp as an aware UTC datetime."""

    def is_broken(self, conn: Connection) -> bool:
        """Whether the connection must be reopened."""


class SqliteDialect:
    """SQLite through the standard library; one file, no server needed."""

    name = "sqlite"
    # IMMEDIATE takes the write lock at once, so two processes cannot both read-then-write.
    begin_write = "BEGIN IMMEDIATE"
    lock_row = ""

    def __init__(self, path: str) -> None:
        self.path = path

    def connect(self) -> Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        if self.path != ":memory:":
            # WAL lets the page and queries read while a report is being written.
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def sql(self, query: str) -> str:
        return query

    def migrations(self) -> list[list[str]]:
        kinds = {"serial": "INTEGER PRIMARY KEY AUTOINCREMENT", "timestamp": "TEXT"}
        return [[statement.format(**kinds) for statement in _COMMON_V1], _COMMON_V2, _COMMON_V3]

    def to_db_time(self, value: datetime | None) -> Any:
        return None if value is None else value.astimezone(UTC).isoformat()

    def from_db_time(self, value: Any) -> datetime | None:
        if value is None:
            return None
        return datetime.fromisoformat(str(value)).astimezone(UTC)

    def is_broken(self, conn: Connection) -> bool:
        return False


class PostgresDialect:
    """PostgreSQL through psycopg 3."""

    name = "postgresql"
    begin_write = "BEGIN"
    lock_row = " FOR UPDATE"

    def __init__(self, url: str) -> None:
        self.url = url

    def connect(self) -> Connection:
        import psycopg

        # A raw cursor takes PostgreSQL's own $1 placeholders: psycopg then has no query to
        # rewrite, which for a batch's multi-row statement cost more than running it.
        conn: Connection = psycopg.connect(
            self.url, autocommit=True, cursor_factory=psycopg.RawCursor
        )
        return conn

    def sql(self, query: str) -> str:
        return _numbered_placeholders(query)

    def migrations(self) -> list[list[str]]:
        kinds = {
            "serial": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
            "timestamp": "TIMESTAMPTZ",
        }
        return [[statement.format(**kinds) for statement in _COMMON_V1], _COMMON_V2, _COMMON_V3]

    def to_db_time(self, value: datetime | None) -> Any:
        return value

    def from_db_time(self, value: Any) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.astimezone(UTC)

    def is_broken(self, conn: Connection) -> bool:
        return bool(getattr(conn, "closed", False) or getattr(conn, "broken", False))


@functools.lru_cache(maxsize=256)
def _numbered_placeholders(query: str) -> str:
    """``?`` placeholders as ``$1``, ``$2``, ... (no query of the store holds a literal ``?``)."""
    parts = query.split("?")
    numbered = [parts[0]]
    for number, part in enumerate(parts[1:], start=1):
        numbered.append(f"${number}{part}")
    return "".join(numbered)


def dialect_for(database_url: str) -> Dialect:
    """The dialect for ``sqlite:///relative.db``, ``sqlite:////abs.db`` or ``postgresql://...``."""
    if database_url.startswith("sqlite://"):
        path = database_url[len("sqlite://") :]
        if path.startswith("/"):
            path = path[1:]
        return SqliteDialect(path or "tasks.db")
    if database_url.startswith(("postgresql://", "postgres://")):
        return PostgresDialect(database_url)
    raise ValueError("database URL must start with sqlite:// or postgresql://")
