"""The progress API's wire format: the document, the variables, and what an answer means.

One request carries several updates, one aliased ``reportTaskProgress`` field each (the API
executes them in order). :meth:`ProgressApiClient.post` sends a batch and sorts its updates
into accepted, to retry and rejected for good; a request refused whole raises
:class:`RequestRefused` or :class:`RequestTooLarge`, an API that cannot be reached (or answers
with an HTTP error) raises :class:`ApiUnavailable`.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

import requests
from pydantic import SecretStr

from worker_framework.inbound import clean_text
from worker_framework.logging import register_secret
from worker_framework.progress import ProgressUpdate

#: The progress API's mutation; a batch repeats its field once per update under aliases.
MUTATION = """mutation ReportTaskProgress($input: TaskProgressInput!) {
  reportTaskProgress(input: $input) { id status progress }
}"""
#: Well under the framework's heartbeat and shutdown budgets; the API answers in milliseconds.
DEFAULT_REQUEST_TIMEOUT_S = 5.0
#: The API keeps at most this many characters of an error message.
MAX_ERROR_MESSAGE_CHARS = 16_000
#: The API refuses a longer step, and with it the whole update (a status change included).
MAX_STEP_CHARS = 1_000


class ApiUnavailable(Exception):
    """The API could not be reached, or answered with an HTTP error other than 400 and 413."""


class RequestTooLarge(Exception):
    """The API refused the request body as too large (HTTP 413): send fewer updates at once."""


class RequestRefused(Exception):
    """The API refused the request as a whole (HTTP 400, or a GraphQL request error): one
    update in it may be at fault."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    """An update ready to send, with its serialised ``TaskProgressInput`` variables."""

    update: ProgressUpdate
    encoded: bytes

    @classmethod
    def of(cls, update: ProgressUpdate) -> Outgoing:
        """Serialise ``update``; raises TypeError or ValueError for values JSON cannot hold."""
        return cls(update, encode_input(to_input(update)))


@dataclass
class Answer:
    """How the API answered a batch: the updates to send again, and those rejected for good
    (with the API's reason)."""

    retry: list[Outgoing]
    rejected: list[tuple[Outgoing, str]]


def to_input(update: ProgressUpdate) -> dict[str, Any]:
    """The ``TaskProgressInput`` variables for one update (unset fields left out)."""
    values: dict[str, Any] = {
        "taskId": clean_text(update.task_id),
        "workerType": clean_text(update.worker_type),
        "status": update.status.value,
    }
    if update.progress is not None:
        values["progress"] = min(100, max(0, update.progress))
    if update.current_step is not None:
        values["currentStep"] = clean_text(update.current_step[:MAX_STEP_CHARS])
    if update.attempt is not None:
        values["attempt"] = update.attempt
    if update.error_message is not None:
        values["errorMessage"] = clean_text(update.error_message[:MAX_ERROR_MESSAGE_CHARS])
    if update.next_retry_at is not None:
        values["nextRetryAt"] = update.next_retry_at.isoformat()
    if update.result is not None:
        values["result"] = update.result
    if update.trace_id is not None:
        values["traceId"] = update.trace_id
    return values


def encode_input(values: dict[str, Any]) -> bytes:
    """``values`` as UTF-8 JSON; text no UTF-8 encoder accepts (lone surrogates) becomes ``?``.

    Raises TypeError or ValueError for values JSON cannot hold (NaN, arbitrary objects).
    """
    # Surrogates can only sit inside JSON strings, so replacing them keeps the JSON valid.
    return json.dumps(values, ensure_ascii=False, allow_nan=False).encode("utf-8", "replace")


@functools.lru_cache(maxsize=64)
def batch_document(count: int) -> str:
    """A mutation with ``count`` aliased ``reportTaskProgress`` fields (``u0`` ... ``uN``)."""
    if count == 1:
        return MUTATION
    variables = ", ".join(f"$i{n}: TaskProgressInput!" for n in range(count))
    fields = "\n".join(
        f"  u{n}: reportTaskProgress(input: $i{n}) {{ id status progress }}" for n in range(count)
    )
    return f"mutation ReportTaskProgress({variables}) {{\n{fields}\n}}"


def request_body(pending: list[Outgoing]) -> bytes:
    """The JSON body that reports ``pending``, in order."""
    names = ["input"] if len(pending) == 1 else [f"i{n}" for n in range(len(pending))]
    # Each update was serialised on its own (see Outgoing.of); only the frame is new.
    variables = b",".join(
        b'"' + name.encode() + b'":' + item.encoded
        for name, item in zip(names, pending, strict=True)
    )
    document = json.dumps(batch_document(len(pending))).encode()
    return b'{"query":' + document + b',"variables":{' + variables + b"}}"


def request_error(body: Any) -> str | None:
    """The message of a GraphQL *request* error (no data, errors without a field path)."""
    if not isinstance(body, dict) or body.get("data") is not None:
        return None
    errors = body.get("errors")
    if not isinstance(errors, list) or not errors:
        return None
    if any(isinstance(error, dict) and error.get("path") for error in errors):
        return None
    first = errors[0]
    return str(first.get("message") if isinstance(first, dict) else first)[:300]


def classify(pending: list[Outgoing], body: Any) -> Answer:
    """Sort the updates the API did not accept into to-retry and rejected-for-good.

    An update counts as accepted only when its field has data: a server whose field is
    non-null nulls the whole answer on one error, and the fields after it never ran. A field
    error coded ``BAD_USER_INPUT`` rejects its update for good; any other is worth a retry.
    """
    data = body.get("data") if isinstance(body, dict) else None
    errors = body.get("errors") if isinstance(body, dict) else None
    aliases = (
        ["reportTaskProgress"] if len(pending) == 1 else [f"u{n}" for n in range(len(pending))]
    )
    errors_by_alias: dict[str, list[dict[str, Any]]] = {}
    for error in errors or []:
        path = error.get("path") if isinstance(error, dict) else None
        if path:
            errors_by_alias.setdefault(str(path[0]), []).append(error)
    answer = Answer(retry=[], rejected=[])
    for alias, item in zip(aliases, pending, strict=True):
        if isinstance(data, dict) and isinstance(data.get(alias), dict):
            continue
        field_errors = errors_by_alias.get(alias, [])
        codes = {(e.get("extensions") or {}).get("code") for e in field_errors}
        if "BAD_USER_INPUT" in codes:
            answer.rejected.append((item, "; ".join(str(e.get("message")) for e in field_errors)))
        else:
            answer.retry.append(item)
    return answer


class ProgressApiClient:
    """Posts batches of updates to the progress API over one HTTP session.

    Parameters:
        url: the API endpoint (``GRAPHQL_URL``).
        token: sent as ``Authorization: Bearer <token>`` when given; never logged.
        request_timeout_s: connect and read timeout of one request (default 5 s).
    """

    def __init__(
        self,
        url: str,
        token: str | SecretStr | None,
        *,
        request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
    ) -> None:
        self._url = url
        self._timeout = request_timeout_s
        self._session = requests.Session()
        self._session.headers["Content-Type"] = "application/json"
        secret = token.get_secret_value() if isinstance(token, SecretStr) else token
        if secret:
            # Belt and braces: the token is never formatted into a message here, and the
            # framework's log sinks redact it should a library ever print the headers.
            register_secret(secret)
            self._session.headers["Authorization"] = f"Bearer {secret}"

    def post(self, pending: list[Outgoing]) -> Answer:
        """Report ``pending``; the updates not accepted, or an exception for the whole batch."""
        try:
            response = self._session.post(
                self._url, data=request_body(pending), timeout=self._timeout
            )
        except requests.RequestException as error:
            raise ApiUnavailable(type(error).__name__) from None
        if response.status_code == 413:
            raise RequestTooLarge
        if response.status_code == 400:
            # A malformed request: something in one of the updates, as our frame is fixed.
            raise RequestRefused(f"HTTP {response.status_code}")
        if response.status_code != 200:
            # 401/403 (a wrong token) and 5xx may be fixed by whoever runs the API: retry.
            raise ApiUnavailable(f"HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            raise ApiUnavailable("response is not JSON") from None
        refused = request_error(body)
        if refused is not None:
            # The whole document was refused before any field ran (a variable the schema
            # cannot take): deterministic, so the caller splits the batch to find the culprit.
            raise RequestRefused(refused)
        return classify(pending, body)

    def close(self) -> None:
        """Close the HTTP session."""
        self._session.close()
