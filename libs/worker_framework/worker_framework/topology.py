"""The queues a worker needs, declared beside the broker adapter.

For a worker on queue ``Q``: ``Q`` itself, one delay queue per retry tier (``Q.retry.<ms>``,
whose messages return to ``Q`` when their time is up, so a short delay never waits behind a
long one) and ``Q.dlq`` for dead letters. Declaring is idempotent; a queue that exists with
other arguments is reported as :class:`~worker_framework.errors.TopologyMismatch`.
"""

from __future__ import annotations

from typing import Any

from worker_framework.broker import BrokerConnection, QueueSpec
from worker_framework.retry_policy import (
    RetryPolicy,
    dead_letter_queue_name,
    retry_queue_name,
    tier_ttl_ms,
)
from worker_framework.settings import WorkerSettings

#: The last-resort guard of a quorum queue against messages that crash every worker before any
#: outcome is recorded (each crash is a redelivery); such messages go to the dead-letter queue.
QUORUM_DELIVERY_LIMIT = 20


def delivery_limit(settings: WorkerSettings) -> int | None:
    """The main queue's ``x-delivery-limit``: set on quorum queues only (None for classic)."""
    return QUORUM_DELIVERY_LIMIT if settings.worker_queue_type == "quorum" else None


def worker_topology(queue: str, settings: WorkerSettings) -> list[QueueSpec]:
    """The queues a worker on ``queue`` needs: main, a delay queue per retry tier, dead letters."""
    dlq = dead_letter_queue_name(queue)
    typed: dict[str, Any] = {}
    main_arguments: dict[str, Any] = {}
    dead_lettering: dict[str, Any] = {}
    limit = delivery_limit(settings)
    if limit is not None:
        typed = {"x-queue-type": "quorum"}
        # Quorum queues dead-letter at most once unless told otherwise; a retry copy on its
        # way back to the main queue must not be dropped.
        dead_lettering = {"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}
        main_arguments = {
            **typed,
            **dead_lettering,
            "x-delivery-limit": limit,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": dlq,
        }
    specs = [QueueSpec(queue, main_arguments), QueueSpec(dlq, typed)]
    for base in RetryPolicy.from_settings(settings).tiers():
        specs.append(
            QueueSpec(
                retry_queue_name(queue, base),
                {
                    **typed,
                    **dead_lettering,
                    "x-message-ttl": tier_ttl_ms(base),
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": queue,
                },
            )
        )
    return specs


def connect(settings: WorkerSettings, connection_name: str | None = None) -> BrokerConnection:
    """One connection attempt over the nodes of ``AMQP_URL``."""
    return BrokerConnection.connect(
        settings.amqp_urls(),
        heartbeat_s=settings.worker_heartbeat_s,
        connection_name=connection_name,
    )


def declare_topology(connection: BrokerConnection, queue: str, settings: WorkerSettings) -> None:
    """Declare every queue of :func:`worker_topology` (idempotent)."""
    for spec in worker_topology(queue, settings):
        connection.declare(spec)
