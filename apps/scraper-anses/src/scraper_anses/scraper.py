"""The walk over one province: listing pages in order, each page's offices concurrently."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict
from typing import TYPE_CHECKING

from worker_framework import WorkerError

from scraper_anses.fetcher import NotFoundError, PoliteFetcher
from scraper_anses.models import Office, ScrapeResult
from scraper_anses.parser import ListingPage, parse_detail, parse_listing
from scraper_anses.site import listing_url

if TYPE_CHECKING:
    from loguru import Logger

#: Receives (percent, step) once per listing page, e.g. (25, "Processing page 2/4").
ProgressCallback = Callable[[int, str], None]


class OfficeDirectoryScraper:
    """Scrapes every office of a province through a PoliteFetcher.

    Listing pages are read one after another, as many as the pagers announce (a province
    that grows during the walk is followed to its new last page). The detail pages a
    listing page links to are read by up to ``max_concurrency`` threads, all sharing the
    fetcher's rate limit. The first error stops the walk: a partial province is never
    returned as if it were complete.
    """

    def __init__(
        self,
        fetcher: PoliteFetcher,
        *,
        base_url: str,
        max_concurrency: int,
        progress: ProgressCallback,
        log: Logger,
    ) -> None:
        self._fetcher = fetcher
        self._base_url = base_url
        self._max_concurrency = max_concurrency
        self._progress = progress
        self._log = log

    def scrape(self, province: str) -> ScrapeResult:
        """Return every office of ``province`` in directory order."""
        self._fetcher.load_robots()
        listing = self._read_first_listing(province)
        page_count = listing.page_count
        offices: list[Office] = []
        seen: set[str] = set()
        with ThreadPoolExecutor(
            max_workers=self._max_concurrency, thread_name_prefix="scraper-anses"
        ) as pool:
            index = 0
            while True:
                number = index + 1
                self._progress(
                    (index * 100) // page_count, f"Processing page {number}/{page_count}"
                )
                # Offices can move between pages while we walk; read each one once.
                new_urls = [url for url in listing.office_urls if url not in seen]
                seen.update(new_urls)
                offices.extend(self._read_offices(pool, new_urls))
                self._log.info(
                    "page {number}/{count}: {listed} offices listed, {total} read so far",
                    number=number,
                    count=page_count,
                    listed=len(listing.office_urls),
                    total=len(offices),
                )
                index += 1
                if index >= page_count:
                    break
                listing = self._read_listing(province, index)
                # A province that grew while we walked shows more pages on later pagers.
                page_count = max(page_count, listing.page_count)
        return ScrapeResult(
            target_id=province,
            pages=page_count,
            office_count=len(offices),
            requests_made=self._fetcher.requests_made,
            offices=offices,
        )

    def _read_first_listing(self, province: str) -> ListingPage:
        url = listing_url(self._base_url, province, 0)
        try:
            page = self._fetcher.fetch(url)
        except NotFoundError as error:
            raise WorkerError(
                f"province {province!r} is not in the office directory ({error})", permanent=True
            ) from error
        return parse_listing(page.text, page.url)

    def _read_listing(self, province: str, index: int) -> ListingPage:
        url = listing_url(self._base_url, province, index)
        try:
            page = self._fetcher.fetch(url)
        except NotFoundError as error:
            # Page 1 announced this page; it vanishing means the listing shrank mid-walk,
            # which a fresh walk later will see consistently.
            raise WorkerError(f"listing page vanished while scraping ({error})") from error
        return parse_listing(page.text, page.url)

    def _read_offices(self, pool: ThreadPoolExecutor, urls: list[str]) -> list[Office]:
        futures: list[Future[Office]] = [pool.submit(self._read_office, url) for url in urls]
        try:
            return [future.result() for future in futures]
        except BaseException:
            # Don't fetch the rest of the page for a result that is already lost.
            for future in futures:
                future.cancel()
            raise

    def _read_office(self, url: str) -> Office:
        try:
            page = self._fetcher.fetch(url)
        except NotFoundError as error:
            raise WorkerError(f"office page vanished while scraping ({error})") from error
        detail = parse_detail(page.text, page.url)
        return Office(**asdict(detail), source_url=page.url)
