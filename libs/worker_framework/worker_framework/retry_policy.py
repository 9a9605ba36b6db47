"""When to retry a failed task, after how long, and through which delay queue.

Delays
    Retry ``n`` (``n = 1..max_retries``; retry ``n`` follows the failure of attempt ``n``)
    waits ``min(initial_delay_ms * backoff_factor ** (n - 1), max_delay_ms)`` (taken from
    ``backoff.expo``) plus a jitter of up to :data:`JITTER_RATIO` of that, capped at
    :data:`MAX_JITTER_MS`, so that tasks failing together do not all return together.

Delay tiers
    RabbitMQ expires a message only when it reaches the head of its queue, so one retry
    queue holding mixed delays would make a 1 s retry wait behind a 1 h one. Each distinct
    base delay therefore gets its own queue, ``<Q>.retry.<base delay ms>``, whose messages all
    share (almost) the same TTL: arrival order is due order. The queue's ``x-message-ttl`` is
    the base delay plus the largest jitter, each message's ``expiration`` is its own jittered
    delay, and on expiry RabbitMQ dead-letters it back to ``<Q>``. A message can only wait
    behind a sibling of the same tier, by at most the jitter spread. The set of tiers is
    known from the settings, so all are declared at start, with arguments that depend on
    nothing but the tier's name (no PRECONDITION_FAILED when settings change: new delays
    get new queues, and old tier queues can be deleted once empty).
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

import backoff

from worker_framework.settings import WorkerSettings

#: Jitter as a share of the base delay: enough to spread a burst of failures.
JITTER_RATIO = 0.1
#: Cap on the jitter, so long delays stay predictable for operators.
MAX_JITTER_MS = 1000


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, as configured by the ``WORKER_*`` retry settings."""

    max_retries: int
    initial_delay_ms: int
    backoff_factor: float
    max_delay_ms: int

    @classmethod
    def from_settings(cls, settings: WorkerSettings) -> RetryPolicy:
        """The policy described by ``WORKER_MAX_RETRIES`` and friends."""
        return cls(
            max_retries=settings.worker_max_retries,
            initial_delay_ms=settings.worker_initial_delay_ms,
            backoff_factor=settings.worker_backoff_factor,
            max_delay_ms=settings.worker_max_delay_ms,
        )

    def should_retry(self, failed_attempt: int) -> bool:
        """Whether a transient failure of attempt ``failed_attempt`` earns another attempt."""
        return failed_attempt <= self.max_retries

    def base_delay_ms(self, retry_number: int) -> int:
        """The un-jittered delay of retry ``retry_number`` (1-based)."""
        delays = backoff.expo(
            base=self.backoff_factor, factor=self.initial_delay_ms, max_value=self.max_delay_ms
        )
        next(delays)  # backoff's generators are primed with one next() before the first value
        value = next(itertools.islice(delays, max(retry_number, 1) - 1, None))
        return max(1, round(min(value, self.max_delay_ms)))

    def delay_ms(self, retry_number: int) -> int:
        """The jittered delay of retry ``retry_number``: base plus up to the tier's jitter."""
        base = self.base_delay_ms(retry_number)
        return base + random.randint(0, max_jitter_ms(base))  # noqa: S311 - jitter, not secrecy

    def tiers(self) -> list[int]:
        """Every distinct base delay this policy can produce, ascending."""
        return sorted({self.base_delay_ms(n) for n in range(1, self.max_retries + 1)})


def max_jitter_ms(base_delay_ms: int) -> int:
    """The largest jitter added to ``base_delay_ms``."""
    return min(int(base_delay_ms * JITTER_RATIO), MAX_JITTER_MS)


def tier_ttl_ms(base_delay_ms: int) -> int:
    """The ``x-message-ttl`` of the tier queue for ``base_delay_ms``."""
    return base_delay_ms + max_jitter_ms(base_delay_ms)


def retry_queue_name(queue: str, base_delay_ms: int) -> str:
    """The delay queue for one tier, e.g. ``email-service.retry.4000``."""
    return f"{queue}.retry.{base_delay_ms}"


def dead_letter_queue_name(queue: str) -> str:
    """Where tasks that cannot succeed wait for a person, e.g. ``email-service.dlq``."""
    return f"{queue}.dlq"
