"""Shared fixtures: the fixture site on a free port, and workers that scrape it in-process."""

from collections.abc import Callable, Iterator

import pytest
from scraper_anses.worker import ScraperWorker
from scraper_fixture_site import FixtureSite, Run, default_site, scraper_settings, serving
from worker_framework.testing import RecordingReporter


@pytest.fixture
def site() -> Iterator[FixtureSite]:
    """A fresh fixture server on a free port, serving the healthy directory."""
    state = FixtureSite()
    default_site(state)
    with serving(state):
        yield state


@pytest.fixture
def make_run(site: FixtureSite) -> Iterator[Callable[..., Run]]:
    """Factory of Runs against the fixture site; ``make_run(**setting_overrides)``."""
    workers: list[ScraperWorker] = []

    def make(**overrides: object) -> Run:
        worker = ScraperWorker(settings=scraper_settings(site.base_url, **overrides))
        worker.initialize()
        workers.append(worker)
        return Run(worker=worker, reporter=RecordingReporter())

    yield make
    for worker in workers:
        worker.shutdown()


@pytest.fixture
def run(make_run: Callable[..., Run]) -> Run:
    """A Run with the default test settings."""
    return make_run()
