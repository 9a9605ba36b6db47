"""Turns one message body into an outcome: decode, validate, execute, classify the failure.

Knows nothing about RabbitMQ: the consumer feeds it deliveries from worker threads, and
``run-task`` feeds it a file. Undecodable JSON (nested too deeply included) and bodies that fail
``TaskT`` validation are permanent failures; any other exception is transient unless
``is_permanent_error`` says so.

With a trace context (from the message), every line logged while the task runs carries its
``trace_id``, and the attempt is one span of the :class:`~worker_framework.tracing.Tracer`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ValidationError

from worker_framework.inbound import MAX_STATE_BYTES, short_text
from worker_framework.logging import current_trace_id, redact
from worker_framework.outcomes import Completed, DeadLettered, Outcome, RetryScheduled
from worker_framework.progress import ProgressReporter, ProgressUpdate, TaskStatus
from worker_framework.retry_policy import RetryPolicy
from worker_framework.tracing import NO_TRACER, Span, TraceContext, Tracer
from worker_framework.worker import BaseWorker, TaskContext

#: The task id shown for a message that names no task (neither a body ``id`` nor a message id).
UNKNOWN_TASK_ID = "unknown"
#: What ``json.loads`` uses when given no options.
_JSON_DECODER = json.JSONDecoder()
#: What ``json.loads`` raises on bad input: ValueError for malformed text, RecursionError for
#: a body nested deeper than the interpreter's recursion limit (e.g. ``[[[[...``).
JSON_ERRORS = (ValueError, RecursionError)


@dataclass(frozen=True, init=False)
class TaskRun:
    """The outcome of one attempt at one task.

    ``identified`` is False when the message names no task (``task_id`` is then
    :data:`UNKNOWN_TASK_ID`): no progress is reported for it, the dead letter holds the reason.
    ``trace_id`` is the task's trace id, when it came with a trace context.
    """

    task_id: str
    attempt: int
    outcome: Outcome
    identified: bool = True
    trace_id: str | None = None

    # One per task: written out for the reason given at ProgressUpdate.__init__.
    def __init__(
        self,
        task_id: str,
        attempt: int,
        outcome: Outcome,
        identified: bool = True,
        trace_id: str | None = None,
    ) -> None:
        fields = self.__dict__
        fields["task_id"] = task_id
        fields["attempt"] = attempt
        fields["outcome"] = outcome
        fields["identified"] = identified
        fields["trace_id"] = trace_id


def describe_validation_error(error: ValidationError) -> str:
    """Field paths and problems, without the input values (they may hold personal data)."""
    problems = [
        f"{'.'.join(str(part) for part in item['loc']) or '<body>'}: {item['msg']}"
        for item in error.errors(include_input=False, include_url=False)
    ]
    return "; ".join(problems)


def task_id_from(body: bytes, fallback: Any) -> str:
    """The body's ``id`` if it is readable, else the message id, else ``unknown``.

    ``fallback`` may be a raw property value: it is normalised as :func:`inbound.short_text`.
    """
    return _task_id_of(_decoded_or_none(body), short_text(fallback)) or UNKNOWN_TASK_ID


def run_for(
    body: bytes,
    outcome: Outcome,
    *,
    attempt: int,
    message_id: str | None,
    trace_id: str | None = None,
) -> TaskRun:
    """A run whose ``outcome`` was decided outside :meth:`TaskRunner.run` (a time limit, an
    unexpected error), named after the body's ``id`` or the message id when there is one."""
    task_id = _task_id_of(_decoded_or_none(body), message_id)
    return TaskRun(
        task_id or UNKNOWN_TASK_ID, attempt, outcome, task_id is not None, trace_id=trace_id
    )


def _decoded_or_none(body: bytes) -> Any:
    try:
        return decode_json(body)
    except JSON_ERRORS:
        return None


def decode_json(body: bytes) -> Any:
    """``json.loads(body)``, skipping its encoding detection for the usual ``{"...`` object."""
    if body.startswith(b'{"'):
        # Two non-zero bytes, no byte-order mark: json.loads would decode it as UTF-8 too, and
        # then hand it to the same default decoder.
        return _JSON_DECODER.decode(body.decode("utf-8", "surrogatepass"))
    return json.loads(body)


def _task_id_of(data: Any, fallback: str | None) -> str | None:
    # The id lands in logs, headers and progress updates: the same limits as a message id.
    if isinstance(data, dict):
        task_id = data.get("id")
        if isinstance(task_id, int) and not isinstance(task_id, bool):
            task_id = str(task_id)
        if isinstance(task_id, str) and task_id:
            return short_text(task_id)
    return fallback or None


class TaskRunner:
    """Runs tasks for one worker instance; safe to call from several threads at once.

    ``tracer`` gets a span per attempt at a task that came with a trace context (default: none).
    """

    def __init__(
        self,
        worker: BaseWorker[Any, Any],
        reporter: ProgressReporter,
        policy: RetryPolicy,
        queue: str,
        tracer: Tracer = NO_TRACER,
    ) -> None:
        self.worker = worker
        self.reporter = reporter
        self.policy = policy
        self.queue = queue
        self.tracer = tracer
        self.worker_type = worker.worker_type()
        self._task_model: type[BaseModel] = type(worker).task_model()
        self._result_model: type[BaseModel] = type(worker).result_model()

    def run(
        self,
        body: bytes,
        *,
        attempt: int,
        redelivered: bool,
        message_id: str | None = None,
        state: Mapping[str, Any] | None = None,
        trace: TraceContext | None = None,
    ) -> TaskRun:
        """Decode and execute one task; never raises.

        ``state`` is what an earlier attempt saved in ``ctx.state`` (see :class:`TaskContext`);
        ``trace`` the trace context the task came with (its id is bound to every log line of
        the attempt, and the tracer makes a span of it).
        """
        if trace is None:
            return self._run(body, attempt, redelivered, message_id, state, None)
        token = current_trace_id.set(trace.trace_id)
        try:
            if not self.tracer.records_spans:
                return self._run(body, attempt, redelivered, message_id, state, trace.trace_id)
            attributes: dict[str, str | int] = {
                "messaging.system": "rabbitmq",
                "messaging.destination.name": self.queue,
                "worker.type": self.worker_type,
                "task.attempt": attempt,
            }
            with self.tracer.attempt(trace, f"{self.queue} process", attributes) as span:
                run = self._run(body, attempt, redelivered, message_id, state, trace.trace_id)
                _describe(span, run)
            return run
        finally:
            current_trace_id.reset(token)

    def _run(
        self,
        body: bytes,
        attempt: int,
        redelivered: bool,
        message_id: str | None,
        state: Mapping[str, Any] | None,
        trace_id: str | None,
    ) -> TaskRun:
        try:
            data = decode_json(body)
        except RecursionError:
            return _undecodable(
                message_id, attempt, "body is not valid JSON: nested too deeply to decode", trace_id
            )
        except ValueError as error:
            return _undecodable(message_id, attempt, f"body is not valid JSON: {error}", trace_id)
        named = _task_id_of(data, message_id)
        task_id = named or UNKNOWN_TASK_ID
        identified = named is not None
        if not isinstance(data, dict):
            outcome: Outcome = DeadLettered("ValidationError", "body must be a JSON object")
            return TaskRun(task_id, attempt, outcome, identified, trace_id)
        try:
            task = self._task_model.model_validate(data)
        except ValidationError as error:
            outcome = DeadLettered("ValidationError", describe_validation_error(error))
            return TaskRun(task_id, attempt, outcome, identified, trace_id)
        outcome = self._execute(
            task, task_id, attempt, redelivered, identified, state or {}, trace_id
        )
        return TaskRun(task_id, attempt, outcome, identified, trace_id)

    def _execute(
        self,
        task: BaseModel,
        task_id: str,
        attempt: int,
        redelivered: bool,
        identified: bool,
        state: Mapping[str, Any],
        trace_id: str | None,
    ) -> Outcome:
        # A task nobody can name gets no progress updates: they would create a phantom task.
        reporter = self.reporter if identified else _SILENT
        ctx = TaskContext(
            task_id=task_id,
            attempt=attempt,
            redelivered=redelivered,
            queue=self.queue,
            worker_type=self.worker_type,
            reporter=reporter,
            state=dict(state),
            trace_id=trace_id,
        )
        if reporter.wants(TaskStatus.PROCESSING):
            self._report_started(task, task_id, attempt, trace_id, reporter)
        try:
            result = self.worker.execute_task(task, ctx)
            if not isinstance(result, self._result_model):
                result = self._result_model.model_validate(result)
        except Exception as error:  # noqa: BLE001 - every failure becomes an outcome
            return self._failure(error, task, ctx)
        try:
            # Here, on the task's thread: a result that cannot become JSON (bytes that are not
            # UTF-8, say) is the task's failure, not the I/O thread's.
            data = result.model_dump(mode="json")
        except Exception as error:  # noqa: BLE001 - pydantic raises several kinds here
            message = redact(f"the result cannot be serialised: {type(error).__name__}: {error}")
            ctx.logger.error("{}", message)
            return DeadLettered("ResultNotSerialisable", message)
        return Completed(result, data)

    def _report_started(
        self,
        task: BaseModel,
        task_id: str,
        attempt: int,
        trace_id: str | None,
        reporter: ProgressReporter,
    ) -> None:
        try:
            step = self.worker.initial_step(task)
        except Exception:  # noqa: BLE001 - a broken hook must not lose the task
            step = "started"
        reporter.report(
            ProgressUpdate(
                task_id,
                self.worker_type,
                TaskStatus.PROCESSING,
                attempt=attempt,
                progress=0,
                current_step=step,
                trace_id=trace_id,
            )
        )

    def _failure(self, error: Exception, task: BaseModel, ctx: TaskContext) -> Outcome:
        if isinstance(error, ValidationError):
            permanent, message = True, describe_validation_error(error)
        else:
            message = str(error) or type(error).__name__
            try:
                permanent = bool(self.worker.is_permanent_error(error, task))
            except Exception:  # - a broken hook must not lose the task
                ctx.logger.exception("is_permanent_error raised; treating the failure as transient")
                permanent = False
        ctx.logger.opt(exception=error).warning(
            "task failed ({}): {}: {}",
            "permanent" if permanent else "transient",
            type(error).__name__,
            message,
        )
        outcome = self.failure_outcome(
            type(error).__name__, message, ctx.attempt, permanent=permanent
        )
        if isinstance(outcome, RetryScheduled) and ctx.state:
            outcome = dataclasses.replace(outcome, state=_saved_state(ctx))
        return outcome

    def failure_outcome(
        self, error_type: str, message: str, attempt: int, *, permanent: bool
    ) -> Outcome:
        """A retry when the failure is transient and attempts remain, else a dead letter."""
        # Error texts travel in headers and progress updates: no credentials in them either.
        message = redact(message)
        if permanent:
            return DeadLettered(error_type, message)
        if not self.policy.should_retry(attempt):
            return DeadLettered(
                error_type, f"retries exhausted after {attempt} attempts: {message}"
            )
        base = self.policy.base_delay_ms(attempt)
        delay = self.policy.delay_ms(attempt)
        due = datetime.now(UTC) + timedelta(milliseconds=delay)
        return RetryScheduled(error_type, message, attempt + 1, base, delay, due)

    def final_status(self, run: TaskRun) -> TaskStatus | None:
        """The status :meth:`final_update` reports for ``run`` (None: it reports nothing)."""
        if not run.identified:
            return None
        return _FINAL_STATUSES.get(type(run.outcome), TaskStatus.FAILED)

    def final_update(self, run: TaskRun) -> ProgressUpdate | None:
        """The status update to report once ``run``'s outcome is settled (None: report nothing,
        the message names no task)."""
        if not run.identified:
            return None
        outcome = run.outcome
        task_id, attempt, trace_id = run.task_id, run.attempt, run.trace_id
        worker_type = self.worker_type
        if isinstance(outcome, Completed):
            return ProgressUpdate(
                task_id,
                worker_type,
                TaskStatus.COMPLETED,
                attempt,
                progress=100,
                result=outcome.result,
                trace_id=trace_id,
            )
        error_message = f"{outcome.error_type}: {outcome.error_message}"
        if isinstance(outcome, RetryScheduled):
            return ProgressUpdate(
                task_id,
                worker_type,
                TaskStatus.RETRY_SCHEDULED,
                attempt,
                error_message=error_message,
                next_retry_at=outcome.next_retry_at,
                trace_id=trace_id,
            )
        return ProgressUpdate(
            task_id,
            worker_type,
            TaskStatus.FAILED,
            attempt,
            error_message=error_message,
            trace_id=trace_id,
        )


def _saved_state(ctx: TaskContext) -> str | None:
    """``ctx.state`` as the JSON the retry copy carries; None (logged) when it cannot be."""
    try:
        text = json.dumps(ctx.state, ensure_ascii=True, allow_nan=False)
    except (TypeError, ValueError) as error:
        ctx.logger.error("ctx.state is not JSON ({}); the retry starts without it", error)
        return None
    if len(text) > MAX_STATE_BYTES:
        ctx.logger.error(
            "ctx.state is {} bytes, over {}; the retry starts without it",
            len(text),
            MAX_STATE_BYTES,
        )
        return None
    return text


class _SilentReporter(ProgressReporter):
    """Drops every update: for tasks that cannot be named."""

    def report(self, update: ProgressUpdate) -> None:
        """Nothing to do."""

    def close(self, timeout_s: float) -> None:
        """Nothing to flush."""


_SILENT = _SilentReporter()


def _undecodable(
    message_id: str | None, attempt: int, reason: str, trace_id: str | None
) -> TaskRun:
    outcome = DeadLettered("InvalidJSON", reason)
    return TaskRun(message_id or UNKNOWN_TASK_ID, attempt, outcome, bool(message_id), trace_id)


#: The final status of each outcome (a dead letter: FAILED).
_FINAL_STATUSES = {Completed: TaskStatus.COMPLETED, RetryScheduled: TaskStatus.RETRY_SCHEDULED}

#: ``task.outcome`` of an attempt's span, as the metrics name outcomes.
_OUTCOME_NAMES = {Completed: "completed", RetryScheduled: "retry_scheduled"}


def _describe(span: Span, run: TaskRun) -> None:
    """Attach the attempt's task id and outcome to its span; a failure is an error status."""
    span.set_attribute("task.id", run.task_id)
    outcome = run.outcome
    span.set_attribute("task.outcome", _OUTCOME_NAMES.get(type(outcome), "dead_lettered"))
    if not isinstance(outcome, Completed):
        span.set_error(outcome.error_type)
