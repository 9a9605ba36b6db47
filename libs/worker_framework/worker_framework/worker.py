"""The class an app subclasses: typed task in, typed result out, six hooks.

.. code-block:: python

    class EmailWorker(BaseWorker[EmailTask, EmailResult]):
        default_queue = "email-service"
        settings: EmailSettings

        def worker_type(self) -> str:
            return "email"

        def execute_task(self, task: EmailTask, ctx: TaskContext) -> EmailResult:
            ctx.progress(50, "sending")
            ...

The framework reads ``TaskT`` and ``ResultT`` from the generic parameters, validates every
message body into ``TaskT`` and serialises the returned ``ResultT`` as the result. The
``settings`` annotation names the app's settings model (a subclass of ``WorkerSettings``): the
CLI loads that model from the environment, and ``self.settings`` has its type, with no cast.
"""

from __future__ import annotations

import sys
import typing
from typing import Any, ClassVar, Generic, TypeVar

from loguru import logger
from pydantic import BaseModel

from worker_framework.errors import SettingsError, WorkerError
from worker_framework.progress import ProgressReporter, ProgressUpdate, TaskStatus
from worker_framework.settings import WorkerSettings

if typing.TYPE_CHECKING:
    from loguru import Logger

TaskT = TypeVar("TaskT", bound=BaseModel)
ResultT = TypeVar("ResultT", bound=BaseModel)


class TaskContext:
    """What a running task may know and do besides its input.

    Attributes: ``task_id`` (the body's ``id``), ``attempt`` (1 on the first delivery),
    ``redelivered`` (RabbitMQ's flag: a previous delivery of this very message may have run,
    so make side effects idempotent), ``queue``, ``trace_id`` (the task's W3C trace id, 32 hex
    digits; None under ``run-task``), and ``logger`` (loguru, bound to all of them).

    ``state`` is a JSON object carried from one attempt to the next: what a failed attempt
    leaves in it (say, which side effects already happened) the retry finds there. It travels
    in the retry copy's ``x-task-state`` header (at most 16 KiB of JSON), so it is as trusted
    as the message itself: a producer can set it too. Empty on a first attempt.
    """

    def __init__(
        self,
        *,
        task_id: str,
        attempt: int,
        redelivered: bool,
        queue: str,
        worker_type: str,
        reporter: ProgressReporter,
        state: dict[str, Any] | None = None,
        trace_id: str | None = None,
    ) -> None:
        self.task_id = task_id
        self.trace_id = trace_id
        self.state: dict[str, Any] = state if state is not None else {}
        self.attempt = attempt
        self.redelivered = redelivered
        self.queue = queue
        self.worker_type = worker_type
        self._reporter = reporter
        self._logger: Logger | None = None

    @property
    def logger(self) -> Logger:
        """A loguru logger bound to the task id, attempt, queue, worker type and trace id."""
        # Bound on first use: most tasks never log, and binding costs on the hot path.
        if self._logger is None:
            self._logger = logger.bind(
                task_id=self.task_id,
                attempt=self.attempt,
                queue=self.queue,
                worker_type=self.worker_type,
                **({} if self.trace_id is None else {"trace_id": self.trace_id}),
            )
        return self._logger

    def progress(self, percent: int, step: str | None = None) -> None:
        """Report that the task is ``percent`` (0-100, clamped) done, optionally naming the step."""
        if not self._reporter.wants(TaskStatus.PROCESSING):
            return  # dropped anyway (a log reporter at DEBUG): skip building the update
        self._reporter.report(
            ProgressUpdate(
                task_id=self.task_id,
                worker_type=self.worker_type,
                status=TaskStatus.PROCESSING,
                attempt=self.attempt,
                progress=max(0, min(100, int(percent))),
                current_step=step,
                trace_id=self.trace_id,
            )
        )


class BaseWorker(Generic[TaskT, ResultT]):
    """Subclass with concrete pydantic models: ``class W(BaseWorker[MyTask, MyResult])``.

    The framework builds one instance per process (``worker_cls(settings=...)``), calls
    :meth:`initialize` once, :meth:`execute_task` per task (from a worker thread; with
    ``WORKER_CONCURRENCY`` > 1 from several at once), and :meth:`shutdown` on the way out.
    """

    #: The queue consumed when ``WORKER_QUEUE`` is unset; by convention the app's name.
    default_queue: ClassVar[str]
    #: The app's release, shown as the ``version`` label of ``worker_build_info``.
    version: ClassVar[str] = "unknown"
    #: The worker's settings. A subclass narrows the annotation (``settings: EmailSettings``)
    #: to get its own fields typed; :meth:`settings_model` reads that annotation.
    settings: WorkerSettings

    def __init__(self, settings: WorkerSettings) -> None:
        model = self.settings_model()
        if not isinstance(settings, model):
            # Caught here once, so that no app has to check the type of its own settings.
            raise TypeError(
                f"{type(self).__name__} needs {model.__name__}, got {type(settings).__name__}"
            )
        self.settings = settings

    @classmethod
    def settings_model(cls) -> type[WorkerSettings]:
        """The settings model the CLI loads: the class's ``settings`` annotation."""
        return _settings_annotation(cls)

    @classmethod
    def task_model(cls) -> type[TaskT]:
        """The pydantic model every message body is validated into."""
        return typing.cast("type[TaskT]", _generic_arguments(cls)[0])

    @classmethod
    def result_model(cls) -> type[ResultT]:
        """The pydantic model :meth:`execute_task` returns."""
        return typing.cast("type[ResultT]", _generic_arguments(cls)[1])

    def queue_name(self) -> str:
        """``WORKER_QUEUE`` if set, else the class's ``default_queue``."""
        queue = self.settings.worker_queue or getattr(type(self), "default_queue", None)
        if not queue:
            raise SettingsError(
                "WORKER_QUEUE", f"not set, and {type(self).__name__} has no default_queue"
            )
        return queue

    def worker_type(self) -> str:
        """A short name for logs and progress, e.g. ``"email"``."""
        return type(self).__name__

    def initialize(self) -> None:
        """Open clients once per process, before the first task. Default: nothing."""

    def execute_task(self, task: TaskT, ctx: TaskContext) -> ResultT:
        """Do the work. Raise :class:`WorkerError` (or any exception) to fail."""
        raise NotImplementedError(f"{type(self).__name__} must implement execute_task")

    def is_permanent_error(self, error: Exception, task: TaskT) -> bool:
        """Whether ``error`` should skip retries; default: ``WorkerError.permanent``."""
        return isinstance(error, WorkerError) and error.permanent

    def initial_step(self, task: TaskT) -> str:
        """The ``current_step`` reported when a task starts."""
        return "started"

    def shutdown(self) -> None:
        """Close clients at exit. Default: nothing."""


def _generic_arguments(cls: type) -> tuple[type[BaseModel], type[BaseModel]]:
    for klass in cls.__mro__:
        for base in getattr(klass, "__orig_bases__", ()):
            if typing.get_origin(base) is BaseWorker:
                arguments = typing.get_args(base)
                if len(arguments) == 2 and all(
                    isinstance(a, type) and issubclass(a, BaseModel) for a in arguments
                ):
                    return arguments[0], arguments[1]
    raise TypeError(
        f"{cls.__name__} must subclass BaseWorker[TaskModel, ResultModel] with pydantic models"
    )


def _settings_annotation(cls: type) -> type[WorkerSettings]:
    for klass in cls.__mro__:
        annotation = vars(klass).get("__annotations__", {}).get("settings")
        if annotation is None:
            continue
        if isinstance(annotation, str):
            # ``from __future__ import annotations`` leaves the name to look up in the module.
            namespace = vars(sys.modules[klass.__module__])
            annotation = namespace.get(annotation, annotation)
        if isinstance(annotation, type) and issubclass(annotation, WorkerSettings):
            return annotation
        raise TypeError(
            f"{klass.__name__}.settings must be annotated with a WorkerSettings subclass "
            f"imported at run time, not {annotation!r}"
        )
    return WorkerSettings
