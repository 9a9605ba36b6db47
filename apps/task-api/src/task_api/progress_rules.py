"""Whether an incoming progress report may change a task, and how.

Reports can arrive twice or out of order (the reporter retries, a redelivered task runs
again), so the state only ever moves forward: a later attempt supersedes an earlier one, and
within one attempt the status rank and the progress never decrease.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from task_api.records import ProgressReport, Status, TaskState

#: Within one attempt a task goes QUEUED -> PROCESSING -> one outcome. The three outcomes
#: share a rank: once an attempt has an outcome, nothing else in that attempt changes it.
_RANK = {
    Status.QUEUED: 0,
    Status.PROCESSING: 1,
    Status.RETRY_SCHEDULED: 2,
    Status.COMPLETED: 2,
    Status.FAILED: 2,
}


def apply_report(current: TaskState, report: ProgressReport, now: datetime) -> TaskState | None:
    """Return the task's new state after ``report``, or None when the report is stale."""
    current_attempt = current.attempt or 0
    attempt = report.attempt if report.attempt is not None else current_attempt
    if attempt < current_attempt:
        return None
    new_attempt = attempt > current_attempt
    if not new_attempt and not _moves_forward(current, report):
        return None

    if new_attempt:
        progress = report.progress or 0
    else:
        progress = max(current.progress, report.progress or 0)
    if report.status is Status.COMPLETED:
        progress = 100

    return replace(
        current,
        status=report.status,
        worker_type=report.worker_type,
        attempt=attempt if attempt > 0 else current.attempt,
        progress=progress,
        current_step=(
            report.current_step
            if report.current_step is not None
            else (None if new_attempt else current.current_step)
        ),
        error_message=report.error_message,
        next_retry_at=report.next_retry_at,
        result=report.result,
        updated_at=now,
        # The trace of the task's messages stays; a report only fills it in when unknown.
        trace_id=current.trace_id or report.trace_id,
    )


def _moves_forward(current: TaskState, report: ProgressReport) -> bool:
    current_rank = _RANK[current.status]
    rank = _RANK[report.status]
    if rank != current_rank:
        return rank > current_rank
    if report.status is not Status.PROCESSING:
        # A second outcome for the same attempt (a duplicate or a contradiction) is ignored.
        return False
    if report.progress is None:
        return report.current_step is not None and report.current_step != current.current_step
    if report.progress != current.progress:
        return report.progress > current.progress
    return report.current_step is not None and report.current_step != current.current_step
