"""schemathesis generates queries and mutations from the live schema: never a 5xx, never a crash.

Bounded: ``MAX_EXAMPLES`` per operation, no shrinking, and a time budget after which the
remaining examples are skipped. RabbitMQ is pointed at a closed port, so generated submissions
are recorded and left unpublished instead of reaching the shared broker's queues.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import graphql
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from task_api.testing import TaskApiServer, free_port

#: Per GraphQL operation (task, tasks, reportTaskProgress, submitTask).
MAX_EXAMPLES = 150
#: Wall-clock budget for the generated requests of the whole module.
TIME_BUDGET_S = 240.0
_started = time.monotonic()


def _value_node(value: Any) -> graphql.ValueNode:
    """A JSON value as a GraphQL literal (what the ``JSON`` scalar parses)."""
    if isinstance(value, dict):
        fields = tuple(
            graphql.ObjectFieldNode(name=graphql.NameNode(value=key), value=_value_node(item))
            for key, item in value.items()
        )
        return graphql.ObjectValueNode(fields=fields)
    if isinstance(value, list):
        return graphql.ListValueNode(values=tuple(_value_node(item) for item in value))
    if value is None:
        return graphql.NullValueNode()
    if isinstance(value, bool):
        return graphql.BooleanValueNode(value=value)
    if isinstance(value, int):
        return graphql.IntValueNode(value=str(value))
    if isinstance(value, float):
        return graphql.FloatValueNode(value=repr(value))
    return graphql.StringValueNode(value=value)


_names = st.from_regex(r"\A[_A-Za-z][_0-9A-Za-z]{0,12}\Z")
_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_names, children, max_size=4),
    max_leaves=20,
)
# Objects most of the time: a submitted payload must be one, and that path goes furthest.
schemathesis.graphql.scalar(
    "JSON", (st.dictionaries(_names, _json_values, max_size=5) | _json_values).map(_value_node)
)


@pytest.fixture(scope="module")
def fuzzed_api() -> Iterator[TaskApiServer]:
    """A task-api on SQLite whose RabbitMQ is unreachable."""
    env = {"AMQP_URL": f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F"}
    with TaskApiServer(extra_env=env) as server:
        yield server


@pytest.fixture(scope="module")
def graphql_schema(fuzzed_api: TaskApiServer) -> Any:
    """The schema, read by introspection from the running server."""
    return schemathesis.graphql.from_url(fuzzed_api.url)


# schemathesis's own pytest integration (``from_fixture``) reads a pytest internal that
# pytest 9 no longer has; its documented Hypothesis strategy works with any pytest.
@pytest.mark.parametrize(
    "label", ["Query.task", "Query.tasks", "Mutation.reportTaskProgress", "Mutation.submitTask"]
)
def test_generated_requests_never_get_a_server_error(graphql_schema: Any, label: str) -> None:
    operation = graphql_schema.find_operation_by_label(label)
    assert operation is not None, label

    @given(case=operation.as_strategy())
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def call(case: Any) -> None:
        if time.monotonic() - _started > TIME_BUDGET_S:
            return
        response = case.call(timeout=60)

        assert response.status_code < 500, response.text[:500]
        assert "data" in response.json() or "errors" in response.json()

    call()


def test_the_server_is_alive_after_the_generated_requests(fuzzed_api: TaskApiServer) -> None:
    response = requests.get(fuzzed_api.base_url + "/healthz", timeout=10)

    assert response.ok
    assert "Traceback" not in fuzzed_api.log()
