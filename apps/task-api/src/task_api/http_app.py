"""The ASGI application: routing, bearer-token auth, the body size limit and GraphQL over HTTP.

Plain ASGI keeps the HTTP surface small and explicit: four routes, no framework between the
request and the schema. GraphQL runs synchronously in a worker thread because the storage and
the RabbitMQ publisher are blocking clients.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from graphql import FieldNode, GraphQLError, OperationDefinitionNode, OperationType, parse
from loguru import logger

from task_api.page import RECENT_TASKS, render_page
from task_api.schema import ApiContext, schema

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

GRAPHQL_PATH = "/graphql"
#: Threads running GraphQL requests; the store serialises its work anyway, so these mostly
#: wait, and a few slow broker calls leave plenty for everything else.
GRAPHQL_THREADS = 32
#: Distinct documents remembered by :func:`reports_progress_only` (workers send a handful).
_SHAPE_CACHE_SIZE = 256


@functools.lru_cache(maxsize=_SHAPE_CACHE_SIZE)
def reports_progress_only(query: str) -> bool:
    """True when ``query`` is a mutation of ``reportTaskProgress`` fields and nothing else.

    Such a request (a worker's batch of reports) runs in one storage transaction: one commit
    for the batch instead of one per report. Anything else (a submission publishing to
    RabbitMQ, fragments, several operations) is left alone; so is a document that does not
    parse (the schema reports why).
    """
    try:
        document = parse(query, no_location=True)
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


class BodyTooLarge(Exception):
    """The request body is over the configured limit."""


class TaskApiApp:
    """The task-api ASGI application.

    Routes: ``POST /graphql`` (GraphQL, JSON body), ``GET /`` (the HTML page),
    ``GET /healthz`` (liveness, no auth, reveals nothing). With ``tokens`` non-empty every
    other route needs ``Authorization: Bearer <token>``.
    """

    def __init__(self, context: ApiContext, *, tokens: list[str], max_body_bytes: int) -> None:
        self._context = context
        # Its own pool, larger than asyncio's default, so that submissions waiting on a slow
        # broker cannot take every thread and stall progress reports behind them.
        self._executor = ThreadPoolExecutor(
            max_workers=GRAPHQL_THREADS, thread_name_prefix="graphql"
        )
        self._tokens = [token.encode() for token in tokens]
        self._max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if path == "/healthz" and method in ("GET", "HEAD"):
            await _send_json(send, 200, {"status": "ok"})
            return
        if path not in ("/", GRAPHQL_PATH):
            await _send_json(send, 404, {"errors": [{"message": f"no such path: {path}"}]})
            return
        if not self._authorized(scope):
            await _send_json(
                send,
                401,
                {"errors": [{"message": "missing or wrong bearer token (Authorization header)"}]},
                extra_headers=[(b"www-authenticate", b"Bearer")],
            )
            return
        if path == "/":
            if method not in ("GET", "HEAD"):
                await _send_json(send, 405, {"errors": [{"message": "the page is read-only"}]})
                return
            await self._page(send)
            return
        if method != "POST":
            await _send_json(
                send,
                405,
                {"errors": [{"message": "send GraphQL requests with POST"}]},
                extra_headers=[(b"allow", b"POST")],
            )
            return
        await self._graphql(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self._executor.shutdown(wait=True)
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _authorized(self, scope: Scope) -> bool:
        if not self._tokens:
            return True
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        presented = token.strip()
        # Compare against every token so the time taken does not hint at which one matched.
        matches = [hmac.compare_digest(presented, known) for known in self._tokens]
        return any(matches)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max_body_bytes:
            raise BodyTooLarge
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body_bytes:
                raise BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _graphql(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            body = await self._read_body(scope, receive)
        except BodyTooLarge:
            await _send_json(
                send,
                413,
                {"errors": [{"message": f"request body over {self._max_body_bytes} bytes"}]},
            )
            return
        try:
            request = json.loads(body)
        except ValueError:
            await _send_json(send, 400, {"errors": [{"message": "request body is not JSON"}]})
            return
        if not isinstance(request, dict) or not isinstance(request.get("query"), str):
            await _send_json(
                send, 400, {"errors": [{"message": "expected a JSON object with a 'query' string"}]}
            )
            return
        variables = request.get("variables")
        if variables is not None and not isinstance(variables, dict):
            await _send_json(send, 400, {"errors": [{"message": "'variables' must be an object"}]})
            return
        execute = functools.partial(
            self._execute,
            request["query"],
            variables,
            request.get("operationName"),
        )
        try:
            result = await asyncio.get_running_loop().run_in_executor(self._executor, execute)
        except Exception:  # noqa: BLE001 - the client is told, and may send it again
            # strawberry turns a resolver's errors into GraphQL errors; what reaches here is a
            # batch of reports whose commit failed (rolled back whole) or a bug.
            logger.exception("GraphQL request failed outside its resolvers")
            await _send_json(
                send,
                503,
                {"errors": [{"message": "task storage unavailable; send the request again"}]},
            )
            return
        response: dict[str, Any] = {"data": result.data}
        if result.errors:
            response["errors"] = [error.formatted for error in result.errors]
        await _send_json(send, 200, response)

    def _execute(
        self, query: str, variables: dict[str, Any] | None, operation_name: str | None
    ) -> Any:
        run = functools.partial(
            schema.execute_sync,
            query,
            variable_values=variables,
            context_value=self._context,
            operation_name=operation_name,
        )
        if not reports_progress_only(query):
            return run()
        # Only the store is waited on inside the batch (no broker call), see write_batch.
        with self._context.store.write_batch():
            return run()

    async def _page(self, send: Send) -> None:
        try:
            page = await asyncio.to_thread(
                self._context.store.list_tasks,
                status=None,
                queue=None,
                first=RECENT_TASKS,
                after_seq=None,
            )
        except Exception:  # noqa: BLE001 - the page says so rather than dropping the connection
            logger.exception("could not read tasks for the page")
            await _send(send, 503, b"task storage unavailable", b"text/plain; charset=utf-8")
            return
        html = render_page(page.tasks).encode()
        await _send(send, 200, html, b"text/html; charset=utf-8")


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
