"""A worker's batch request of reports: answered as graphql-core answers it, stored at once."""

from __future__ import annotations

import uuid
from typing import Any

import requests
from task_api.testing import TaskApiServer, fetch_task

FIELDS = "id status progress currentStep attempt workerType errorMessage nextRetryAt queue"


def batch_document(count: int, *, through_fragment: bool) -> str:
    """``count`` aliased reports; with a fragment the request takes graphql-core's own path."""
    selection = f"... on Task {{ {FIELDS} }}" if through_fragment else f"{FIELDS} __typename"
    variables = ", ".join(f"$i{n}: TaskProgressInput!" for n in range(count))
    fields = " ".join(
        f"u{n}: reportTaskProgress(input: $i{n}) {{ {selection} }}" for n in range(count)
    )
    return f"mutation Batch({variables}) {{ {fields} }}"


def mixed_inputs(first: str, second: str) -> list[dict[str, Any]]:
    """Fresh, refused, stale and final reports for two tasks."""
    return [
        {"taskId": first, "workerType": "w", "status": "PROCESSING", "progress": 10},
        {"taskId": second, "workerType": "w", "status": "PROCESSING", "progress": 150},
        {"taskId": first, "workerType": "w", "status": "PROCESSING", "progress": 5},
        {
            "taskId": first,
            "workerType": "w",
            "status": "RETRY_SCHEDULED",
            "attempt": 1,
            "errorMessage": "later",
            "nextRetryAt": "2030-01-01T00:00:00+00:00",
        },
        {"taskId": second, "workerType": "w", "status": "COMPLETED", "result": {"ok": True}},
    ]


def send_batch(api: TaskApiServer, prefix: str, *, through_fragment: bool) -> dict[str, Any]:
    inputs = mixed_inputs(f"{prefix}-1", f"{prefix}-2")
    variables = {f"i{n}": value for n, value in enumerate(inputs)}
    return api.graphql(batch_document(len(inputs), through_fragment=through_fragment), variables)


def without_locations(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in error.items() if k != "locations"} for error in errors]


def test_a_batch_is_answered_as_graphql_core_answers_it(api):
    plain, general = f"plain-{uuid.uuid4().hex}", f"general-{uuid.uuid4().hex}"

    fast = send_batch(api, plain, through_fragment=False)
    slow = send_batch(api, general, through_fragment=True)

    for answer in fast["data"].values():
        if answer is not None:
            assert answer.pop("__typename") == "Task"
    assert str(fast["data"]).replace(plain, "X") == str(slow["data"]).replace(general, "X")
    assert without_locations(fast["errors"]) == without_locations(slow["errors"])
    assert all(error["locations"] for error in fast["errors"])
    assert fast["data"]["u3"]["nextRetryAt"] == "2030-01-01T00:00:00+00:00"


def test_a_refused_report_in_a_batch_is_an_error_of_its_field_and_the_others_are_stored(api):
    prefix = f"bad-{uuid.uuid4().hex}"

    body = send_batch(api, prefix, through_fragment=False)

    assert body["data"]["u1"] is None
    [error] = body["errors"]
    assert error["path"] == ["u1"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "progress" in error["message"]
    first = fetch_task(api.url, f"{prefix}-1")
    second = fetch_task(api.url, f"{prefix}-2")
    assert first is not None and second is not None
    assert first["status"] == "RETRY_SCHEDULED"
    assert [event["progress"] for event in first["history"]] == [10, None]
    assert second["status"] == "COMPLETED" and second["result"] == {"ok": True}


def test_a_batch_with_an_operation_name_naming_no_operation_is_refused_and_stores_nothing(api):
    prefix = f"unnamed-{uuid.uuid4().hex}"
    inputs = mixed_inputs(f"{prefix}-1", f"{prefix}-2")
    body = {
        "query": batch_document(len(inputs), through_fragment=False),
        "variables": {f"i{n}": value for n, value in enumerate(inputs)},
        "operationName": "NotInTheDocument",
    }

    response = requests.post(api.url, json=body, timeout=30)

    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    assert fetch_task(api.url, f"{prefix}-1") is None
