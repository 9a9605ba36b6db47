"""The ASGI application: routing, bearer-token auth, the body size limit and GraphQL over HTTP.

Plain ASGI keeps the HTTP surface small and explicit: five routes, no framework between the
request and the schema. GraphQL runs synchronously in a worker thread because the storage and
the RabbitMQ publisher are blocking clients.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import strawberry
from graphql import (
    FieldNode,
    GraphQLError,
    GraphQLSyntaxError,
    OperationDefinitionNode,
    OperationType,
)
from loguru import logger
from strawberry.exceptions import MissingQueryError
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError

from task_api.access import EVERYTHING, FORBIDDEN, Grants, TokenTable
from task_api.document_cache import DocumentCache
from task_api.metrics import (
    BAD_REQUEST,
    ERROR,
    OK,
    OTHER,
    ProgressCount,
    Tally,
    TaskApiMetrics,
    is_database_error,
    outcome_of_status,
)
from task_api.metrics import FORBIDDEN as FORBIDDEN_OUTCOME
from task_api.operations import NO_FIELDS, RootFields, root_fields
from task_api.page import RECENT_TASKS, render_page
from task_api.report_requests import ReportRequests
from task_api.schema import ApiContext

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

GRAPHQL_PATH = "/graphql"
METRICS_PATH = "/metrics"
#: The operation label, and the name in messages, of the routes other than GraphQL's.
_ROUTE_OPERATIONS = {"/": "page", METRICS_PATH: "metrics"}
_ROUTE_NAMES = {"/": "the page", METRICS_PATH: "/metrics"}
#: Threads running GraphQL requests; the store serialises its work anyway, so these mostly
#: wait, and a few slow broker calls leave plenty for everything else.
GRAPHQL_THREADS = 32


@dataclass(frozen=True)
class RequestLimits:
    """What one HTTP request may carry; each has a ``TASK_API_MAX_...`` variable."""

    max_body_bytes: int
    max_query_bytes: int
    max_json_depth: int


def reports_progress_only(cache: DocumentCache, query: str) -> bool:
    """True when ``query`` is a mutation of ``reportTaskProgress`` fields and nothing else.

    Such a request (a worker's batch of reports) runs in one storage transaction: one commit
    for the batch instead of one per report. Anything else (a submission publishing to
    RabbitMQ, fragments, several operations) is left alone; so is a document that does not
    parse (the schema reports why). Parsed through the cache the schema uses, so a document
    is parsed once for both.
    """
    try:
        document = cache.parse(query)
    except GraphQLError:
        return False
    if len(document.definitions) != 1:
        return False
    operation = document.definitions[0]
    return (
        isinstance(operation, OperationDefinitionNode)
        and operation.operation is OperationType.MUTATION
        and all(
            isinstance(selection, FieldNode) and selection.name.value == "reportTaskProgress"
            for selection in operation.selection_set.selections
        )
    )


@dataclass
class GraphQLRequest:
    """A decoded GraphQL request, and what the thread that runs it learns about it."""

    query: str
    variables: dict[str, Any] | None
    operation_name: str | None
    fields: RootFields = NO_FIELDS
    progress: ProgressCount = field(default_factory=ProgressCount)


def json_depth(value: Any) -> int:
    """How deeply lists and objects nest in a decoded JSON value (iteratively: no recursion)."""
    if not isinstance(value, dict | list):
        return 0
    deepest = 0
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        deepest = max(deepest, depth)
        # Only containers are pushed: a worker's batch is mostly scalars.
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, dict | list):
                pending.append((child, depth + 1))
    return deepest


class BadRequest(Exception):
    """The request cannot be handled; carries the HTTP status, a one-line reason and a code."""

    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class TaskApiApp:
    """The task-api ASGI application.

    Routes: ``POST /graphql`` (GraphQL, ``application/json`` body), ``GET /`` (the HTML
    page, ``read`` scope), ``GET /metrics`` (Prometheus, ``read`` scope unless
    ``metrics_public``), ``GET /healthz`` (liveness, no auth, reveals nothing). With
    ``tokens`` every other route needs ``Authorization: Bearer <token>``, and each operation
    the scope it needs (see :mod:`task_api.access`); without, anyone may do anything. Every
    request is counted in ``metrics`` (see :mod:`task_api.metrics`).
    """

    def __init__(
        self,
        context: ApiContext,
        *,
        schema: strawberry.Schema,
        documents: DocumentCache,
        tokens: TokenTable | None,
        limits: RequestLimits,
        metrics: TaskApiMetrics,
        metrics_public: bool = False,
    ) -> None:
        self._context = context
        self._schema = schema
        self._documents = documents
        self._reports = ReportRequests(schema, documents)
        # Its own pool, larger than asyncio's default, so that submissions waiting on a slow
        # broker cannot take every thread and stall progress reports behind them.
        self._executor = ThreadPoolExecutor(
            max_workers=GRAPHQL_THREADS, thread_name_prefix="graphql"
        )
        self._tokens = tokens
        self._limits = limits
        self._metrics = metrics
        self._metrics_public = metrics_public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        tally = await self._serve(scope, receive, send)
        self._metrics.request_served(tally, time.perf_counter() - started)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> Tally:
        """Answer one request; what it was and how it ended, for the metrics."""
        path, method = scope["path"], scope["method"]
        reading = method in ("GET", "HEAD")
        if path == "/healthz" and reading:
            await _send_json(send, 200, {"status": "ok"})
            return {("healthz", OK): 1}
        if path == METRICS_PATH and reading and self._metrics_public:
            return await self._metrics_text(send)
        if path not in ("/", GRAPHQL_PATH, METRICS_PATH):
            await _send_json(send, 404, {"errors": [{"message": f"no such path: {path}"}]})
            return {(OTHER, BAD_REQUEST): 1}
        operation = _ROUTE_OPERATIONS.get(path, OTHER)
        grants = self._grants(scope)
        if grants is None:
            await _send_error(
                send,
                401,
                "missing or wrong bearer token (Authorization header)",
                "UNAUTHENTICATED",
                extra_headers=[(b"www-authenticate", b"Bearer")],
            )
            return {(operation, FORBIDDEN_OUTCOME): 1}
        if path == GRAPHQL_PATH:
            if method != "POST":
                await _send_json(
                    send,
                    405,
                    {"errors": [{"message": "send GraphQL requests with POST"}]},
                    extra_headers=[(b"allow", b"POST")],
                )
                return {(OTHER, BAD_REQUEST): 1}
            return await self._graphql(scope, receive, send, grants)
        if not reading:
            message = f"{_ROUTE_NAMES[path]} is read-only"
            await _send_json(send, 405, {"errors": [{"message": message}]})
            return {(operation, BAD_REQUEST): 1}
        if not grants.may_read():
            message = f"{_ROUTE_NAMES[path]} needs the 'read' scope"
            await _send_error(send, 403, message, FORBIDDEN)
            return {(operation, FORBIDDEN_OUTCOME): 1}
        if path == "/":
            return await self._page(send)
        return await self._metrics_text(send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self._executor.shutdown(wait=True)
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _grants(self, scope: Scope) -> Grants | None:
        """What the request's bearer token allows; None when it must be refused (401)."""
        if self._tokens is None:
            return EVERYTHING
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer":
            return None
        return self._tokens.grants_for(token.strip())

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self._limits.max_body_bytes
        too_large = BadRequest(413, f"request body over {limit} bytes", "BODY_TOO_LARGE")
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    @staticmethod
    def _require_json(scope: Scope) -> None:
        content_type = dict(scope["headers"]).get(b"content-type", b"")
        media_type = content_type.split(b";", 1)[0].strip().lower()
        if media_type != b"application/json":
            # A browser may POST text/plain or a form across sites without asking first;
            # application/json needs a CORS preflight, which task-api never grants.
            raise BadRequest(
                415, "send GraphQL requests as Content-Type: application/json", "UNSUPPORTED_MEDIA"
            )

    def _decode(self, body: bytes) -> tuple[str, dict[str, Any] | None, Any]:
        """The query, variables and operation name of a request; :class:`BadRequest` if not."""
        try:
            request = json.loads(body)
        except RecursionError:
            raise BadRequest(400, "request body is JSON nested too deeply", "BAD_REQUEST") from None
        except ValueError:
            raise BadRequest(400, "request body is not JSON (UTF-8)", "BAD_REQUEST") from None
        if json_depth(request) > self._limits.max_json_depth:
            raise BadRequest(
                400,
                f"request body is JSON nested deeper than {self._limits.max_json_depth} levels",
                "BAD_REQUEST",
            )
        if not isinstance(request, dict) or not isinstance(request.get("query"), str):
            raise BadRequest(400, "expected a JSON object with a 'query' string", "BAD_REQUEST")
        variables = request.get("variables")
        if variables is not None and not isinstance(variables, dict):
            raise BadRequest(400, "'variables' must be an object", "BAD_REQUEST")
        operation_name = request.get("operationName")
        if operation_name is not None and not isinstance(operation_name, str):
            raise BadRequest(400, "'operationName' must be a string", "BAD_REQUEST")
        query: str = request["query"]
        # Refused before parsing: the length alone decides, and parsing is what costs.
        if len(query.encode("utf-8", "surrogatepass")) > self._limits.max_query_bytes:
            raise BadRequest(
                413, f"query over {self._limits.max_query_bytes} bytes", "QUERY_TOO_LARGE"
            )
        return query, variables, operation_name

    async def _graphql(self, scope: Scope, receive: Receive, send: Send, grants: Grants) -> Tally:
        try:
            self._require_json(scope)
            body = await self._read_body(scope, receive)
            request = GraphQLRequest(*self._decode(body))
        except BadRequest as error:
            await _send_error(send, error.status, str(error), error.code)
            return {(OTHER, outcome_of_status(error.status)): 1}
        # The caller's trace context, for submitTask (checked there: any text may come).
        traceparent = dict(scope["headers"]).get(b"traceparent")
        context = replace(
            self._context,
            grants=grants,
            progress=request.progress,
            traceparent=None if traceparent is None else traceparent.decode("latin-1"),
        )
        execute = functools.partial(self._execute, request, context)
        try:
            result = await asyncio.get_running_loop().run_in_executor(self._executor, execute)
        except BadRequest as error:
            await _send_error(send, error.status, str(error), error.code)
            return {(OTHER, outcome_of_status(error.status)): 1}
        except Exception as error:  # noqa: BLE001 - the client is told, and may send it again
            # strawberry turns a resolver's errors into GraphQL errors; what reaches here is a
            # batch of reports whose commit failed (rolled back whole) or a bug.
            logger.exception("GraphQL request failed outside its resolvers")
            self._count_if_database_error(error)
            await _send_error(
                send, 503, "task storage unavailable; send the request again", "UNAVAILABLE"
            )
            return request.fields.every(ERROR)
        self._metrics.progress_updates(request.progress)
        errors: list[GraphQLError] = result.errors or []
        for graphql_error in errors:
            if graphql_error.original_error is not None:
                self._count_if_database_error(graphql_error.original_error)
        response: dict[str, Any] = {"data": result.data}
        if errors:
            response["errors"] = [_formatted(error) for error in errors]
        await _send_json(send, 200, response)
        return request.fields.outcomes(errors)

    def _count_if_database_error(self, error: BaseException) -> None:
        if is_database_error(error):
            self._metrics.database_error()

    def _execute(self, request: GraphQLRequest, context: ApiContext) -> Any:
        query = request.query
        request.fields = root_fields(self._documents, query, request.operation_name)
        run = functools.partial(
            self._schema.execute_sync,
            query,
            variable_values=request.variables,
            context_value=context,
            operation_name=request.operation_name,
        )
        try:
            if not reports_progress_only(self._documents, query):
                return run()
            answered = self._reports.answer(
                query, request.variables, request.operation_name, context
            )
            if answered is not None:
                return answered
            # Only the store is waited on inside the batch (no broker call), see write_batch.
            with context.store.write_batch():
                return run()
        except MissingQueryError:
            raise BadRequest(400, "the query is empty", "BAD_REQUEST") from None
        except CannotGetOperationTypeError:
            raise BadRequest(
                400, "no operation to run: give 'operationName' of one in the query", "BAD_REQUEST"
            ) from None
        except InvalidOperationTypeError:
            raise BadRequest(400, "only queries and mutations are served", "BAD_REQUEST") from None

    async def _metrics_text(self, send: Send) -> Tally:
        body, content_type = self._metrics.exposition()
        await _send(send, 200, body, content_type.encode())
        return {("metrics", OK): 1}

    async def _page(self, send: Send) -> Tally:
        try:
            page = await asyncio.to_thread(
                self._context.store.list_tasks,
                status=None,
                queue=None,
                first=RECENT_TASKS,
                after_seq=None,
            )
        except Exception as error:  # noqa: BLE001 - the page says so, rather than hanging up
            logger.exception("could not read tasks for the page")
            self._count_if_database_error(error)
            await _send(send, 503, b"task storage unavailable", b"text/plain; charset=utf-8")
            return {("page", ERROR): 1}
        html = render_page(page.tasks).encode()
        await _send(send, 200, html, b"text/html; charset=utf-8")
        return {("page", OK): 1}


def _formatted(error: GraphQLError) -> dict[str, Any]:
    """An error as GraphQL sends it, with a stable ``extensions.code`` when it has none.

    Errors without a path come before execution: the document did not parse (or had too
    many tokens) or did not validate (unknown field, too deep, too many aliases).
    """
    formatted: dict[str, Any] = dict(error.formatted)
    extensions = dict(formatted.get("extensions") or {})
    if "code" not in extensions and error.path is None:
        syntax = isinstance(error, GraphQLSyntaxError)
        extensions["code"] = "GRAPHQL_PARSE_FAILED" if syntax else "GRAPHQL_VALIDATION_FAILED"
        formatted["extensions"] = extensions
    return formatted


async def _send_error(
    send: Send,
    status: int,
    message: str,
    code: str,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    payload = {"errors": [{"message": message, "extensions": {"code": code}}]}
    await _send_json(send, status, payload, extra_headers)


async def _send_json(
    send: Send, status: int, payload: Any, extra_headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await _send(send, status, json.dumps(payload).encode(), b"application/json", extra_headers)


async def _send(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"x-content-type-options", b"nosniff"),
        *(extra_headers or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
