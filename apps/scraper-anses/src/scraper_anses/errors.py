"""Failures of a scrape, each already classified as permanent or transient for the framework."""

from worker_framework import WorkerError


class PageStructureError(WorkerError):
    """A page no longer matches the parser: permanent, because retrying reads the same markup.

    The message names the page and the selector or field that was missing, which is what a
    person needs to update parser.py.
    """

    def __init__(self, page_url: str, missing: str) -> None:
        super().__init__(f"page {page_url} no longer matches the parser: {missing}", permanent=True)
        self.page_url = page_url
        self.missing = missing
