"""The scraper-anses worker: one task scrapes the ANSES office directory of one province."""

from typing import ClassVar

import requests
from requests.adapters import HTTPAdapter
from worker_framework import BaseWorker, TaskContext, WorkerSettings

from scraper_anses.fetcher import SHORT_RETRY_AFTER_MAX_S, PoliteFetcher
from scraper_anses.models import ScrapeResult, ScrapeTask
from scraper_anses.ratelimit import RateLimiter
from scraper_anses.scraper import OfficeDirectoryScraper
from scraper_anses.settings import ScraperSettings


class ScraperWorker(BaseWorker[ScrapeTask, ScrapeResult]):
    """Turns a ScrapeTask into a ScrapeResult; errors arrive already classified.

    One HTTP session (connection pool) and one rate limiter serve every task of the
    process, so ``WORKER_CONCURRENCY`` > 1 does not multiply the load on the site;
    robots.txt is read per task, so a long-running worker sees its changes.
    """

    default_queue: ClassVar[str] = "scraper-anses"
    #: Shown in the ``worker_build_info`` metric; the images are tagged with it too.
    version: ClassVar[str] = "0.1.0"
    settings: ScraperSettings

    def __init__(self, settings: WorkerSettings) -> None:
        super().__init__(settings)
        self._session: requests.Session | None = None
        self._limiter: RateLimiter | None = None

    def worker_type(self) -> str:
        """Name used in logs and progress reports."""
        return "scraper-anses"

    def initial_step(self, task: ScrapeTask) -> str:
        """First progress step, before any page is read."""
        return f"Reading the office listing of {task.target_id}"

    def initialize(self) -> None:
        """Open the HTTP session (pool sized for every fetching thread) and the rate limiter."""
        settings = self.settings
        session = requests.Session()
        pool_size = settings.scraper_anses_max_concurrency * settings.worker_concurrency
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        self._session = session
        self._limiter = RateLimiter(
            settings.scraper_anses_requests_per_s, max_pause_s=SHORT_RETRY_AFTER_MAX_S
        )

    def execute_task(self, task: ScrapeTask, ctx: TaskContext) -> ScrapeResult:
        """Scrape every office of ``task.target_id``, reporting progress per listing page."""
        if self._session is None or self._limiter is None:
            raise RuntimeError("ScraperWorker.initialize() must run before execute_task()")
        settings = self.settings
        fetcher = PoliteFetcher(
            self._session,
            base_url=settings.scraper_anses_base_url,
            user_agent=settings.scraper_anses_user_agent,
            timeout_s=settings.scraper_anses_timeout_s,
            limiter=self._limiter,
            log=ctx.logger,
        )
        scraper = OfficeDirectoryScraper(
            fetcher,
            base_url=settings.scraper_anses_base_url,
            max_concurrency=settings.scraper_anses_max_concurrency,
            progress=ctx.progress,
            log=ctx.logger,
        )
        result = scraper.scrape(task.target_id)
        ctx.logger.info(
            "scraped {count} offices of {province} from {pages} pages in {requests} requests",
            count=result.office_count,
            province=task.target_id,
            pages=result.pages,
            requests=result.requests_made,
        )
        return result

    def shutdown(self) -> None:
        """Close the HTTP session's connections."""
        if self._session is not None:
            self._session.close()
            self._session = None
