"""task(id) and tasks(status, queue, first, after) on both storage back ends."""

from __future__ import annotations

from typing import Any

from task_api.testing import TaskApiServer, fetch_task

SUBMIT = """
mutation Submit($queue: String!, $id: ID) {
  submitTask(queue: $queue, payload: {}, id: $id) { id }
}
"""
REPORT = """
mutation Report($input: TaskProgressInput!) { reportTaskProgress(input: $input) { id } }
"""
TASKS = """
query Tasks($status: TaskStatus, $queue: String, $first: Int, $after: String) {
  tasks(status: $status, queue: $queue, first: $first, after: $after) {
    edges { cursor node { id status queue } }
    pageInfo { hasNextPage endCursor }
  }
}
"""


def submit_many(api: TaskApiServer, queue: str, count: int) -> list[str]:
    ids = []
    for n in range(count):
        body = api.graphql(SUBMIT, {"queue": queue, "id": f"{queue}-{n}"})
        assert "errors" not in body, body
        ids.append(body["data"]["submitTask"]["id"])
    return ids


def tasks(api: TaskApiServer, **variables: Any) -> dict[str, Any]:
    body = api.graphql(TASKS, variables)
    assert "errors" not in body, body
    page: dict[str, Any] = body["data"]["tasks"]
    return page


def test_an_unknown_task_is_null(api):
    assert fetch_task(api.url, "never-seen") is None


def test_task_shows_timestamps_and_worker_type(api, task_id):
    api.graphql(
        REPORT,
        {"input": {"taskId": task_id, "workerType": "email", "status": "PROCESSING"}},
    )

    task = fetch_task(api.url, task_id)

    assert task is not None
    assert task["workerType"] == "email"
    assert task["createdAt"] <= task["updatedAt"]
    assert task["history"][0]["recordedAt"]


def test_tasks_pages_newest_first_with_cursors_until_the_end(api, queue_name):
    ids = submit_many(api, queue_name, 5)

    seen: list[str] = []
    after = None
    pages = 0
    while True:
        page = tasks(api, queue=queue_name, first=2, after=after)
        pages += 1
        seen += [edge["node"]["id"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]

    assert seen == list(reversed(ids))
    assert pages == 3


def test_tasks_filters_by_status_within_a_queue(api, queue_name):
    ids = submit_many(api, queue_name, 3)
    api.graphql(REPORT, {"input": {"taskId": ids[1], "workerType": "demo", "status": "PROCESSING"}})

    processing = tasks(api, queue=queue_name, status="PROCESSING")
    queued = tasks(api, queue=queue_name, status="QUEUED")

    assert [edge["node"]["id"] for edge in processing["edges"]] == [ids[1]]
    assert [edge["node"]["id"] for edge in queued["edges"]] == [ids[2], ids[0]]


def test_an_empty_page_has_no_end_cursor(api):
    page = tasks(api, queue="no-task-has-this-queue")

    assert page == {"edges": [], "pageInfo": {"hasNextPage": False, "endCursor": None}}


def test_a_page_size_over_the_limit_is_an_error_naming_first(api):
    body = api.graphql(TASKS, {"first": 1000})

    assert body["data"] is None
    assert "first" in body["errors"][0]["message"]


def test_a_malformed_cursor_is_an_error_naming_after(api):
    body = api.graphql(TASKS, {"after": "not-a-cursor"})

    assert body["data"] is None
    assert "after" in body["errors"][0]["message"]
