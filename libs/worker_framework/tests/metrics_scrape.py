"""Scraping a worker's metrics endpoint in tests: GET over real HTTP, parse, pick a sample."""

from __future__ import annotations

import http.client
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from worker_framework.testing import free_port

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def http_get(port: int, path: str) -> tuple[int, str]:
    """The status and body of ``GET path`` on the worker's metrics port."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def parse(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(port: int) -> Samples:
    """``GET /metrics``, parsed."""
    status, text = http_get(port, "/metrics")
    assert status == 200, text
    return parse(text)


def sample(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; KeyError when the worker does not export it."""
    return samples[(name, frozenset(labels.items()))]


def metered(make_settings: Any, **overrides: Any) -> Any:
    """Settings on a fresh queue with the metrics endpoint on a free port."""
    return make_settings(worker_metrics_port=free_port(), **overrides)


def labels_of(settings: Any) -> dict[str, str]:
    """The ``queue`` and ``worker_type`` labels of a probe worker on ``settings``."""
    return {"queue": settings.worker_queue, "worker_type": "probe"}
