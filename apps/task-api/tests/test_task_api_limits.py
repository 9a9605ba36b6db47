"""Bounded cost per request: size, depth, aliases, tokens and memory, each refused clearly."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from task_api.document_cache import DocumentCache
from task_api.testing import TaskApiServer
from worker_framework.graphql_client import batch_document

#: The documented bound (README, "Security"): with the default limits, a burst of oversized
#: and expensive queries raises task-api's resident memory by less than this.
RSS_GROWTH_BOUND_BYTES = 160 * 1024 * 1024


@pytest.fixture(scope="module")
def small_limits():
    """A task-api with small limits, so that each is easy to reach."""
    env = {
        "TASK_API_MAX_QUERY_BYTES": "2048",
        "TASK_API_MAX_DEPTH": "3",
        "TASK_API_MAX_ALIASES": "3",
        "TASK_API_MAX_TOKENS": "200",
    }
    with TaskApiServer(extra_env=env) as server:
        yield server


def post(url: str, query: str, variables: dict[str, Any] | None = None) -> requests.Response:
    return requests.post(url, json={"query": query, "variables": variables or {}}, timeout=60)


def first_error(response: requests.Response) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["errors"][0]
    return error


def test_a_query_over_the_size_limit_is_refused_before_parsing(small_limits):
    query = "{ tasks { edges { cursor } } }" + " " * 3000

    response = post(small_limits.url, query)

    assert response.status_code == 413
    assert first_error(response)["extensions"]["code"] == "QUERY_TOO_LARGE"
    assert "2048 bytes" in first_error(response)["message"]


def test_a_query_deeper_than_the_limit_is_refused(small_limits):
    query = "{ tasks { edges { node { history { result } } } } }"

    response = post(small_limits.url, query)

    assert response.status_code == 200
    error = first_error(response)
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "exceeds maximum operation depth of 3" in error["message"]
    assert response.json()["data"] is None


def test_a_query_with_more_aliases_than_the_limit_is_refused(small_limits):
    query = "{ a: tasks { pageInfo { hasNextPage } } b: tasks { pageInfo { hasNextPage } }" + (
        " c: tasks { pageInfo { hasNextPage } } d: tasks { pageInfo { hasNextPage } } }"
    )

    error = first_error(post(small_limits.url, query))

    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "4 aliases found. Allowed: 3" in error["message"]


def test_a_query_with_more_tokens_than_the_limit_is_refused_while_parsing(small_limits):
    query = "{ tasks { pageInfo { " + "a " * 300 + "} } }"

    error = first_error(post(small_limits.url, query))

    assert error["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    assert "more than 200 tokens" in error["message"]


def test_comments_count_as_tokens(small_limits):
    query = "{ tasks { pageInfo { hasNextPage } } }\n" + "#\n" * 300

    error = first_error(post(small_limits.url, query))

    assert error["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"


def test_json_nested_deeper_than_the_limit_is_a_400_with_one_line():
    with TaskApiServer(extra_env={"TASK_API_MAX_JSON_DEPTH": "8"}) as server:
        nested: Any = "leaf"
        for _ in range(9):
            nested = [nested]
        response = post(server.url, "{ __typename }", {"deep": nested})

    assert response.status_code == 400
    error = first_error(response)
    assert error["message"] == "request body is JSON nested deeper than 8 levels"
    assert error["extensions"]["code"] == "BAD_REQUEST"


def test_json_nested_past_pythons_recursion_limit_is_a_400_not_a_500(api):
    body = b'{"query": "{ __typename }", "variables": {"x": ' + b"[" * 100_000 + b"]" * 100_000
    body += b"}}"

    response = requests.post(
        api.url, data=body, headers={"Content-Type": "application/json"}, timeout=60
    )

    assert response.status_code == 400
    assert "nested" in first_error(response)["message"]
    assert requests.get(api.base_url + "/healthz", timeout=10).ok


def test_a_workers_full_batch_of_reports_fits_within_the_default_limits(api):
    count = 256
    variables = {
        f"i{n}": {"taskId": f"batch-{n}-{api.port}", "workerType": "demo", "status": "QUEUED"}
        for n in range(count)
    }

    response = post(api.url, batch_document(count), variables)

    assert response.status_code == 200
    body = response.json()
    assert "errors" not in body, body["errors"][:2]
    assert len(body["data"]) == count


def test_the_document_cache_stays_within_its_byte_budget():
    cache = DocumentCache(budget_bytes=4 * 1024 * 1024, max_tokens=10_000)

    for n in range(200):
        cache.parse("{ task(id: %d) { %s } }" % (n, "id " * 2000))

    assert 0 < cache.total_bytes <= 4 * 1024 * 1024


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc status")


def _burst_of_expensive_queries(url: str) -> list[int]:
    """Oversized, token-heavy and distinct large-but-allowed queries, eight at a time."""
    too_large = ["{ __typename } #%d %s" % (n, "x" * 1_000_000) for n in range(16)]
    too_many_tokens = ["{ t%d: task(id: 1) { %s } }" % (n, "id " * 20_000) for n in range(24)]
    allowed = ["{ t%d: task(id: 1) { %s } }" % (n, "id " * 9_000) for n in range(32)]
    queries = too_large + too_many_tokens + allowed
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda query: post(url, query).status_code, queries))


def test_a_burst_of_oversized_queries_keeps_memory_within_the_documented_bound(tmp_path):
    with TaskApiServer(workdir=tmp_path) as server:
        assert server.pid is not None
        for _ in range(20):  # warm up: imports, first requests, thread pool
            post(server.url, "{ tasks(first: 1) { pageInfo { hasNextPage } } }")
        before = _rss_bytes(server.pid)

        statuses = _burst_of_expensive_queries(server.url)
        after = _rss_bytes(server.pid)
        alive = requests.get(server.base_url + "/healthz", timeout=10).ok

    growth = after - before
    print(json.dumps({"rss_before": before, "rss_after": after, "growth": growth}))
    assert alive
    assert set(statuses) <= {200, 413}
    assert growth < RSS_GROWTH_BOUND_BYTES
