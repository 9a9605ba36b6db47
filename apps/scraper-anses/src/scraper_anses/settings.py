"""Settings of the scraper, read from SCRAPER_ANSES_* environment variables."""

from pydantic import Field, field_validator
from worker_framework import WorkerSettings

#: The public site; the office directory lives under it (see site.py for the paths).
DEFAULT_BASE_URL = "https://www.anses.gob.ar"

#: Names the bot and its purpose so the site's operators can tell it apart from browsers.
DEFAULT_USER_AGENT = "JupiterScraperANSES/1.0 (office directory; polite bot)"


class ScraperSettings(WorkerSettings):
    """Framework settings plus the scraper's own.

    Fields map to environment variables by upper-casing their names, e.g.
    ``scraper_anses_timeout_s`` <- ``SCRAPER_ANSES_TIMEOUT_S``.
    """

    scraper_anses_base_url: str = Field(
        default=DEFAULT_BASE_URL,
        description="Scheme and host (optionally a path prefix) of the ANSES site.",
    )
    scraper_anses_timeout_s: float = Field(
        default=15.0, gt=0, le=300, description="Connect and read timeout of each request."
    )
    scraper_anses_max_concurrency: int = Field(
        default=4, ge=1, le=32, description="Detail pages fetched at the same time."
    )
    scraper_anses_requests_per_s: float = Field(
        default=2.0,
        gt=0,
        le=1000,
        description="Ceiling on requests per second, all threads together.",
    )
    scraper_anses_user_agent: str = Field(
        default=DEFAULT_USER_AGENT,
        min_length=1,
        description="User-Agent header and robots.txt agent.",
    )

    @field_validator("scraper_anses_base_url")
    @classmethod
    def _http_url_without_trailing_slash(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("scraper_anses_user_agent")
    @classmethod
    def _single_line(cls, value: str) -> str:
        # A CR/LF would let the value inject headers into every request.
        if "\r" in value or "\n" in value or not value.strip():
            raise ValueError("must be one non-blank line")
        return value.strip()
