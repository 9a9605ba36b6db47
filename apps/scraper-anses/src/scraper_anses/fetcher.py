"""Polite HTTP for the scraper: robots.txt, a shared rate limit, Retry-After, and errors
classified as permanent or transient for the framework."""

from __future__ import annotations

import email.utils
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

import backoff
import requests
from backoff.types import Details
from worker_framework import WorkerError

from scraper_anses.ratelimit import RateLimiter, SitePaused
from scraper_anses.robots import RobotsRules
from scraper_anses.site import absolute, robots_url

if TYPE_CHECKING:
    from loguru import Logger

_T = TypeVar("_T")

#: Longest Retry-After we sit out inside the task. Longer waits become a transient error so
#: the framework schedules a durable retry instead of holding the message (docs/reliability.md);
#: give the same value to the RateLimiter's ``max_pause_s``.
SHORT_RETRY_AFTER_MAX_S = 5.0
#: Attempts of one request when the server keeps asking for short waits.
SHORT_RETRY_MAX_TRIES = 3
#: Redirect hops followed for one URL, as browsers and RFC 9309 roughly agree.
MAX_REDIRECTS = 5
#: Statuses after which the server may tell us when to come back.
_RETRY_AFTER_STATUSES = frozenset({429, 503})
#: Client errors that still mean "try again later".
_TRANSIENT_CLIENT_STATUSES = frozenset({408, 425, 429})


@dataclass(frozen=True)
class Page:
    """A fetched HTML page: the URL it was finally read from (after redirects) and its text."""

    url: str
    text: str


class NotFoundError(WorkerError):
    """The server answered 404 or 410. Permanent unless the caller decides otherwise."""

    def __init__(self, url: str, status: int) -> None:
        super().__init__(f"{url} answered {status} (not found)", permanent=True)
        self.url = url


class _ShortRetryAfter(Exception):
    """The server asked for a wait short enough to sit out here."""

    def __init__(self, url: str, status: int, delay_s: float) -> None:
        super().__init__(f"{url} answered {status}, Retry-After {delay_s:g} s")
        self.delay_s = delay_s


class PoliteFetcher:
    """Fetches pages of one site the way its operators ask.

    Every request (robots.txt, redirects and retries included) waits for ``limiter``, which
    may be shared with other fetchers of the same site. Errors come out as WorkerError:
    robots refusals, 404/410 and other 4xx permanent; 429, 5xx, timeouts and connection
    failures transient. Safe to call ``fetch`` from several threads.
    """

    def __init__(
        self,
        session: requests.Session,
        *,
        base_url: str,
        user_agent: str,
        timeout_s: float,
        limiter: RateLimiter,
        log: Logger,
    ) -> None:
        self._session = session
        self._base_url = base_url
        self._site = _origin(base_url)
        self._user_agent = user_agent
        self._timeout_s = timeout_s
        self._limiter = limiter
        self._log = log
        self._robots: RobotsRules | None = None
        self._robots_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._requests_made = 0

    @property
    def requests_made(self) -> int:
        """HTTP requests sent so far by this fetcher (the limiter may serve others too)."""
        with self._count_lock:
            return self._requests_made

    def load_robots(self) -> RobotsRules:
        """Read robots.txt once and apply its Crawl-delay to the rate limit."""
        with self._robots_lock:
            if self._robots is None:
                self._robots = self._with_short_waits(self._read_robots, robots_url(self._base_url))
                self._limiter.apply_crawl_delay(self._robots.crawl_delay_s())
            return self._robots

    def fetch(self, url: str) -> Page:
        """GET an HTML page of the site, sitting out short Retry-After waits."""
        return self._with_short_waits(self._fetch_once, url)

    def _with_short_waits(self, request: Callable[[str], _T], url: str) -> _T:
        retrying = backoff.on_exception(
            backoff.runtime,
            _ShortRetryAfter,
            value=lambda error: error.delay_s,
            max_tries=SHORT_RETRY_MAX_TRIES,
            jitter=None,
            on_backoff=self._log_wait,
            logger=None,
        )(request)
        try:
            return retrying(url)
        except _ShortRetryAfter as error:
            raise WorkerError(
                f"{error}; still refused after {SHORT_RETRY_MAX_TRIES} attempts", permanent=False
            ) from error

    def _log_wait(self, details: Details) -> None:
        self._log.info("server asked to wait {wait:g} s before retrying", wait=details["wait"])

    def _read_robots(self, url: str) -> RobotsRules:
        status, text, final_url = self._get_following_redirects(url, check_robots=False)
        if status >= 500 or status in _TRANSIENT_CLIENT_STATUSES:
            # RFC 9309: an unreachable robots.txt means "assume everything is disallowed"
            # for now, so wait for a scheduled retry rather than crawl blind.
            raise WorkerError(f"{final_url} answered HTTP {status}", permanent=False)
        return RobotsRules.from_response(self._user_agent, status, text)

    def _fetch_once(self, url: str) -> Page:
        status, text, final_url = self._get_following_redirects(url, check_robots=True)
        if status == 200:
            return Page(url=final_url, text=text)
        if status in (404, 410):
            raise NotFoundError(final_url, status)
        transient = status >= 500 or status in _TRANSIENT_CLIENT_STATUSES
        raise WorkerError(f"{final_url} answered HTTP {status}", permanent=not transient)

    def _get_following_redirects(self, url: str, *, check_robots: bool) -> tuple[int, str, str]:
        # Redirects are followed by hand so each hop is checked against robots.txt and
        # kept on the site, and each hop counts against the rate limit.
        for _hop in range(MAX_REDIRECTS + 1):
            if _origin(url) != self._site:
                raise WorkerError(f"refusing to leave {self._site} for {url}", permanent=True)
            if check_robots and not self.load_robots().allows(url):
                raise WorkerError(
                    f"robots.txt of {self._site} disallows {url} for user agent "
                    f"{self._user_agent!r}",
                    permanent=True,
                )
            response = self._get(url)
            location = response.headers.get("Location")
            if response.is_redirect and location:
                url = absolute(url, location)
                continue
            self._raise_for_retry_after(url, response)
            return response.status_code, _decode(response), url
        raise WorkerError(f"more than {MAX_REDIRECTS} redirects from {url}", permanent=True)

    def _get(self, url: str) -> requests.Response:
        try:
            self._limiter.acquire()
        except SitePaused as error:
            # An earlier answer (maybe another task's) asked for a long pause: don't ask again.
            raise WorkerError(f"not fetching {url}: {error}", permanent=False) from error
        with self._count_lock:
            self._requests_made += 1
        try:
            return self._session.get(
                url,
                headers={"User-Agent": self._user_agent},
                timeout=(self._timeout_s, self._timeout_s),
                allow_redirects=False,
            )
        except requests.Timeout as error:
            message = f"{url} timed out after {self._timeout_s:g} s"
            raise WorkerError(message, permanent=False) from error
        except requests.ConnectionError as error:
            message = f"cannot connect to fetch {url}: {_root_cause(error)}"
            raise WorkerError(message, permanent=False) from error
        except requests.RequestException as error:
            raise WorkerError(f"request for {url} failed: {error}", permanent=False) from error

    def _raise_for_retry_after(self, url: str, response: requests.Response) -> None:
        if response.status_code not in _RETRY_AFTER_STATUSES:
            return
        delay_s = parse_retry_after(response.headers.get("Retry-After"))
        if delay_s is None:
            return  # no hint: _fetch_once reports it as a plain transient status
        # Every thread and task waits, not only this one: the server spoke about the site.
        self._limiter.pause(delay_s)
        if delay_s <= SHORT_RETRY_AFTER_MAX_S:
            raise _ShortRetryAfter(url, response.status_code, delay_s)
        raise WorkerError(
            f"{url} answered {response.status_code} with Retry-After {delay_s:g} s; "
            "leaving it to a scheduled retry",
            permanent=False,
        )


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), else None."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _root_cause(error: BaseException) -> str:
    # requests wraps urllib3 wraps the socket error; the innermost one says what happened
    # ("[Errno 111] Connection refused") without three layers of repr.
    for _depth in range(10):  # bounded: exception chains can, in principle, loop
        reason = getattr(error, "reason", None)
        if isinstance(error.__cause__, BaseException):
            error = error.__cause__
        elif error.args and isinstance(error.args[0], BaseException):
            error = error.args[0]
        elif isinstance(reason, BaseException):
            error = reason
        else:
            break
    return str(error) or type(error).__name__


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _decode(response: requests.Response) -> str:
    # requests falls back to ISO-8859-1 for text/* without a charset, which garbles the
    # site's Spanish; HTML5 and the site itself default to UTF-8.
    content_type = response.headers.get("Content-Type", "")
    encoding = response.encoding if "charset=" in content_type.lower() else None
    try:
        return response.content.decode(encoding or "utf-8", errors="replace")
    except LookupError:  # a charset name Python does not know
        return response.content.decode("utf-8", errors="replace")
