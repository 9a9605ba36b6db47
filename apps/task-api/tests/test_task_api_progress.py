"""reportTaskProgress on both storage back ends: accepted updates, ordering rules, bad input."""

from __future__ import annotations

from typing import Any

from task_api.testing import TaskApiServer, fetch_task

REPORT = """
mutation Report($input: TaskProgressInput!) {
  reportTaskProgress(input: $input) { id status progress }
}
"""


def report(api: TaskApiServer, task_id: str, **fields: Any) -> dict[str, Any]:
    """Send one report with the given camelCase fields (workerType defaults to 'demo')."""
    variables = {"input": {"taskId": task_id, "workerType": "demo", **fields}}
    return api.graphql(REPORT, variables)


def accepted(api: TaskApiServer, task_id: str, **fields: Any) -> dict[str, Any]:
    body = report(api, task_id, **fields)
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"]["reportTaskProgress"]
    return result


def test_first_report_creates_the_task_and_answers_with_its_state(api, task_id):
    answer = accepted(
        api, task_id, status="PROCESSING", progress=0, currentStep="started", attempt=1
    )

    assert answer == {"id": task_id, "status": "PROCESSING", "progress": 0}
    task = fetch_task(api.url, task_id)
    assert task is not None
    assert task["status"] == "PROCESSING"
    assert task["currentStep"] == "started"
    assert task["attempt"] == 1
    assert task["workerType"] == "demo"
    assert [h["status"] for h in task["history"]] == ["PROCESSING"]


def test_progress_steps_are_recorded_in_order_in_the_history(api, task_id):
    accepted(api, task_id, status="PROCESSING", progress=0, currentStep="started", attempt=1)
    accepted(api, task_id, status="PROCESSING", progress=40, currentStep="rendering", attempt=1)
    accepted(api, task_id, status="PROCESSING", progress=80, currentStep="sending", attempt=1)

    task = fetch_task(api.url, task_id)
    assert task is not None
    assert (task["progress"], task["currentStep"]) == (80, "sending")
    assert [(h["progress"], h["currentStep"]) for h in task["history"]] == [
        (0, "started"),
        (40, "rendering"),
        (80, "sending"),
    ]


def test_completed_report_stores_the_result_and_full_progress(api, task_id):
    accepted(api, task_id, status="PROCESSING", progress=10, attempt=1)
    result = {"messageId": "<abc@example.org>", "recipients": ["a@example.org"], "n": 2}

    answer = accepted(api, task_id, status="COMPLETED", attempt=1, result=result)

    assert answer["status"] == "COMPLETED"
    assert answer["progress"] == 100
    task = fetch_task(api.url, task_id)
    assert task is not None
    assert task["result"] == result
    assert task["history"][-1]["result"] == result


def test_retry_scheduled_report_keeps_the_error_and_next_retry_time(api, task_id):
    accepted(api, task_id, status="PROCESSING", progress=30, attempt=1)

    accepted(
        api,
        task_id,
        status="RETRY_SCHEDULED",
        attempt=1,
        errorMessage="SMTP 451 try later",
        nextRetryAt="2030-01-02T03:04:05+00:00",
    )

    task = fetch_task(api.url, task_id)
    assert task is not None
    assert task["status"] == "RETRY_SCHEDULED"
    assert task["errorMessage"] == "SMTP 451 try later"
    assert task["nextRetryAt"].startswith("2030-01-02T03:04:05")


def test_failed_report_keeps_the_error_message(api, task_id):
    accepted(api, task_id, status="PROCESSING", attempt=1)

    accepted(api, task_id, status="FAILED", attempt=1, errorMessage="mailbox does not exist")

    task = fetch_task(api.url, task_id)
    assert task is not None
    assert (task["status"], task["errorMessage"]) == ("FAILED", "mailbox does not exist")


def test_a_duplicate_report_changes_nothing(api, task_id):
    accepted(api, task_id, status="PROCESSING", progress=50, currentStep="half", attempt=1)

    accepted(api, task_id, status="PROCESSING", progress=50, currentStep="half", attempt=1)

    task = fetch_task(api.url, task_id)
    assert task is not None
    assert len(task["history"]) == 1


def test_progress_never_decreases_within_an_attempt(api, task_id):
    accepted(api, task_id, status="PROCESSING", progress=60, currentStep="late step", attempt=1)

    answer = accepted(
        api, task_id, status="PROCESSING", progress=30, currentStep="early", attempt=1
    )

    assert answer["progress"] == 60
    task = fetch_task(api.url, task_id)
    assert task is not None
    assert (task["progress"], task["currentStep"]) == (60, "late step")


def test_a_late_progress_report_does_not_reopen_a_completed_task(api, task_id):
    accepted(api, task_id, status="PROCESSING", progress=10, attempt=1)
    accepted(api, task_id, status="COMPLETED", attempt=1, result={"ok": True})

    answer = accepted(api, task_id, status="PROCESSING", progress=90, attempt=1)

    assert answer["status"] == "COMPLETED"
    task = fetch_task(api.url, task_id)
    assert task is not None
    assert task["status"] == "COMPLETED"
    assert task["result"] == {"ok": True}


def test_a_second_outcome_for_the_same_attempt_is_ignored(api, task_id):
    accepted(api, task_id, status="COMPLETED", attempt=1, result={"ok": True})

    accepted(api, task_id, status="FAILED", attempt=1, errorMessage="duplicate delivery")

    task = fetch_task(api.url, task_id)
    assert task is not None
    assert task["status"] == "COMPLETED"


def test_a_new_attempt_restarts_a_task_after_a_scheduled_retry(api, task_id):
    accepted(api, task_id, status="PROCESSING", progress=70, attempt=1)
    accepted(api, task_id, status="RETRY_SCHEDULED", attempt=1, errorMessage="timeout")

    answer = accepted(
        api, task_id, status="PROCESSING", progress=0, currentStep="started", attempt=2
    )

    assert answer == {"id": task_id, "status": "PROCESSING", "progress": 0}
    task = fetch_task(api.url, task_id)
    assert task is not None
    assert task["attempt"] == 2
    assert task["errorMessage"] is None


def test_a_new_attempt_may_follow_a_failure(api, task_id):
    accepted(api, task_id, status="FAILED", attempt=1, errorMessage="boom")

    answer = accepted(api, task_id, status="PROCESSING", attempt=2)

    assert answer["status"] == "PROCESSING"


def test_reports_from_an_older_attempt_are_ignored(api, task_id):
    accepted(api, task_id, status="PROCESSING", progress=20, attempt=2)

    answer = accepted(api, task_id, status="RETRY_SCHEDULED", attempt=1, errorMessage="old")

    assert answer["status"] == "PROCESSING"
    task = fetch_task(api.url, task_id)
    assert task is not None
    assert task["attempt"] == 2


def assert_rejected_naming(body: dict[str, Any], field: str) -> None:
    assert (body.get("data") or {}).get("reportTaskProgress") is None, body
    messages = " ".join(error["message"] for error in body["errors"])
    assert field in messages, messages


def test_progress_over_100_is_an_error_naming_the_field_and_stores_nothing(api, task_id):
    body = report(api, task_id, status="PROCESSING", progress=101)

    assert_rejected_naming(body, "progress")
    assert fetch_task(api.url, task_id) is None


def test_negative_progress_is_an_error_naming_the_field(api, task_id):
    body = report(api, task_id, status="PROCESSING", progress=-1)

    assert_rejected_naming(body, "progress")
    assert fetch_task(api.url, task_id) is None


def test_an_unknown_status_is_an_error_naming_the_status(api, task_id):
    body = report(api, task_id, status="SLEEPING")

    assert_rejected_naming(body, "status")
    assert fetch_task(api.url, task_id) is None


def test_a_missing_task_id_is_an_error_naming_the_field(api):
    body = api.graphql(REPORT, {"input": {"workerType": "demo", "status": "PROCESSING"}})

    assert_rejected_naming(body, "taskId")


def test_an_empty_task_id_is_an_error_naming_the_field(api):
    body = report(api, "", status="PROCESSING")

    assert_rejected_naming(body, "taskId")


def test_an_attempt_below_one_is_an_error_naming_the_field(api, task_id):
    body = report(api, task_id, status="PROCESSING", attempt=0)

    assert_rejected_naming(body, "attempt")
    assert fetch_task(api.url, task_id) is None


def test_a_rejected_update_leaves_an_existing_task_unchanged(api, task_id):
    accepted(api, task_id, status="PROCESSING", progress=10, attempt=1)

    body = report(api, task_id, status="PROCESSING", progress=500, attempt=1)

    assert_rejected_naming(body, "progress")
    task = fetch_task(api.url, task_id)
    assert task is not None
    assert task["progress"] == 10
    assert len(task["history"]) == 1
