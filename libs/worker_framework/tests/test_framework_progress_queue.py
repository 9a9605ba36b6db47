"""The reporter's pending updates, and what the API's answers mean: no server, no thread."""

from __future__ import annotations

import json
import math

from worker_framework.graphql_client import Outgoing, classify, request_body, request_error
from worker_framework.progress import ProgressUpdate, TaskStatus
from worker_framework.progress_queue import RESULT_OMITTED_KEY, ProgressQueue


def update(task_id: str, status: TaskStatus, **fields: object) -> ProgressUpdate:
    return ProgressUpdate(task_id=task_id, worker_type="probe", status=status, **fields)  # type: ignore[arg-type]


def processing(task_id: str, percent: int, attempt: int = 1) -> ProgressUpdate:
    return update(
        task_id,
        TaskStatus.PROCESSING,
        attempt=attempt,
        progress=percent,
        current_step=f"s{percent}",
    )


def drained(queue: ProgressQueue) -> list[ProgressUpdate]:
    return [pending.merged() for pending in queue.take(len(queue))]


def test_newer_progress_replaces_pending_progress_of_the_same_attempt_in_its_place():
    queue = ProgressQueue()
    queue.add(processing("a", 10))
    queue.add(processing("b", 10))
    queue.add(processing("a", 60))
    assert [(u.task_id, u.progress) for u in drained(queue)] == [("a", 60), ("b", 10)]
    assert queue.coalesced == 1


def test_progress_of_another_attempt_is_not_coalesced():
    queue = ProgressQueue()
    queue.add(processing("a", 10, attempt=1))
    queue.add(processing("a", 20, attempt=2))
    assert [(u.attempt, u.progress) for u in drained(queue)] == [(1, 10), (2, 20)]


def test_a_status_change_absorbs_pending_progress_and_keeps_its_step_and_percentage():
    queue = ProgressQueue()
    queue.add(processing("a", 70))
    queue.add(update("a", TaskStatus.COMPLETED, attempt=1, result={"ok": True}))
    [final] = drained(queue)
    assert (final.status, final.progress, final.current_step) == (TaskStatus.COMPLETED, 70, "s70")
    assert final.result == {"ok": True}


def test_progress_after_a_status_change_is_queued_after_it():
    queue = ProgressQueue()
    queue.add(update("a", TaskStatus.RETRY_SCHEDULED, attempt=1))
    queue.add(processing("a", 10, attempt=1))
    assert [u.status for u in drained(queue)] == [TaskStatus.RETRY_SCHEDULED, TaskStatus.PROCESSING]


def test_a_full_queue_drops_the_oldest_progress_before_any_status_change():
    queue = ProgressQueue(max_pending=3)
    queue.add(update("done-1", TaskStatus.COMPLETED))
    queue.add(processing("p-1", 10))
    queue.add(processing("p-2", 10))
    assert queue.add(update("done-2", TaskStatus.FAILED)) == 1
    assert [u.task_id for u in drained(queue)] == ["done-1", "p-2", "done-2"]
    assert queue.dropped == 1


def test_a_queue_full_of_status_changes_refuses_new_progress_and_keeps_them():
    queue = ProgressQueue(max_pending=2)
    queue.add(update("done-1", TaskStatus.COMPLETED))
    queue.add(update("done-2", TaskStatus.COMPLETED))
    assert queue.add(processing("p", 10)) == 1
    assert [u.task_id for u in drained(queue)] == ["done-1", "done-2"]


def test_a_queue_full_of_status_changes_drops_the_oldest_for_a_new_one():
    queue = ProgressQueue(max_pending=2)
    for task_id in ("done-1", "done-2", "done-3"):
        queue.add(update(task_id, TaskStatus.COMPLETED))
    assert [u.task_id for u in drained(queue)] == ["done-2", "done-3"]


def test_pending_updates_are_bounded_in_bytes():
    queue = ProgressQueue(max_pending_bytes=10_000, max_result_bytes=8_000)
    for n in range(5):
        queue.add(update(f"t{n}", TaskStatus.COMPLETED, result={"blob": "x" * 3_000}))
    assert queue.pending_bytes <= 10_000
    assert [u.task_id for u in drained(queue)] == ["t2", "t3", "t4"]
    assert queue.pending_bytes == 0


def test_a_result_over_the_limit_is_replaced_by_a_marker_and_the_status_kept():
    queue = ProgressQueue(max_result_bytes=100)
    queue.add(update("big", TaskStatus.COMPLETED, result={"blob": "x" * 1_000}))
    [final] = drained(queue)
    assert final.status is TaskStatus.COMPLETED
    assert set(final.result or {}) == {RESULT_OMITTED_KEY}


def test_a_result_json_cannot_hold_is_replaced_by_a_marker():
    queue = ProgressQueue()
    queue.add(update("nan", TaskStatus.COMPLETED, result={"value": math.nan}))
    [final] = drained(queue)
    assert "not serialisable" in (final.result or {})[RESULT_OMITTED_KEY]


def test_take_returns_the_oldest_first_and_at_most_what_waits():
    queue = ProgressQueue()
    for n in range(3):
        queue.add(update(f"t{n}", TaskStatus.COMPLETED))
    assert [p.update.task_id for p in queue.take(2)] == ["t0", "t1"]
    assert [p.update.task_id for p in queue.take(5)] == ["t2"]
    assert len(queue) == 0


def test_a_batch_body_names_one_variable_per_update_in_order():
    pending = [Outgoing.of(update(f"t{n}", TaskStatus.COMPLETED)) for n in range(2)]
    body = json.loads(request_body(pending))
    assert "u1: reportTaskProgress(input: $i1)" in body["query"]
    assert [(name, value["taskId"]) for name, value in body["variables"].items()] == [
        ("i0", "t0"),
        ("i1", "t1"),
    ]


def test_an_answer_sorts_updates_into_accepted_retry_and_rejected():
    pending = [Outgoing.of(update(f"t{n}", TaskStatus.COMPLETED)) for n in range(3)]
    answer = classify(
        pending,
        {
            "data": {"u0": {"id": "t0"}, "u1": None, "u2": None},
            "errors": [
                {"path": ["u1"], "message": "bad", "extensions": {"code": "BAD_USER_INPUT"}},
                {"path": ["u2"], "message": "db down"},
            ],
        },
    )
    assert [(item.update.task_id, why) for item, why in answer.rejected] == [("t1", "bad")]
    assert [item.update.task_id for item in answer.retry] == ["t2"]


def test_a_request_error_is_told_apart_from_field_errors():
    assert request_error({"errors": [{"message": "Variable '$i0' got invalid value"}]})
    assert request_error({"data": None, "errors": [{"path": ["u0"], "message": "x"}]}) is None
    assert request_error("not an object") is None
