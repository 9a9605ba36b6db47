"""A request-rate ceiling shared by every thread (and task) that talks to one site."""

import math
import threading
import time
from collections.abc import Callable


class SitePaused(Exception):
    """The site asked for a pause longer than the limiter may sit out."""

    def __init__(self, remaining_s: float) -> None:
        super().__init__(f"the site asked for a pause; {remaining_s:.0f} s of it remain")
        self.remaining_s = remaining_s


class RateLimiter:
    """Spaces calls to ``acquire`` at least ``1 / rate_per_s`` seconds apart, across threads.

    Each caller reserves the next free slot under a lock and sleeps outside it, so waiting
    threads never hold each other up beyond their slot. ``pause`` (a server's Retry-After)
    holds back every later request, not only the one that was told; while more than
    ``max_pause_s`` of a pause remains, ``acquire`` raises SitePaused at once instead of
    sleeping, so no thread sits on a task for an hour. ``clock`` and ``sleep`` are
    injectable so the spacing can be checked exactly.
    """

    def __init__(
        self,
        rate_per_s: float,
        *,
        max_pause_s: float = math.inf,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        self._rate_interval = 1.0 / rate_per_s
        self._interval = self._rate_interval
        self._max_pause_s = max_pause_s
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_slot = -math.inf
        self._paused_until = -math.inf
        self._acquired = 0

    @property
    def interval_s(self) -> float:
        """The minimum spacing between two requests."""
        return self._interval

    @property
    def acquired(self) -> int:
        """How many requests have been let through so far."""
        with self._lock:
            return self._acquired

    def apply_crawl_delay(self, delay_s: float | None) -> None:
        """Space requests by the site's latest robots.txt Crawl-delay when it exceeds the rate.

        The latest one, not the largest ever seen: a site that lowers or drops its Crawl-delay
        is no longer throttled by the old one.
        """
        with self._lock:
            self._interval = max(self._rate_interval, delay_s or 0.0)

    def pause(self, delay_s: float) -> None:
        """Let no request through for ``delay_s`` seconds from now."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + delay_s)

    def acquire(self) -> None:
        """Block until this caller's slot comes; raise SitePaused during a long pause."""
        with self._lock:
            now = self._clock()
            if self._paused_until - now > self._max_pause_s:
                raise SitePaused(self._paused_until - now)
            slot = max(now, self._next_slot, self._paused_until)
            self._next_slot = slot + self._interval
            self._acquired += 1
        if slot > now:
            self._sleep(slot - now)
