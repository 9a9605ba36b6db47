"""One logging setup for every worker: loguru, text or JSON lines, secrets redacted.

Every line about a task carries ``worker_type``, ``queue``, ``task_id``, ``attempt`` and
``trace_id`` (bound with ``logger.bind``; ``trace_id`` is also added to every line written while
a task runs, the app's own through loguru's global ``logger`` included: see
:data:`current_trace_id`). Redaction runs on the
fully formatted line, tracebacks included, so a password in an AMQP URL or a bearer token cannot
leak through an exception message either.
Records from the standard ``logging`` module (pika uses it) are routed through the same sink.
"""

from __future__ import annotations

import json
import logging as stdlib_logging
import re
import sys
import threading
import traceback
from contextvars import ContextVar
from datetime import UTC
from typing import TYPE_CHECKING, Any, TextIO

from loguru import logger
from pydantic import SecretStr
from shared_utils.redaction import url_passwords

if TYPE_CHECKING:
    from loguru import Message, Record

    from worker_framework.settings import WorkerSettings

#: ``scheme://user:password@`` -> ``scheme://user:***@``; the character classes stop at quotes
#: and whitespace so a URL inside JSON or a repr() is redacted without breaking it.
_URL_CREDENTIALS = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^:/@\s\"'\\]*):[^@/\s\"'\\]+@"
)
#: Bearer tokens in headers or messages.
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s\"'\\,]+")
#: ``token=...``, ``password: ...`` style pairs in free text.
_SECRET_PAIR = re.compile(
    r"(?i)\b((?:access_|api_|graphql_)?(?:token|password|passwd|secret)[\"']?\s*[=:]\s*[\"']?)[^\s\"'\\,&]+"
)

_REDACTED = "***"
#: The configured threshold; loguru's default sink shows DEBUG and up until configured.
_minimum_level = [10]
#: loguru's standard level numbers, looked up without a call into loguru.
_LEVEL_NUMBERS = {
    "TRACE": 5,
    "DEBUG": 10,
    "INFO": 20,
    "SUCCESS": 25,
    "WARNING": 30,
    "ERROR": 40,
    "CRITICAL": 50,
}
#: Registered secret values, longest first; replaced as a whole tuple so readers need no lock.
_secrets: tuple[str, ...] = ()
_secrets_lock = threading.Lock()
#: Substrings (lower case) without which none of the patterns can match: most lines skip the
#: regular expressions entirely, which matters when every task writes log lines.
_PATTERN_HINTS = ("://", "bearer", "token", "passw", "secret")

#: The trace id of the task running in this context (its worker thread), set by the task
#: runner: the patcher installed by :func:`configure_logging` adds it to every line written
#: meanwhile. A context variable and a patcher rather than ``logger.contextualize``: setting
#: one costs a tenth as much, on every task, and the patcher runs only for lines written.
current_trace_id: ContextVar[str | None] = ContextVar("worker_trace_id", default=None)

#: Context keys shown on every task line, in this order.
CONTEXT_KEYS = ("worker_type", "queue", "task_id", "attempt", "trace_id")


def register_secret(value: str | None) -> None:
    """Redact this exact string wherever it appears in a log line (e.g. a token value)."""
    global _secrets
    if value and len(value) >= 4:
        with _secrets_lock:
            _secrets = tuple(sorted({*_secrets, value}, key=len, reverse=True))


def register_settings_secrets(settings: object) -> None:
    """Register every secret a settings object holds as an exact string to redact.

    That is each ``SecretStr`` value (``GRAPHQL_TOKEN``, an app's ``SMTP_PASSWORD``) and the
    password of every URL among its values (``AMQP_URL``, a database URL), however oddly
    written. The patterns catch ``user:password@`` in well-formed URLs; the exact values also
    catch a password printed on its own (a driver's error message, a repr).
    """
    for value in vars(settings).values():
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if not isinstance(text, str):
            continue
        if isinstance(value, SecretStr):
            register_secret(text)
        for password in url_passwords(text):
            register_secret(password)


def redact(text: str) -> str:
    """Return ``text`` with URL credentials, bearer tokens and registered secrets masked."""
    lowered = text.lower()
    if any(hint in lowered for hint in _PATTERN_HINTS):
        text = _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{_REDACTED}@", text)
        text = _BEARER.sub(rf"\1{_REDACTED}", text)
        text = _SECRET_PAIR.sub(rf"\1{_REDACTED}", text)
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, _REDACTED)
    return text


def _add_trace_id(record: Record) -> None:
    trace_id = current_trace_id.get()
    if trace_id is not None:
        record["extra"].setdefault("trace_id", trace_id)


def _exception_text(record: Record) -> str:
    exception = record["exception"]
    if exception is None or exception.type is None:
        return ""
    return "".join(traceback.format_exception(exception.type, exception.value, exception.traceback))


def format_text(record: Record) -> str:
    """One human-readable line (plus a traceback when there is one), not yet redacted."""
    timestamp = record["time"].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    extra = record["extra"]
    context = " ".join(f"{key}={extra[key]}" for key in CONTEXT_KEYS if extra.get(key) is not None)
    prefix = f"{context} | " if context else ""
    line = f"{timestamp} {record['level'].name:<8} {prefix}{record['message']}\n"
    return line + _exception_text(record)


def format_json(record: Record) -> str:
    """One JSON object on one line, not yet redacted."""
    payload: dict[str, Any] = {
        "time": record["time"].astimezone(UTC).isoformat(),
        "level": record["level"].name,
        "message": record["message"],
        "logger": record["name"],
    }
    for key, value in record["extra"].items():
        if not key.startswith("_"):
            payload[key] = value
    exception = _exception_text(record)
    if exception:
        payload["exception"] = exception
    return json.dumps(payload, default=str) + "\n"


class _RedactingSink:
    """Formats a record itself so the redaction sees exactly what gets written."""

    def __init__(self, stream: TextIO | None, json_lines: bool) -> None:
        self._stream = stream
        self._format = format_json if json_lines else format_text

    def __call__(self, message: Message) -> None:
        # sys.stderr is looked up per line: test runners swap it, and a stale one is closed.
        stream = self._stream or sys.stderr
        stream.write(redact(self._format(message.record)))
        stream.flush()


class _InterceptHandler(stdlib_logging.Handler):
    """Sends standard-library log records (pika's) to loguru."""

    def emit(self, record: stdlib_logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.opt(depth=6, exception=record.exc_info).log(level, record.getMessage())


def is_enabled(level: str) -> bool:
    """Whether a record at ``level`` would be written (cheap: for hot paths)."""
    return _LEVEL_NUMBERS.get(level, 0) >= _minimum_level[0]


def configure_logging(settings: WorkerSettings, stream: TextIO | None = None) -> None:
    """Configure loguru once for the process from ``LOG_FORMAT`` and ``LOG_LEVEL``."""
    # GRAPHQL_TOKEN, SMTP_PASSWORD (an app's own SecretStr fields) and AMQP_URL's passwords.
    register_settings_secrets(settings)
    _minimum_level[0] = _LEVEL_NUMBERS[settings.log_level]
    logger.remove()
    logger.configure(patcher=_add_trace_id)
    # diagnose=False: loguru's variable dump in tracebacks would print secrets verbatim.
    logger.add(
        _RedactingSink(stream, settings.log_format == "json"),
        level=settings.log_level,
        format="{message}",
        backtrace=False,
        diagnose=False,
        enqueue=False,
    )
    stdlib_logging.basicConfig(
        handlers=[_InterceptHandler()], level=stdlib_logging.WARNING, force=True
    )
    # pika logs every connection hiccup at WARNING/ERROR; our own lines say what matters.
    stdlib_logging.getLogger("pika").setLevel(stdlib_logging.CRITICAL)
