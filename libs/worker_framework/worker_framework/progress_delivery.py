"""How one batch of progress updates reaches the API: retried, split, or dropped alone.

The retry policy of the GraphQL reporter's sender thread. An unreachable API is retried with
``backoff`` (exponential, full jitter, at most ``MAX_RETRY_WAIT_S`` apart) until the
reporter's deadline; an API that answers with GraphQL ``errors`` is retried for
``GRAPHQL_ERROR_RETRY_S``; a request refused whole (HTTP 400 or 413, a GraphQL request error)
is split in halves until the update at fault is alone, and a lone update refused as too large
is sent once more without its result.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import backoff
from loguru import logger

from worker_framework.graphql_client import (
    ApiUnavailable,
    Outgoing,
    ProgressApiClient,
    RequestRefused,
    RequestTooLarge,
)
from worker_framework.progress import ProgressUpdate
from worker_framework.progress_queue import RESULT_OMITTED_KEY, without_result

#: Longest pause between two retries: a restarted API is noticed within this time.
MAX_RETRY_WAIT_S = 2.0
#: How long an update the API answers with GraphQL ``errors`` is retried before it is dropped
#: (the API is up but refuses it: holding it longer would hold every later update too).
GRAPHQL_ERROR_RETRY_S = 30.0


class _DeliveryError(Exception):
    """Some updates of a batch were not accepted and should be retried.

    ``refused`` is True when the API answered with GraphQL ``errors`` (it is up but refuses),
    False when it could not be reached or answered with an HTTP error.
    """

    def __init__(self, reason: str, *, refused: bool, started: float) -> None:
        super().__init__(reason)
        self.refused = refused
        self.started = started


class BatchSender:
    """Delivers batches to the API through ``client``; used by one sender thread.

    Parameters:
        client: the progress API client.
        safe_url: the API's URL without credentials, for log lines.
        past_deadline: True once the reporter's ``close`` deadline has passed: stop trying.

    Counters (read by any thread): ``sent`` (accepted by the API) and ``dropped`` (rejected
    for good, or given up on).
    """

    def __init__(
        self, client: ProgressApiClient, safe_url: str, past_deadline: Callable[[], bool]
    ) -> None:
        self._client = client
        self._safe_url = safe_url
        self._past_deadline = past_deadline
        self._lock = threading.Lock()
        self.sent = 0
        self.dropped = 0
        #: When the API (up, answering) first refused the batch being sent.
        self._refused_since: float | None = None
        self._send_batch = backoff.on_exception(
            backoff.expo,
            _DeliveryError,
            max_value=MAX_RETRY_WAIT_S,
            jitter=backoff.full_jitter,
            giveup=self._should_give_up,
            on_backoff=self._log_retry,
            logger=None,
        )(self._post_batch)

    def close(self) -> None:
        """Close the client's HTTP session."""
        self._client.close()

    def drop(self, update: ProgressUpdate, why: str) -> None:
        """Count ``update`` as rejected and say why in the log."""
        with self._lock:
            self.dropped += 1
        logger.bind(task_id=update.task_id).error(
            "progress update {} dropped: {}", update.status.value, why
        )

    def deliver(self, batch: list[Outgoing]) -> None:
        """Deliver ``batch``: retry, split or drop until every update is settled or the
        deadline passes."""
        self._refused_since = None
        self._deliver(batch)

    def _deliver(self, batch: list[Outgoing]) -> None:
        pending = list(batch)
        started = time.monotonic()
        while pending:
            if self._past_deadline():
                return
            try:
                self._send_batch(pending, started)
                return
            except RequestTooLarge:
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
                    pending = [Outgoing.of(lighter)]
                    continue
                self.drop(update, "the progress API refused it as too large (HTTP 413)")
                return
            except RequestRefused as error:
                if len(pending) > 1:
                    self._deliver_halves(pending)
                    return
                self.drop(pending[0].update, f"the progress API refused it ({error})")
                return
            except _DeliveryError as error:
                if self._past_deadline():
                    return
                if error.refused:
                    with self._lock:
                        self.dropped += len(pending)
                    logger.error(
                        "progress API {} kept refusing {} update(s) for {:.0f}s, dropped: {}",
                        self._safe_url,
                        len(pending),
                        GRAPHQL_ERROR_RETRY_S,
                        error,
                    )
                    return

    def _deliver_halves(self, pending: list[Outgoing]) -> None:
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

    def _post_batch(self, pending: list[Outgoing], started: float) -> None:
        """Post ``pending``; remove what was accepted or rejected for good; raise to retry."""
        try:
            answer = self._client.post(pending)
        except ApiUnavailable as error:
            self._refused_since = None
            raise _DeliveryError(str(error), refused=False, started=started) from None
        accepted = len(pending) - len(answer.retry) - len(answer.rejected)
        with self._lock:
            self.sent += accepted
            self.dropped += len(answer.rejected)
        for item, message in answer.rejected:
            logger.bind(task_id=item.update.task_id).error(
                "progress API rejected update {} as invalid, dropped: {}",
                item.update.status.value,
                message,
            )
        pending[:] = answer.retry
        if not answer.retry:
            self._refused_since = None
            return
        # The refusal allowance counts from the first refusal, not from the first attempt: an
        # outage before it must not use the time up.
        if self._refused_since is None:
            self._refused_since = time.monotonic()
        raise _DeliveryError(
            f"GraphQL errors for {len(answer.retry)} update(s)",
            refused=True,
            started=self._refused_since,
        )
