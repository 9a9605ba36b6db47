"""A task goes in, its result comes back on reply_to, and the queue is left empty."""

from __future__ import annotations

from framework_probe_worker import ProbeWorker
from worker_framework import TaskStatus
from worker_framework.testing import RecordingReporter, WorkerThread, wait_for


def test_completed_task_replies_with_result_and_correlation_id(client, make_settings, reply_queue):
    settings = make_settings()
    reporter = RecordingReporter()
    with WorkerThread(ProbeWorker, settings, reporter=reporter):
        task_id = client.publish_task(
            settings.worker_queue,
            {"id": "t-1", "progress_steps": 2},
            reply_to=reply_queue,
            correlation_id="c-1",
        )
        [reply] = client.wait_for_messages(reply_queue, 1)
        wait_for(lambda: any(u.status is TaskStatus.COMPLETED for u in reporter.for_task(task_id)))
    assert reply.json()["id"] == "t-1"
    assert reply.json()["attempt"] == 1
    assert reply.correlation_id == "c-1"
    assert client.message_count(settings.worker_queue) == 0
    statuses = [u.status for u in reporter.for_task(task_id)]
    assert statuses[0] is TaskStatus.PROCESSING
    assert statuses[-1] is TaskStatus.COMPLETED
    progress = [u.progress for u in reporter.for_task(task_id) if u.status is TaskStatus.PROCESSING]
    assert progress == [0, 50, 100]
