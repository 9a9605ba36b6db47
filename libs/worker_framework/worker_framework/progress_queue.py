"""The pending progress updates of a reporter: coalesced, in order, bounded in count and bytes.

Pure data structure: no thread, no clock, no I/O (only a log line when a result is left out).
The caller serialises access (the GraphQL reporter holds its lock around every call).

What it keeps, and what it gives up when full:

- A PROCESSING update not yet taken is replaced by a newer PROCESSING update of the same task
  and attempt: only the latest progress matters, and it keeps the older one's place in line,
  so order per task holds. A status change of the same attempt absorbs it the same way, and
  :meth:`PendingUpdate.merged` gives it the absorbed step and percentage.
- Status changes (RETRY_SCHEDULED, COMPLETED, FAILED) are never coalesced away. When the queue
  is full (``max_pending`` updates or ``max_pending_bytes``), pending PROCESSING updates are
  dropped first; only a queue holding nothing but status changes drops its oldest one.
- A result larger than ``max_result_bytes`` (serialised), or one JSON cannot hold, is replaced
  by ``{RESULT_OMITTED_KEY: "<why>"}``, so the task still reaches its final status.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections import OrderedDict
from dataclasses import dataclass

from loguru import logger

from worker_framework.progress import ProgressUpdate, TaskStatus

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
#: What the marker of an omitted result costs.
OMITTED_RESULT_BYTES = 100
#: The API keeps at most this many characters of an error message (so the queue counts no more).
MAX_ERROR_MESSAGE_CHARS = 16_000


def without_result(update: ProgressUpdate, why: str) -> ProgressUpdate:
    """``update`` with its result replaced by ``{RESULT_OMITTED_KEY: why}``."""
    return dataclasses.replace(update, result={RESULT_OMITTED_KEY: why})


@dataclass(slots=True)
class PendingUpdate:
    """A queued update; a PROCESSING one may be overwritten by newer progress until taken.

    ``absorbed`` is the untaken progress a status change replaced (see :meth:`merged`).
    """

    update: ProgressUpdate
    key: int = 0
    absorbed: ProgressUpdate | None = None
    size: int = 0

    def merged(self) -> ProgressUpdate:
        """The update, with the step and percentage of the progress it absorbed if it has none."""
        absorbed = self.absorbed
        if absorbed is None:
            return self.update
        return dataclasses.replace(
            self.update,
            progress=(
                self.update.progress if self.update.progress is not None else absorbed.progress
            ),
            current_step=(
                self.update.current_step
                if self.update.current_step is not None
                else absorbed.current_step
            ),
        )


class ProgressQueue:
    """Pending updates in arrival order, with indexes for coalescing and overflow.

    Parameters:
        max_pending: most updates held (default 10 000).
        max_pending_bytes: most bytes held, counting each update's strings and serialised
            result (default 32 MiB).
        max_result_bytes: a larger result is replaced by the omitted marker (default 256 KiB).

    Counters: ``coalesced`` (updates that replaced a pending one) and ``dropped`` (updates
    dropped to stay within the bounds).
    """

    def __init__(
        self,
        *,
        max_pending: int = DEFAULT_MAX_PENDING,
        max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES,
        max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
    ) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self.max_pending = max_pending
        self.max_pending_bytes = max_pending_bytes
        self.max_result_bytes = max_result_bytes
        self._slots: OrderedDict[int, PendingUpdate] = OrderedDict()
        #: PROCESSING slots that are the latest pending slot of their task, by task id.
        self._latest_progress: dict[str, PendingUpdate] = {}
        #: Keys of pending PROCESSING slots, oldest first (the first to drop on overflow).
        self._progress_keys: OrderedDict[int, None] = OrderedDict()
        self._keys = itertools.count()
        #: The sum of the pending slots' sizes.
        self.pending_bytes = 0
        self.coalesced = 0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._slots)

    def add(self, update: ProgressUpdate) -> int:
        """Queue ``update`` (coalescing it into a pending one when it can); the number dropped.

        The number counts the updates dropped to make room, ``update`` itself included when
        the queue is full of status changes and ``update`` is only progress.
        """
        return self.add_measured(*self.measure(update))

    def add_measured(self, update: ProgressUpdate, size: int) -> int:
        """:meth:`add` for an update that :meth:`measure` returned, with its size."""
        previous = self._latest_progress.get(update.task_id)
        if previous is not None and previous.update.attempt == update.attempt:
            self._coalesce(previous, update, size)
            return 0
        dropped = 0
        while len(self._slots) >= self.max_pending or (
            self._slots and self.pending_bytes + size > self.max_pending_bytes
        ):
            dropped += 1
            self.dropped += 1
            if not self._make_room(update):
                return dropped
        slot = PendingUpdate(update, next(self._keys), size=size)
        self.pending_bytes += size
        self._slots[slot.key] = slot
        if update.status is TaskStatus.PROCESSING:
            self._latest_progress[update.task_id] = slot
            self._progress_keys[slot.key] = None
        else:
            # A status change ends coalescing: later progress belongs after it.
            self._latest_progress.pop(update.task_id, None)
        return dropped

    def take(self, count: int) -> list[PendingUpdate]:
        """Remove and return the ``count`` oldest pending updates (fewer when fewer wait)."""
        taken = []
        for _ in range(min(count, len(self._slots))):
            slot = next(iter(self._slots.values()))
            self._remove(slot)
            taken.append(slot)
        return taken

    def _coalesce(self, previous: PendingUpdate, update: ProgressUpdate, size: int) -> None:
        # The newer update takes the older one's place in line, so order per task holds.
        self.coalesced += 1
        self.pending_bytes += size - previous.size
        previous.size = size
        if update.status is TaskStatus.PROCESSING:
            previous.update = update
            return
        # A status change absorbs the untaken progress before it (keeping its step and
        # percentage): the API ends in the same state with one update fewer.
        previous.absorbed = previous.update
        previous.update = update
        self._progress_keys.pop(previous.key, None)
        del self._latest_progress[update.task_id]

    def _make_room(self, update: ProgressUpdate) -> bool:
        """Drop one pending update to make room; False when ``update`` itself is dropped."""
        if self._progress_keys:
            self._remove(self._slots[next(iter(self._progress_keys))])
            return True
        if update.status is TaskStatus.PROCESSING:
            return False
        self._remove(next(iter(self._slots.values())))
        return True

    def _remove(self, slot: PendingUpdate) -> None:
        self.pending_bytes -= slot.size
        del self._slots[slot.key]
        self._progress_keys.pop(slot.key, None)
        if self._latest_progress.get(slot.update.task_id) is slot:
            del self._latest_progress[slot.update.task_id]

    def measure(self, update: ProgressUpdate) -> tuple[ProgressUpdate, int]:
        """``update`` (its result left out when too large) and the bytes it holds.

        Apart from :meth:`add_measured` so that a caller can serialise the result outside
        its lock.
        """
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
            return update, size + OMITTED_RESULT_BYTES
        if result_bytes > self.max_result_bytes:
            logger.bind(task_id=update.task_id).warning(
                "result of {} bytes is over {} bytes: sent without it",
                result_bytes,
                self.max_result_bytes,
            )
            update = without_result(update, f"result too large ({result_bytes} bytes)")
            return update, size + OMITTED_RESULT_BYTES
        return update, size + result_bytes
