"""SIGTERM/SIGINT handling: the first signal stops gracefully, a second one exits at once.

Container orchestrators send SIGTERM and, after their own grace period (Kubernetes'
``terminationGracePeriodSeconds``, 30 s by default; ``docker stop -t``, 10 s by default), SIGKILL.
Keep ``WORKER_SHUTDOWN_GRACE_S`` a few seconds *below* that period so the worker finishes or
requeues its tasks and closes its connection itself. Nothing is lost either way: unacknowledged
deliveries return to the queue when the connection drops.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from types import FrameType

HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class SignalHandlers:
    """Calls ``on_stop`` on the first SIGTERM/SIGINT; the second one ends the process at once."""

    def __init__(self, on_stop: Callable[[], None]) -> None:
        self._on_stop = on_stop
        self._received = 0

    def install(self) -> bool:
        """Install the handlers; False (nothing installed) when not on the main thread."""
        if threading.current_thread() is not threading.main_thread():
            return False
        for signum in HANDLED_SIGNALS:
            signal.signal(signum, self._handle)
        return True

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        # No logging here: the handler may interrupt the main thread inside loguru, whose lock
        # is not reentrant. The consumer logs the stop from its own loop.
        self._received += 1
        if self._received > 1:
            name = signal.Signals(signum).name
            note = f"{name} received again: exiting now; unfinished tasks return to the queue\n"
            os.write(2, note.encode())
            # os._exit skips cleanup on purpose: the dropped connection is what requeues the work.
            os._exit(128 + signum)
        self._on_stop()
