"""The GraphQL schema of task-api (strawberry): progress reports, submission and queries."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import strawberry
from graphql import (
    ASTValidationRule,
    GraphQLError,
    GraphQLResolveInfo,
    GraphQLSchema,
    specified_rules,
)
from loguru import logger
from strawberry.extensions import AddValidationRules
from strawberry.extensions.max_aliases import create_validator as max_aliases_rule
from strawberry.extensions.query_depth_limiter import create_validator as max_depth_rule
from strawberry.scalars import JSON
from strawberry.types import ExecutionContext, Info
from worker_framework.tracing import new_trace, parse_traceparent

from task_api.access import EVERYTHING, READ, READ_PAYLOAD, REPORT, SUBMIT, Grants, forbidden
from task_api.document_cache import CachedDocuments, DocumentCache
from task_api.inputs import MAX_ID_LENGTH, PageModel, ProgressInputModel, SubmissionModel, validate
from task_api.metrics import ProgressCount
from task_api.outbox import Outbox, SubmissionNotQueued
from task_api.records import HistoryEntry, Status, TaskState
from task_api.storage import TaskStore

# Status is the framework's TaskStatus: the schema's enum is the contract workers report in.
# strawberry.enum returns the same class with its GraphQL definition attached.
TaskStatus = strawberry.enum(Status, name="TaskStatus", description="Lifecycle of a task.")

_CURSOR_PREFIX = "task:"


@dataclass(frozen=True)
class ApiContext:
    """What every resolver needs, handed to strawberry as the execution context.

    ``grants`` are the caller's, ``progress`` counts its reports and ``traceparent`` is the
    request's W3C ``traceparent`` header (any text, unchecked): the application makes one
    context per request.
    """

    store: TaskStore
    outbox: Outbox
    grants: Grants = EVERYTHING
    progress: ProgressCount = field(default_factory=ProgressCount)
    traceparent: str | None = None


def _context(info: Info[ApiContext, None]) -> ApiContext:
    return info.context


def _require_payload_scope(info: Info[ApiContext, None]) -> None:
    if not _context(info).grants.may_read_payloads():
        raise forbidden(READ_PAYLOAD, f"reading {info.field_name}")


def _require_read_scope(info: Info[ApiContext, None]) -> None:
    if not _context(info).grants.may_read():
        raise forbidden(READ, info.field_name)


def _now() -> datetime:
    return datetime.now(UTC)


def encode_cursor(seq: int) -> str:
    """An opaque cursor for the task with sequence number ``seq``."""
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{seq}".encode()).decode()


def decode_cursor(cursor: str) -> int:
    """The sequence number inside ``cursor``; a GraphQL error naming ``after`` if malformed."""
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
        if text.startswith(_CURSOR_PREFIX):
            return int(text[len(_CURSOR_PREFIX) :])
    except ValueError:
        pass
    raise GraphQLError(
        "invalid after: not a cursor returned by tasks", extensions={"fields": ["after"]}
    )


@strawberry.type(description="One accepted update of a task, in the order it was applied.")
class TaskEvent:
    status: TaskStatus  # type: ignore[valid-type]
    recorded_at: datetime
    worker_type: str | None
    progress: int | None
    current_step: str | None
    attempt: int | None
    error_message: str | None
    next_retry_at: datetime | None
    result_value: strawberry.Private[Any]

    @strawberry.field
    def result(self, info: Info[ApiContext, None]) -> JSON | None:
        """The result reported with this update (needs the ``read:payload`` scope)."""
        _require_payload_scope(info)
        return self.result_value  # type: ignore[no-any-return]

    @classmethod
    def from_entry(cls, entry: HistoryEntry) -> TaskEvent:
        """Build from a storage record."""
        return cls(
            status=entry.status,
            recorded_at=entry.recorded_at,
            worker_type=entry.worker_type,
            progress=entry.progress,
            current_step=entry.current_step,
            attempt=entry.attempt,
            error_message=entry.error_message,
            next_retry_at=entry.next_retry_at,
            result_value=entry.result,
        )


@strawberry.type(description="A task: its current state and the history of its updates.")
class Task:
    id: strawberry.ID
    queue: str | None
    status: TaskStatus  # type: ignore[valid-type]
    progress: int
    current_step: str | None
    attempt: int | None
    worker_type: str | None
    error_message: str | None
    next_retry_at: datetime | None
    created_at: datetime
    updated_at: datetime
    trace_id: str | None = strawberry.field(
        description="The W3C trace id (32 hex digits) of the task's messages, logs and spans."
    )
    result_value: strawberry.Private[Any]
    payload_value: strawberry.Private[Any]

    @strawberry.field
    def result(self, info: Info[ApiContext, None]) -> JSON | None:
        """What the worker returned (needs the ``read:payload`` scope)."""
        _require_payload_scope(info)
        return self.result_value  # type: ignore[no-any-return]

    @strawberry.field
    def payload(self, info: Info[ApiContext, None]) -> JSON | None:
        """The submitted task body (needs the ``read:payload`` scope)."""
        _require_payload_scope(info)
        return self.payload_value  # type: ignore[no-any-return]

    @strawberry.field
    def history(self, info: Info[ApiContext, None]) -> list[TaskEvent]:
        """Accepted updates, oldest first."""
        return [TaskEvent.from_entry(e) for e in _context(info).store.history(str(self.id))]

    @classmethod
    def from_state(cls, state: TaskState) -> Task:
        """Build from a storage record."""
        return cls(
            id=strawberry.ID(state.id),
            queue=state.queue,
            status=state.status,
            progress=state.progress,
            current_step=state.current_step,
            attempt=state.attempt,
            worker_type=state.worker_type,
            error_message=state.error_message,
            next_retry_at=state.next_retry_at,
            result_value=state.result,
            payload_value=state.payload,
            created_at=state.created_at,
            updated_at=state.updated_at,
            trace_id=state.trace_id,
        )


@strawberry.type
class TaskEdge:
    cursor: str
    node: Task


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type(description="A page of tasks, newest first.")
class TaskConnection:
    edges: list[TaskEdge]
    page_info: PageInfo


@strawberry.input(description="A progress report from a worker.")
class TaskProgressInput:
    task_id: strawberry.ID
    worker_type: str
    status: TaskStatus  # type: ignore[valid-type]
    progress: int | None = None
    current_step: str | None = None
    attempt: int | None = None
    error_message: str | None = None
    next_retry_at: datetime | None = None
    result: JSON | None = None
    trace_id: str | None = strawberry.field(
        default=None, description="The task's W3C trace id; stored when the task has none yet."
    )


@strawberry.type
class Query:
    @strawberry.field
    def task(self, info: Info[ApiContext, None], id: strawberry.ID) -> Task | None:
        """One task by id, or null when unknown."""
        _require_read_scope(info)
        state = _context(info).store.get(str(id))
        return None if state is None else Task.from_state(state)

    @strawberry.field
    def tasks(
        self,
        info: Info[ApiContext, None],
        status: TaskStatus | None = None,  # type: ignore[valid-type]
        queue: str | None = None,
        first: int = 20,
        after: str | None = None,
    ) -> TaskConnection:
        """Tasks newest first, optionally filtered, with cursor paging."""
        _require_read_scope(info)
        validate(PageModel, "tasks", {"first": first})
        after_seq = None if after is None else decode_cursor(after)
        page = _context(info).store.list_tasks(
            status=None if status is None else Status(status).value,
            queue=queue,
            first=first,
            after_seq=after_seq,
        )
        edges = [TaskEdge(cursor=encode_cursor(t.seq), node=Task.from_state(t)) for t in page.tasks]
        return TaskConnection(
            edges=edges,
            page_info=PageInfo(
                has_next_page=page.has_next_page,
                end_cursor=edges[-1].cursor if edges else None,
            ),
        )


@strawberry.type
class Mutation:
    @strawberry.mutation
    def report_task_progress(
        self, info: Info[ApiContext, None], input: TaskProgressInput
    ) -> Task | None:
        """Record a worker's progress report; stale reports are ignored.

        Nullable on purpose: in a request carrying several reports (aliased fields), an error
        in one nulls only that field, and the reports after it are still applied.
        """
        values: dict[str, Any] = {
            "taskId": str(input.task_id),
            "workerType": input.worker_type,
            "status": input.status,
            "progress": input.progress,
            "currentStep": input.current_step,
            "attempt": input.attempt,
            "errorMessage": input.error_message,
            "nextRetryAt": input.next_retry_at,
            "result": input.result,
            "traceId": input.trace_id,
        }
        return _report(_context(info), values)

    @strawberry.mutation
    def submit_task(
        self,
        info: Info[ApiContext, None],
        queue: str,
        payload: JSON,
        id: strawberry.ID | None = None,
    ) -> Task:
        """Record a task QUEUED and publish it to RabbitMQ (confirmed); idempotent by id.

        The message carries a W3C ``traceparent``: the request's own ``traceparent`` header
        when it is valid, else a new trace; the task records its trace id.
        """
        submission: SubmissionModel = validate(
            SubmissionModel, "submitTask", {"queue": queue, "payload": payload, "id": id}
        )
        context = _context(info)
        if not context.grants.may_submit(submission.queue):
            raise forbidden(f"{SUBMIT}:{submission.queue}", f"submitTask to '{submission.queue}'")
        task_id = submission.id or _payload_id(submission.payload) or uuid.uuid4().hex
        body = {**submission.payload, "id": task_id}
        trace = parse_traceparent(context.traceparent) or new_trace()
        try:
            state = context.outbox.submit(task_id, submission.queue, body, trace)
        except SubmissionNotQueued as error:
            logger.warning("task {} not queued on {}: {}", task_id, submission.queue, error)
            code = "PUBLISH_PENDING" if error.recorded else "PUBLISH_FAILED"
            raise GraphQLError(str(error), extensions={"code": code, "taskId": task_id}) from None
        return Task.from_state(state)


def _report(context: ApiContext, values: dict[str, Any]) -> Task:
    """Validate a ``TaskProgressInput`` (GraphQL field names) and apply it."""
    if not context.grants.may_report():
        raise forbidden(REPORT, "reportTaskProgress")
    model: ProgressInputModel = validate(ProgressInputModel, "input", values)
    now = _now()
    state = context.store.apply_report(model.to_report(), now)
    # The store stamps a task it changed with ``now``; a stale report leaves it as it was.
    context.progress.add(stored=state.updated_at == now)
    return Task.from_state(state)


def _resolve_report_directly(
    _root: object, info: GraphQLResolveInfo[ApiContext], input: dict[str, Any]
) -> Task:
    """``reportTaskProgress`` on graphql-core's coerced input, without strawberry's wrapper.

    graphql-core has already coerced the input (types, enum, ``DateTime``, required fields)
    into a dict keyed by GraphQL field names, which is what the pydantic model reads.
    """
    return _report(info.context, input)


def _install_direct_report_resolver(graphql_schema: GraphQLSchema | None) -> None:
    """Resolve ``reportTaskProgress`` with :func:`_resolve_report_directly`.

    Why: a worker's batch carries hundreds of reports, and strawberry's per-call argument
    conversion (re-resolving the input type's annotations for every field) took over a third
    of the server's time per report; the pydantic model validates the same values anyway.
    Errors and results are unchanged. Should a strawberry release change how it exposes the
    graphql-core schema, the strawberry resolver above simply stays in place.
    """
    mutation = None if graphql_schema is None else graphql_schema.mutation_type
    field = None if mutation is None else mutation.fields.get("reportTaskProgress")
    if field is not None and set(field.args) == {"input"}:
        field.resolve = _resolve_report_directly


def _payload_id(payload: dict[str, Any]) -> str | None:
    value = payload.get("id")
    if not isinstance(value, str) or not value:
        return None
    if len(value) > MAX_ID_LENGTH:
        raise GraphQLError(
            f"invalid submitTask: payload.id: longer than {MAX_ID_LENGTH} characters",
            extensions={"code": "BAD_USER_INPUT", "fields": ["payload.id"]},
        )
    return value


@dataclass(frozen=True)
class QueryLimits:
    """What one GraphQL document may cost; each has a ``TASK_API_MAX_...`` variable."""

    max_depth: int
    max_aliases: int
    max_tokens: int
    document_cache_bytes: int


class TaskApiSchema(strawberry.Schema):
    """strawberry's schema, logging only the errors that are task-api's to fix.

    strawberry logs every error of every request with a traceback by default; a client's
    invalid query, or a refused scope, is the client's to read in the response, and a flood
    of them must not flood the log.
    """

    #: Every rule a document is validated with: graphql-core's and the cost limits (the same
    #: tuple as strawberry's execution, so both share one cache entry per document).
    validation_rules: tuple[type[ASTValidationRule], ...] = ()

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Log errors raised by something other than GraphQL's own checks and ours."""
        for error in errors:
            original = error.original_error
            if original is not None and not isinstance(original, GraphQLError):
                logger.opt(exception=original).error("GraphQL resolver failed: {}", error.message)


def build_schema(limits: QueryLimits) -> tuple[strawberry.Schema, DocumentCache]:
    """The schema with its cost limits, and the document cache it parses through."""
    cache = DocumentCache(budget_bytes=limits.document_cache_bytes, max_tokens=limits.max_tokens)
    # Built once: the validation cache is keyed by the rule classes, and the limiter
    # extensions would make new classes for every request.
    rules: list[type[ASTValidationRule]] = [
        max_depth_rule(limits.max_depth, should_ignore=None),
        max_aliases_rule(limits.max_aliases),
    ]
    built = TaskApiSchema(
        query=Query,
        mutation=Mutation,
        # Factories, not instances: strawberry builds the extensions anew for each request
        # (an instance shared by concurrent requests would mix up their contexts).
        extensions=[lambda: AddValidationRules(rules), lambda: CachedDocuments(cache)],
    )
    built.validation_rules = (*specified_rules, *rules)
    # Reaches into strawberry's graphql-core schema (``_schema``): see the function's docstring.
    _install_direct_report_resolver(getattr(built, "_schema", None))
    return built, cache
