"""The scraper as a service: tasks through a real RabbitMQ, pages from the fixture site."""

import pytest
from scraper_anses.settings import ScraperSettings
from scraper_anses.worker import ScraperWorker
from scraper_fixture_site import Reply, page
from worker_framework import TaskStatus
from worker_framework.retry_policy import dead_letter_queue_name
from worker_framework.testing import (
    QueueClient,
    RecordingReporter,
    WorkerThread,
    delete_worker_queues,
    unique_queue_name,
    wait_for,
    worker_settings,
)


@pytest.fixture
def service(site):
    """A ScraperWorker consuming a unique queue, a client with a reply queue, and the
    reporter that saw its progress; every queue is deleted afterwards."""
    settings = worker_settings(
        ScraperSettings,
        worker_queue=unique_queue_name("scraper-anses"),
        worker_initial_delay_ms=100,
        worker_max_retries=2,
        scraper_anses_base_url=site.base_url,
        scraper_anses_requests_per_s=1000.0,
        scraper_anses_timeout_s=5.0,
    )
    reporter = RecordingReporter()
    with QueueClient(settings.amqp_url) as client:
        replies = client.declare_reply_queue()
        try:
            with WorkerThread(ScraperWorker, settings, reporter=reporter):
                yield settings, client, replies, reporter
        finally:
            client.delete_queue(replies)
            delete_worker_queues(settings)


def wait_for_final_status(reporter, task_id, status):
    """The task's updates once its last one has ``status`` (reports may trail the reply)."""

    def settled():
        updates = reporter.for_task(task_id)
        return updates if updates and updates[-1].status is status else None

    return wait_for(settled, timeout=15, message=f"task {task_id} reported {status.value}")


def test_scrape_task_through_rabbitmq_replies_with_the_offices_and_reports_each_page(service):
    settings, client, replies, reporter = service

    task_id = client.publish_task(
        settings.worker_queue, {"targetId": "buenos-aires"}, reply_to=replies
    )
    [reply] = client.wait_for_messages(replies, 1, timeout=30)

    result = reply.json()
    assert reply.correlation_id == task_id
    assert result["officeCount"] == 8
    assert [office["name"] for office in result["offices"]][:2] == ["UDAI La Plata", "UDAI Quilmes"]
    updates = wait_for_final_status(reporter, task_id, TaskStatus.COMPLETED)
    steps = [update.current_step for update in updates]
    for number in (1, 2, 3):
        assert f"Processing page {number}/3" in steps


def test_transient_site_failure_is_retried_by_the_framework_and_then_succeeds(site, service):
    settings, client, replies, reporter = service
    site.serve(
        "/oficina/udai-san-salvador-de-jujuy",
        Reply(status=500),
        page("detail-udai-san-salvador-de-jujuy.html"),
    )

    task_id = client.publish_task(settings.worker_queue, {"targetId": "jujuy"}, reply_to=replies)
    [reply] = client.wait_for_messages(replies, 1, timeout=30)

    assert reply.json()["officeCount"] == 1
    assert reply.header("x-attempt") == 2
    updates = wait_for_final_status(reporter, task_id, TaskStatus.COMPLETED)
    assert TaskStatus.RETRY_SCHEDULED in [update.status for update in updates]


def test_unknown_province_is_dead_lettered_at_once_with_the_reason(site, service):
    settings, client, replies, reporter = service

    task_id = client.publish_task(settings.worker_queue, {"targetId": "atlantida"})
    [dead] = client.wait_for_messages(dead_letter_queue_name(settings.worker_queue), 1, timeout=30)

    assert dead.message_id == task_id
    assert dead.header("x-attempt") == 1
    assert "atlantida" in dead.header("x-error-message")
    assert site.count("/oficinas/atlantida") == 1
    wait_for_final_status(reporter, task_id, TaskStatus.FAILED)
