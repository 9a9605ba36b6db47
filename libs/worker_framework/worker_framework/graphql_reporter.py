"""Progress reports sent to the GraphQL progress API (``GRAPHQL_URL``) by a background thread.

A task never waits for the API: :meth:`GraphQLReporter.report` only queues the update (a lock
and a dict, see ``worker_framework.progress_queue`` for what is coalesced and what is dropped
when the queue is full). The sender thread posts queued updates in order, several per request
(``worker_framework.graphql_client`` holds the wire format), and retries with the ``backoff``
library when the API is down, slow or answers with GraphQL ``errors``
(``worker_framework.progress_delivery`` holds that policy).

The sender lingers: once an update is queued it waits up to ``linger_s`` (default 100 ms) for
more, unless ``max_batch`` are already pending. In that time a task's progress steps coalesce
into its final status, so a busy worker sends about one update per task, in few requests; the
API sees progress at most ``linger_s`` late. A backlog (an API slower than the worker) is sent
without lingering.

What may be lost, and when, besides what the queue drops when full:

- Each update is serialised on its own: one that cannot be (or that the API refuses as
  invalid, ``BAD_USER_INPUT``) is dropped alone with an error in the log, never its batch.
  A request the API refuses whole (HTTP 400 or 413, or a GraphQL request error such as a
  variable the schema cannot take) is split in halves until the update at fault is alone; a
  lone update refused with 413 is sent again without its result, then dropped if still
  refused. Other GraphQL ``errors`` are retried for ``GRAPHQL_ERROR_RETRY_S``, then dropped
  the same way.
- An unreachable API (connection errors, timeouts, HTTP errors such as 503 or 401) is retried
  until it answers or ``close(timeout_s)``'s deadline passes; ``close`` logs what was left
  undelivered.
"""

from __future__ import annotations

import threading
import time

from loguru import logger
from pydantic import SecretStr
from shared_utils.redaction import redact_url

from worker_framework.graphql_client import (
    DEFAULT_REQUEST_TIMEOUT_S,
    Outgoing,
    ProgressApiClient,
)
from worker_framework.progress import ProgressReporter, ProgressUpdate
from worker_framework.progress_delivery import BatchSender
from worker_framework.progress_queue import (
    DEFAULT_MAX_PENDING,
    DEFAULT_MAX_PENDING_BYTES,
    DEFAULT_MAX_RESULT_BYTES,
    RESULT_OMITTED_KEY,
    PendingUpdate,
    ProgressQueue,
)

__all__ = ["DEFAULT_LINGER_S", "DEFAULT_MAX_BATCH", "RESULT_OMITTED_KEY", "GraphQLReporter"]

#: Most updates per request: a request costs the worker about a millisecond of its GIL whatever
#: its size, so a busy worker sends few large ones; 256 status updates stay far below the API's
#: body size limit (1 MiB by default; a larger batch is split on HTTP 413).
DEFAULT_MAX_BATCH = 256
#: How long the first unsent update waits for others (see the module docstring): long enough
#: for a busy worker to fill a batch, short enough for a person watching a task.
DEFAULT_LINGER_S = 0.1
#: Overflow warnings are repeated at most this often while the queue stays full.
OVERFLOW_LOG_INTERVAL_S = 10.0


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
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if linger_s < 0:
            raise ValueError("linger_s must not be negative")
        self._queue = ProgressQueue(
            max_pending=max_pending,
            max_pending_bytes=max_pending_bytes,
            max_result_bytes=max_result_bytes,
        )
        # The query string may carry a token too: left out of the logs with the password.
        self._safe_url = redact_url(url).split("?", 1)[0]
        self._max_batch = max_batch
        self._linger_s = linger_s
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
        self._last_overflow_log = 0.0
        self._sender = BatchSender(
            ProgressApiClient(url, token, request_timeout_s=request_timeout_s),
            self._safe_url,
            self._past_deadline,
        )
        self._thread = threading.Thread(
            target=self._run, name="graphql-progress-reporter", daemon=True
        )
        self._thread.start()

    # ---- the caller's side: never blocks beyond a short lock, never raises ----

    def report(self, update: ProgressUpdate) -> None:
        """Queue ``update`` for sending; returns at once."""
        try:
            # Outside the lock: serialising a large result must not hold up other threads.
            update, size = self._queue.measure(update)
            with self._lock:
                if self._closing:
                    logger.bind(task_id=update.task_id, trace_id=update.trace_id).debug(
                        "progress reporter closed; update {} not sent", update.status.value
                    )
                    return
                self._enqueue(update, size)
        except Exception:  # noqa: BLE001 - reporting must never fail a task
            logger.exception("could not queue a progress update")

    def _enqueue(self, update: ProgressUpdate, size: int) -> None:
        queue = self._queue
        was_empty = not queue
        if queue.add_measured(update, size):
            self._log_overflow()
        if was_empty and queue:
            self._first_pending_at = time.monotonic()
        if self._sender_waiting and (len(queue) == 1 or len(queue) >= self._max_batch):
            self._wakeup.notify()

    def _log_overflow(self) -> None:
        now = time.monotonic()
        if now - self._last_overflow_log >= OVERFLOW_LOG_INTERVAL_S:
            self._last_overflow_log = now
            logger.warning(
                "progress queue full ({} pending, API {} unreachable or slow): {} updates dropped"
                " so far, progress first",
                len(self._queue),
                self._safe_url,
                self._queue.dropped,
            )

    def counts(self) -> tuple[int, int, int]:
        """Updates ``(pending, sent, dropped)`` so far, for metrics (read from any thread).

        Pending counts the batch being sent; dropped counts updates dropped when the queue was
        full, refused by the API, or given up on.
        """
        with self._lock:
            pending = len(self._queue) + self._in_flight
            dropped_when_full = self._queue.dropped
        return pending, self._sender.sent, dropped_when_full + self._sender.dropped

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
            if left:
                logger.warning(
                    "progress reporter closed with {} update(s) not delivered to {}",
                    left,
                    self._safe_url,
                )
            logger.info(
                "progress reporter closed: {} sent, {} coalesced, {} dropped on overflow,"
                " {} rejected by the API",
                self._sender.sent,
                self._queue.coalesced,
                self._queue.dropped,
                self._sender.dropped,
            )
        except Exception:  # noqa: BLE001 - shutdown must go on
            logger.exception("could not close the progress reporter cleanly")

    # ---- the sender thread ----

    def _past_deadline(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def _next_batch(self) -> list[Outgoing] | None:
        """The next updates to send (maybe none left after dropping bad ones); None: stop."""
        with self._lock:
            self._wait_for_batch()
            count = min(len(self._queue), self._max_batch)
            if 0 < count < self._max_batch:
                # A power of two: the API caches the few documents this yields; the rest is
                # sent at once in the next request (what remains is past its linger).
                count = 1 << (count.bit_length() - 1)
            if count == 0:
                return None  # closing, and nothing left
            batch = self._queue.take(count)
            self._in_flight = len(batch)
        # Outside the lock: the worker's report() never waits for this.
        outgoing = [item for item in map(self._serialised, batch) if item is not None]
        if not outgoing:
            with self._lock:
                self._in_flight = 0
        return outgoing

    def _wait_for_batch(self) -> None:
        """Wait (holding the lock) until a batch is full, the linger is over, or closing."""
        while not self._closing:
            if not self._queue:
                timeout: float | None = None
            elif len(self._queue) >= self._max_batch:
                return
            else:
                timeout = self._first_pending_at + self._linger_s - time.monotonic()
                if timeout <= 0:
                    return
            self._sender_waiting = True
            self._wakeup.wait(timeout)
            self._sender_waiting = False

    def _serialised(self, pending: PendingUpdate) -> Outgoing | None:
        update = pending.merged()
        try:
            return Outgoing.of(update)
        except Exception as error:  # noqa: BLE001 - one bad update must not cost its batch
            self._sender.drop(update, f"it cannot be serialised ({type(error).__name__})")
            return None

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                self._sender.close()
                return
            if not batch:
                continue
            try:
                self._sender.deliver(batch)
            except Exception:  # noqa: BLE001 - the sender must outlive any surprise
                logger.exception("progress sender: unexpected error; {} update(s) lost", len(batch))
            with self._lock:
                self._in_flight = 0
