"""Progress reports sent to the GraphQL progress API (``GRAPHQL_URL``) by a background thread.

A task never waits for the API: :meth:`GraphQLReporter.report` only queues the update (a lock
and a dict). The sender thread posts queued updates in order, several per request (one aliased
``reportTaskProgress`` field each, which the API executes in order), and retries with the
``backoff`` library when the API is down, slow or answers with GraphQL ``errors``.

The sender lingers: once an update is queued it waits up to ``linger_s`` (default 100 ms) for
more, unless ``max_batch`` are already pending. In that time a task's progress steps coalesce
into its final status, so a busy worker sends about one update per task, in few requests; the
API sees progress at most ``linger_s`` late. A backlog (an API slower than the worker) is sent
without lingering.

What may be lost, and when:

- A PROCESSING update not yet sent is replaced by a newer PROCESSING update of the same task
  and attempt (coalescing): only the latest progress matters. A status change of the same
  attempt absorbs it the same way, keeping its step and percentage.
- Status changes (RETRY_SCHEDULED, COMPLETED, FAILED) are never coalesced away. When the queue
  is full (``max_pending``, which bounds memory while the API is down), pending PROCESSING
  updates are dropped first; only a queue holding nothing but status changes drops its oldest
  one. Every drop is counted in the log.
- Each update is serialised on its own: one that cannot be (or that the API refuses as
  invalid, ``BAD_USER_INPUT``) is dropped alone with an error in the log, never its batch.
  A request the API refuses whole (HTTP 400 or 413, or a GraphQL request error such as a
  variable the schema cannot take) is split in halves until the update at fault is alone; a
  lone update refused with 413 is sent again without its result (see below), then dropped if
  still refused. Other GraphQL ``errors`` are retried for ``GRAPHQL_ERROR_RETRY_S``, then
  dropped the same way.
- A result larger than ``max_result_bytes`` (serialised) is not sent: the update carries
  :data:`RESULT_OMITTED_KEY` instead, so the task still reaches its final status.
- Memory is bounded in bytes (``max_pending_bytes``, the serialised size of pending updates)
  as well as in updates (``max_pending``).
- An unreachable API (connection errors, timeouts, HTTP errors such as 503 or 401) is retried
  until it answers or ``close(timeout_s)``'s deadline passes; ``close`` logs what was left
  undelivered.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import backoff
import requests
from loguru import logger
from pydantic import SecretStr
from shared_utils.redaction import redact_url

from worker_framework.inbound import clean_text
from worker_framework.logging import register_secret
from worker_framework.progress import ProgressReporter, ProgressUpdate, TaskStatus

#: DESIGN.md's mutation; a batch repeats its field once per update under aliases.
MUTATION = """mutation ReportTaskProgress($input: TaskProgressInput!) {
  reportTaskProgress(input: $input) { id status progress }
}"""

#: Enough for a long outage of a busy worker (a few MB), small enough to never matter.
DEFAULT_MAX_PENDING = 10_000
#: The bound in bytes of pending updates: a few large results must not hold the memory that
#: ten thousand small updates would.
DEFAULT_MAX_PENDING_BYTES = 32 * 1024 * 1024
#: A result larger than this (serialised) is left out of its update: a quarter of the API's
#: default body limit (1 MiB), so a batch holding one still fits.
DEFAULT_MAX_RESULT_BYTES = 256 * 1024
#: What replaces a result that is too large: ``{RESULT_OMITTED_KEY: "<why>"}``.
RESULT_OMITTED_KEY = "resultOmitted"
#: What an update costs besides its strings and result (field names, ids, the slot).
UPDATE_OVERHEAD_BYTES = 300
#: Well under the framework's heartbeat and shutdown budgets; the API answers in milliseconds.
DEFAULT_REQUEST_TIMEOUT_S = 5.0
#: Most updates per request: a request costs the worker about a millisecond of its GIL whatever
#: its size, so a busy worker sends few large ones; 256 status updates stay far below the API's
#: body size limit (1 MiB by default; a larger batch is split on HTTP 413).
DEFAULT_MAX_BATCH = 256
#: How long the first unsent update waits for others (see the module docstring): long enough
#: for a busy worker to fill a batch, short enough for a person watching a task.
DEFAULT_LINGER_S = 0.1
#: Longest pause between two retries: a restarted API is noticed within this time.
MAX_RETRY_WAIT_S = 2.0
#: How long an update the API answers with GraphQL ``errors`` is retried before it is dropped
#: (the API is up but refuses it: holding it longer would hold every later update too).
GRAPHQL_ERROR_RETRY_S = 30.0
#: The API keeps at most this many characters of an error message.
MAX_ERROR_MESSAGE_CHARS = 16_000
#: The API refuses a longer step, and with it the whole update (a status change included).
MAX_STEP_CHARS = 1_000
#: Overflow warnings are repeated at most this often while the queue stays full.
OVERFLOW_LOG_INTERVAL_S = 10.0


class _DeliveryError(Exception):
    """Some updates of a batch were not accepted and should be retried.

    ``refused`` is True when the API answered with GraphQL ``errors`` (it is up but refuses),
    False when it could not be reached or answered with an HTTP error.
    """

    def __init__(self, reason: str, *, refused: bool, started: float) -> None:
        super().__init__(reason)
        self.refused = refused
        self.started = started


class _TooLarge(Exception):
    """The API refused the request body as too large (HTTP 413): send fewer updates at once."""


class _Refused(Exception):
    """The API refused the request as a whole (HTTP 400): one update in it may be at fault."""


@dataclass
class _Counters:
    sent: int = 0
    coalesced: int = 0
    dropped_overflow: int = 0
    dropped_rejected: int = 0


@dataclass(slots=True)
class _Slot:
    """A queued update; a PROCESSING slot may be overwritten by newer progress until sent.

    ``absorbed`` is the unsent progress a status change replaced: its step and percentage are
    sent with the status change (merged in the sender thread, so ``report`` stays cheap).
    """

    update: ProgressUpdate
    key: int = 0
    absorbed: ProgressUpdate | None = None
    size: int = 0

    def outgoing(self) -> _Outgoing:
        """The update and its ``TaskProgressInput`` variables serialised, ready to send.

        Raises whatever serialising raises (TypeError, ValueError): the caller drops the update.
        """
        values = to_input(self.update)
        if self.absorbed is not None:
            if "progress" not in values and self.absorbed.progress is not None:
                values["progress"] = min(100, max(0, self.absorbed.progress))
            if "currentStep" not in values and self.absorbed.current_step is not None:
                values["currentStep"] = clean_text(self.absorbed.current_step[:MAX_STEP_CHARS])
        return _Outgoing(self.update, encode_input(values))


@dataclass(frozen=True, slots=True)
class _Outgoing:
    """An update taken from the queue for sending, with its serialised GraphQL variables."""

    update: ProgressUpdate
    encoded: bytes


def encode_input(values: dict[str, Any]) -> bytes:
    """``values`` as UTF-8 JSON; text no UTF-8 encoder accepts (lone surrogates) becomes ``?``.

    Raises TypeError or ValueError for values JSON cannot hold (NaN, arbitrary objects).
    """
    # Surrogates can only sit inside JSON strings, so replacing them keeps the JSON valid.
    return json.dumps(values, ensure_ascii=False, allow_nan=False).encode("utf-8", "replace")


def without_result(update: ProgressUpdate, why: str) -> ProgressUpdate:
    """``update`` with its result replaced by ``{RESULT_OMITTED_KEY: why}``."""
    return dataclasses.replace(update, result={RESULT_OMITTED_KEY: why})


@dataclass
class _Queue:
    """Pending updates in arrival order, with indexes for coalescing and overflow."""

    slots: OrderedDict[int, _Slot] = field(default_factory=OrderedDict)
    #: PROCESSING slots that are the latest pending slot of their task, by task id.
    latest_progress: dict[str, _Slot] = field(default_factory=dict)
    #: Keys of pending PROCESSING slots, oldest first (the first to drop on overflow).
    progress_keys: OrderedDict[int, None] = field(default_factory=OrderedDict)

    #: The sum of the pending slots' sizes.
    pending_bytes: int = 0

    def __len__(self) -> int:
        return len(self.slots)

    def remove(self, slot: _Slot) -> None:
        self.pending_bytes -= slot.size
        del self.slots[slot.key]
        self.progress_keys.pop(slot.key, None)
        if self.latest_progress.get(slot.update.task_id) is slot:
            del self.latest_progress[slot.update.task_id]


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
    return values


def _request_error(body: Any) -> str | None:
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


class GraphQLReporter(ProgressReporter):
    """Sends progress updates to the GraphQL progress API from a background thread.

    Parameters:
        url: the API endpoint (``GRAPHQL_URL``), e.g. ``http://task-api:4000/graphql``.
        token: sent as ``Authorization: Bearer <token>`` when given (``GRAPHQL_TOKEN``);
            never logged.
        max_pending: most updates held in memory (default 10 000).
        max_pending_bytes: most bytes (serialised) held in memory (default 32 MiB).
        max_result_bytes: a larger result (serialised) is replaced by
            ``{RESULT_OMITTED_KEY: ...}`` (default 256 KiB).
        request_timeout_s: connect and read timeout of one HTTP request (default 5 s).
        max_batch: most updates sent in one request (default 256); smaller batches are
            sent in power-of-two sizes, so the API parses and validates only a handful of
            distinct documents (a cold 256-field document costs it ~50 ms, a cached one nothing).
        linger_s: how long the first unsent update waits for others before the sender posts
            (default 0.1 s; 0 sends at once).
    """

    def __init__(
        self,
        url: str,
        token: str | SecretStr | None,
        *,
        max_pending: int = DEFAULT_MAX_PENDING,
        max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES,
        max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
        request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
        max_batch: int = DEFAULT_MAX_BATCH,
        linger_s: float = DEFAULT_LINGER_S,
    ) -> None:
        if max_pending < 1 or max_batch < 1:
            raise ValueError("max_pending and max_batch must be at least 1")
        if linger_s < 0:
            raise ValueError("linger_s must not be negative")
        self._url = url
        # The query string may carry a token too: left out of the logs with the password.
        self._safe_url = redact_url(url).split("?", 1)[0]
        self._max_pending = max_pending
        self._max_pending_bytes = max_pending_bytes
        self._max_result_bytes = max_result_bytes
        self._max_batch = max_batch
        self._linger_s = linger_s
        self._timeout = request_timeout_s
        self._session = requests.Session()
        self._session.headers["Content-Type"] = "application/json"
        secret = token.get_secret_value() if isinstance(token, SecretStr) else token
        if secret:
            # Belt and braces: the token is never formatted into a message here, and the
            # framework's log sinks redact it should a library ever print the headers.
            register_secret(secret)
            self._session.headers["Authorization"] = f"Bearer {secret}"
        self._queue = _Queue()
        self._keys = itertools.count()
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._closing = False
        #: True while the sender waits on ``_wakeup``: ``report`` notifies only then, and only
        #: when it matters (a first update to linger on, a full batch).
        self._sender_waiting = False
        #: When the oldest unsent update was queued (the start of the linger).
        self._first_pending_at = 0.0
        self._deadline: float | None = None
        self._in_flight = 0
        self._counters = _Counters()
        #: When the API (up, answering) first refused the batch being sent; sender thread only.
        self._refused_since: float | None = None
        self._last_overflow_log = 0.0
        self._send_batch = backoff.on_exception(
            backoff.expo,
            _DeliveryError,
            max_value=MAX_RETRY_WAIT_S,
            jitter=backoff.full_jitter,
            giveup=self._should_give_up,
            on_backoff=self._log_retry,
            logger=None,
        )(self._post_batch)
        self._thread = threading.Thread(
            target=self._run, name="graphql-progress-reporter", daemon=True
        )
        self._thread.start()

    # ---- the caller's side: never blocks beyond a short lock, never raises ----

    def report(self, update: ProgressUpdate) -> None:
        """Queue ``update`` for sending; returns at once."""
        try:
            update, size = self._measured(update)
            with self._lock:
                if self._closing:
                    logger.bind(task_id=update.task_id).debug(
                        "progress reporter closed; update {} not sent", update.status.value
                    )
                    return
                self._enqueue(update, size)
        except Exception:  # noqa: BLE001 - reporting must never fail a task
            logger.exception("could not queue a progress update")

    def _measured(self, update: ProgressUpdate) -> tuple[ProgressUpdate, int]:
        """``update`` (its result left out when too large) and the bytes it holds."""
        size = (
            UPDATE_OVERHEAD_BYTES
            + len(update.task_id)
            + len(update.current_step or "")
            + min(len(update.error_message or ""), MAX_ERROR_MESSAGE_CHARS)
        )
        if update.result is None:
            return update, size
        try:
            result_bytes = len(json.dumps(update.result, ensure_ascii=False, allow_nan=False))
        except (TypeError, ValueError) as error:
            update = without_result(update, f"result not serialisable: {type(error).__name__}")
            return update, size + 100
        if result_bytes > self._max_result_bytes:
            logger.bind(task_id=update.task_id).warning(
                "result of {} bytes is over {} bytes: sent without it",
                result_bytes,
                self._max_result_bytes,
            )
            update = without_result(update, f"result too large ({result_bytes} bytes)")
            return update, size + 100
        return update, size + result_bytes

    def _enqueue(self, update: ProgressUpdate, size: int) -> None:
        # The hot path of a busy worker (every ctx.progress): attribute look-ups and a dict,
        # no allocation beyond a slot per task and attempt, no clock unless the queue was empty.
        queue = self._queue
        previous = queue.latest_progress.get(update.task_id)
        if previous is not None and previous.update.attempt == update.attempt:
            # The newer update takes the older one's place in line, so order per task holds.
            self._counters.coalesced += 1
            queue.pending_bytes += size - previous.size
            previous.size = size
            if update.status is TaskStatus.PROCESSING:
                previous.update = update
                return
            # A status change absorbs the unsent progress before it (keeping its step and
            # percentage): the API ends in the same state with one update fewer.
            previous.absorbed = previous.update
            previous.update = update
            queue.progress_keys.pop(previous.key, None)
            del queue.latest_progress[update.task_id]
            return
        while len(queue) >= self._max_pending or (
            queue.slots and queue.pending_bytes + size > self._max_pending_bytes
        ):
            if not self._make_room(update):
                return
        slot = _Slot(update, next(self._keys), size=size)
        queue.pending_bytes += size
        slots = queue.slots
        if not slots:
            self._first_pending_at = time.monotonic()
        slots[slot.key] = slot
        if update.status is TaskStatus.PROCESSING:
            queue.latest_progress[update.task_id] = slot
            queue.progress_keys[slot.key] = None
        else:
            # A status change ends coalescing: later progress belongs after it.
            queue.latest_progress.pop(update.task_id, None)
        if self._sender_waiting and (len(slots) == 1 or len(slots) >= self._max_batch):
            self._wakeup.notify()

    def _make_room(self, update: ProgressUpdate) -> bool:
        """Drop one pending update to make room; False when ``update`` itself is dropped."""
        queue = self._queue
        if queue.progress_keys:
            oldest_key = next(iter(queue.progress_keys))
            queue.remove(queue.slots[oldest_key])
            admitted = True
        elif update.status is TaskStatus.PROCESSING:
            admitted = False
        else:
            queue.remove(next(iter(queue.slots.values())))
            admitted = True
        self._counters.dropped_overflow += 1
        now = time.monotonic()
        if now - self._last_overflow_log >= OVERFLOW_LOG_INTERVAL_S:
            self._last_overflow_log = now
            logger.warning(
                "progress queue full ({} pending, API {} unreachable or slow): {} updates dropped"
                " so far, progress first",
                len(queue),
                self._safe_url,
                self._counters.dropped_overflow,
            )
        return admitted

    def close(self, timeout_s: float) -> None:
        """Send what is pending, giving up ``timeout_s`` seconds from now; never raises."""
        try:
            with self._lock:
                self._closing = True
                self._deadline = time.monotonic() + max(0.0, timeout_s)
                self._wakeup.notify_all()
            self._thread.join(max(0.0, timeout_s))
            with self._lock:
                left = len(self._queue) + self._in_flight
                counters = self._counters
            if left:
                logger.warning(
                    "progress reporter closed with {} update(s) not delivered to {}",
                    left,
                    self._safe_url,
                )
            logger.info(
                "progress reporter closed: {} sent, {} coalesced, {} dropped on overflow,"
                " {} rejected by the API",
                counters.sent,
                counters.coalesced,
                counters.dropped_overflow,
                counters.dropped_rejected,
            )
        except Exception:  # noqa: BLE001 - shutdown must go on
            logger.exception("could not close the progress reporter cleanly")

    # ---- the sender thread ----

    def _past_deadline(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def _next_batch(self) -> list[_Outgoing] | None:
        """The next updates to send (maybe none left after dropping bad ones); None: stop."""
        with self._lock:
            queue = self._queue
            while not self._closing:
                if not queue.slots:
                    timeout: float | None = None
                elif len(queue.slots) >= self._max_batch:
                    break
                else:
                    timeout = self._first_pending_at + self._linger_s - time.monotonic()
                    if timeout <= 0:
                        break
                self._sender_waiting = True
                self._wakeup.wait(timeout)
                self._sender_waiting = False
            count = min(len(queue.slots), self._max_batch)
            if 0 < count < self._max_batch:
                # A power of two: the API caches the few documents this yields; the rest is
                # sent at once in the next request (what remains is past its linger).
                count = 1 << (count.bit_length() - 1)
            if count == 0:
                return None  # closing, and nothing left
            batch: list[_Slot] = []
            for _ in range(count):
                slot = next(iter(queue.slots.values()))
                queue.remove(slot)
                batch.append(slot)
            self._in_flight = len(batch)
        # Outside the lock: the worker's report() never waits for this.
        outgoing = []
        for slot in batch:
            try:
                outgoing.append(slot.outgoing())
            except Exception as error:  # noqa: BLE001 - one bad update must not cost its batch
                self._drop(slot.update, f"it cannot be serialised ({type(error).__name__})")
        if not outgoing:
            with self._lock:
                self._in_flight = 0
        return outgoing

    def _drop(self, update: ProgressUpdate, why: str) -> None:
        with self._lock:
            self._counters.dropped_rejected += 1
        logger.bind(task_id=update.task_id).error(
            "progress update {} dropped: {}", update.status.value, why
        )

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                self._session.close()
                return
            if not batch:
                continue
            self._refused_since = None
            try:
                self._deliver(batch)
            except Exception:  # noqa: BLE001 - the sender must outlive any surprise
                logger.exception("progress sender: unexpected error; {} update(s) lost", len(batch))
            with self._lock:
                self._in_flight = 0

    def _deliver(self, batch: list[_Outgoing]) -> None:
        pending = list(batch)
        started = time.monotonic()
        while pending:
            if self._past_deadline():
                return
            try:
                self._send_batch(pending, started)
                return
            except _TooLarge:
                if len(pending) > 1:
                    self._deliver_halves(pending)
                    return
                update = pending[0].update
                if update.result is not None and RESULT_OMITTED_KEY not in update.result:
                    # The final status matters more than the result: send it without.
                    logger.bind(task_id=update.task_id).warning(
                        "progress API refused update {} as too large (HTTP 413); sending it "
                        "without its result",
                        update.status.value,
                    )
                    lighter = without_result(update, "result too large for the progress API")
                    values = to_input(lighter)
                    pending = [_Outgoing(lighter, encode_input(values))]
                    continue
                self._drop(update, "the progress API refused it as too large (HTTP 413)")
                return
            except _Refused as error:
                if len(pending) > 1:
                    self._deliver_halves(pending)
                    return
                self._drop(pending[0].update, f"the progress API refused it ({error})")
                return
            except _DeliveryError as error:
                if self._past_deadline():
                    return
                if error.refused:
                    with self._lock:
                        self._counters.dropped_rejected += len(pending)
                    logger.error(
                        "progress API {} kept refusing {} update(s) for {:.0f}s, dropped: {}",
                        self._safe_url,
                        len(pending),
                        GRAPHQL_ERROR_RETRY_S,
                        error,
                    )
                    return

    def _deliver_halves(self, pending: list[_Outgoing]) -> None:
        """Send ``pending`` in two requests, so an update the API refuses ends up alone."""
        half = len(pending) // 2
        self._deliver(pending[:half])
        self._deliver(pending[half:])

    def _should_give_up(self, error: Exception) -> bool:
        if self._past_deadline():
            return True
        # An unreachable API is waited for until close(); a refusing one only for a while.
        return (
            isinstance(error, _DeliveryError)
            and error.refused
            and time.monotonic() - error.started >= GRAPHQL_ERROR_RETRY_S
        )

    def _log_retry(self, details: Any) -> None:
        error = details.get("exception")
        logger.warning(
            "progress API {} not accepting updates ({}); retry {} in {:.1f}s",
            self._safe_url,
            error,
            details.get("tries"),
            details.get("wait", 0.0),
        )

    def _post_batch(self, pending: list[_Outgoing], started: float) -> None:
        """Post ``pending``; remove what was accepted or rejected for good; raise to retry."""
        names = ["input"] if len(pending) == 1 else [f"i{n}" for n in range(len(pending))]
        # Each update was serialised on its own (see _Slot.outgoing); only the frame is new.
        variables = b",".join(
            b'"' + name.encode() + b'":' + item.encoded
            for name, item in zip(names, pending, strict=True)
        )
        body = (
            b'{"query":'
            + json.dumps(batch_document(len(pending))).encode()
            + b',"variables":{'
            + variables
            + b"}}"
        )
        try:
            response = self._session.post(self._url, data=body, timeout=self._timeout)
        except requests.RequestException as error:
            self._refused_since = None
            raise _DeliveryError(type(error).__name__, refused=False, started=started) from None
        if response.status_code == 413:
            raise _TooLarge
        if response.status_code == 400:
            # A malformed request: something in one of the updates, as our frame is fixed.
            raise _Refused(f"HTTP {response.status_code}")
        if response.status_code != 200:
            # 401/403 (a wrong token) and 5xx may be fixed by whoever runs the API: retry.
            self._refused_since = None
            raise _DeliveryError(f"HTTP {response.status_code}", refused=False, started=started)
        try:
            body = response.json()
        except ValueError:
            self._refused_since = None
            raise _DeliveryError("response is not JSON", refused=False, started=started) from None
        request_error = _request_error(body)
        if request_error is not None:
            # The whole document was refused before any field ran (a variable the schema
            # cannot take): deterministic, so split the batch to find the update at fault.
            raise _Refused(request_error)
        retry, rejected = self._classify(pending, body)
        accepted = len(pending) - len(retry) - len(rejected)
        with self._lock:
            self._counters.sent += accepted
            self._counters.dropped_rejected += len(rejected)
        for item, message in rejected:
            logger.bind(task_id=item.update.task_id).error(
                "progress API rejected update {} as invalid, dropped: {}",
                item.update.status.value,
                message,
            )
        pending[:] = retry
        if not retry:
            self._refused_since = None
            return
        # The refusal allowance counts from the first refusal, not from the first attempt: an
        # outage before it must not use the time up.
        if self._refused_since is None:
            self._refused_since = time.monotonic()
        raise _DeliveryError(
            f"GraphQL errors for {len(retry)} update(s)", refused=True, started=self._refused_since
        )

    def _classify(
        self, pending: list[_Outgoing], body: Any
    ) -> tuple[list[_Outgoing], list[tuple[_Outgoing, str]]]:
        """Split the updates not accepted into (to retry, rejected for good with the reason).

        An update counts as accepted only when its field has data: a server whose field is
        non-null nulls the whole answer on one error, and the fields after it never ran.
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
        retry: list[_Outgoing] = []
        rejected: list[tuple[_Outgoing, str]] = []
        for alias, item in zip(aliases, pending, strict=True):
            if isinstance(data, dict) and isinstance(data.get(alias), dict):
                continue
            field_errors = errors_by_alias.get(alias, [])
            codes = {(e.get("extensions") or {}).get("code") for e in field_errors}
            if "BAD_USER_INPUT" in codes:
                message = "; ".join(str(e.get("message")) for e in field_errors)
                rejected.append((item, message))
            else:
                retry.append(item)
        return retry, rejected
