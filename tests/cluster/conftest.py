"""The cluster fixture: one 3-node cluster for all fault tests of a module, torn down after."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from cluster.rabbitmq_cluster import ClusterUnavailable, RabbitCluster, check_can_run


@pytest.fixture(scope="module")
def cluster() -> Iterator[RabbitCluster]:
    """A running 3-node cluster; skipped (failed in CI) where one cannot run."""
    try:
        check_can_run()
    except ClusterUnavailable as reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the RabbitMQ cluster tests: {reason}")
        pytest.skip(f"no RabbitMQ cluster on this machine: {reason}")
    with RabbitCluster() as running:
        yield running
