"""Exceptions that carry what a person needs to act on them."""

from __future__ import annotations


class WorkerError(Exception):
    """An error raised by a worker's ``execute_task``.

    ``permanent=True`` sends the task straight to the dead-letter queue; otherwise the
    framework schedules a retry (until ``WORKER_MAX_RETRIES`` is exhausted).
    """

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent


class SettingsError(Exception):
    """A configuration value is missing or invalid; names the environment variable."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"invalid setting {variable}: {problem}")
        self.variable = variable
        self.problem = problem


class BrokerUnavailable(Exception):
    """RabbitMQ could not be reached, or the connection was lost."""


class TopologyMismatch(Exception):
    """A queue already exists with arguments different from the ones the framework declares."""


class PublishFailed(Exception):
    """RabbitMQ did not confirm a publish (nacked, or unroutable with ``mandatory``)."""


class TooManyAbandonedThreads(Exception):
    """More threads of timed-out tasks still run than ``WORKER_MAX_ABANDONED_THREADS``.

    The worker stopped taking tasks and returned its deliveries; restart the process.
    """


class UnencodableMessage(Exception):
    """A message that cannot be put on the wire (properties unencodable or over the frame size).

    Nothing was sent and the connection is intact.
    """
