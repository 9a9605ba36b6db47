"""A real local HTTP server playing the ANSES site, and a way to run scrape tasks in-process.

The server serves the pages under fixtures/ by URL path (query included), answers 404 for
anything else, and records every request so tests can count what the scraper sent.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from scraper_anses.models import ScrapeResult, ScrapeTask
from scraper_anses.settings import ScraperSettings
from scraper_anses.worker import ScraperWorker
from worker_framework import TaskContext
from worker_framework.testing import RecordingReporter

FIXTURES = Path(__file__).parent / "fixtures"

#: How long a "slow" reply stalls at most; tests release it at teardown, far sooner.
SLOW_REPLY_STALL_S = 30.0

#: Detail pages of the default site, by office slug.
OFFICE_SLUGS = (
    "udai-la-plata",
    "udai-quilmes",
    "udai-lomas-de-zamora",
    "udai-moron",
    "udai-san-isidro",
    "udai-bahia-blanca",
    "udai-mar-del-plata",
    "udai-tandil",
    "udai-san-salvador-de-jujuy",
)


@dataclass(frozen=True)
class Reply:
    """One canned answer: status, headers, body, and whether to stall past any timeout."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "text/html; charset=utf-8"
    stall: bool = False


def page(name: str, status: int = 200) -> Reply:
    """A fixture file served as HTML (or plain text for robots.txt)."""
    content_type = "text/plain" if name.endswith(".txt") else "text/html; charset=utf-8"
    return Reply(status=status, body=(FIXTURES / name).read_bytes(), content_type=content_type)


def redirect(location: str, status: int = 301) -> Reply:
    """A redirect to ``location``."""
    return Reply(status=status, headers={"Location": location})


class FixtureSite:
    """The routes, the request log and the concurrency gauge of the fixture server.

    ``serve(path, *replies)`` answers the replies in turn, repeating the last one, so a
    route can fail first and recover later.
    """

    def __init__(self) -> None:
        self.base_url = ""
        self.requests: list[str] = []
        self.user_agents: set[str] = set()
        self.max_in_flight = 0
        self.release = threading.Event()
        self._routes: dict[str, list[Reply]] = {}
        self._served: Counter[str] = Counter()
        self._in_flight = 0
        self._lock = threading.Lock()

    def serve(self, path: str, *replies: Reply) -> None:
        """Answer ``path`` (with its query, if any) with ``replies`` in turn."""
        self._routes[path] = list(replies)

    def count(self, path: str) -> int:
        """How many requests ``path`` received."""
        with self._lock:
            return self.requests.count(path)

    def url(self, path: str) -> str:
        """Absolute URL of ``path`` on this server."""
        return self.base_url + path

    def _next_reply(self, path: str) -> Reply:
        with self._lock:
            self.requests.append(path)
            replies = self._routes.get(path)
            if not replies:
                return Reply(status=404, body=b"<html><body><h1>Not found</h1></body></html>")
            index = min(self._served[path], len(replies) - 1)
            self._served[path] += 1
            return replies[index]

    def _enter(self) -> None:
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1


def _handler_for(site: FixtureSite) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes; without this, Nagle plus delayed ACKs
        # add ~40 ms to every request on loopback.
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            site._enter()
            try:
                site.user_agents.add(self.headers.get("User-Agent", ""))
                reply = site._next_reply(self.path)
                if reply.stall:
                    site.release.wait(SLOW_REPLY_STALL_S)
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(reply.body)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(reply.body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test); nothing to answer
            finally:
                site._leave()

        def log_message(self, format: str, *args: object) -> None:
            pass  # the request log on FixtureSite is what tests read

    return Handler


def default_site(site: FixtureSite) -> None:
    """The healthy directory: Buenos Aires on 3 pages (one link redirects), Jujuy on 1,
    Catamarca empty, robots.txt closing Tierra del Fuego."""
    site.serve("/robots.txt", page("robots.txt"))
    site.serve("/oficinas/buenos-aires", page("listing-buenos-aires-0.html"))
    site.serve("/oficinas/buenos-aires?page=1", page("listing-buenos-aires-1.html"))
    site.serve("/oficinas/buenos-aires?page=2", page("listing-buenos-aires-2.html"))
    site.serve("/oficina/udai-mdq", redirect("/oficina/udai-mar-del-plata"))
    site.serve("/oficinas/jujuy", page("listing-jujuy.html"))
    site.serve("/oficinas/catamarca", page("listing-catamarca-empty.html"))
    site.serve("/oficinas/tierra-del-fuego", page("listing-jujuy.html"))
    for slug in OFFICE_SLUGS:
        site.serve(f"/oficina/{slug}", page(f"detail-{slug}.html"))


@contextmanager
def serving(site: FixtureSite) -> Iterator[FixtureSite]:
    """Serve ``site`` on a free loopback port for the duration of the block."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(site))
    server.daemon_threads = True
    site.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name="fixture-site",
        daemon=True,
    )
    thread.start()
    try:
        yield site
    finally:
        site.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def scraper_settings(base_url: str, **overrides: object) -> ScraperSettings:
    """Settings for tests: fast limits, short timeouts, the given site."""
    values: dict[str, object] = {
        "scraper_anses_base_url": base_url,
        "scraper_anses_timeout_s": 2.0,
        "scraper_anses_max_concurrency": 3,
        "scraper_anses_requests_per_s": 1000.0,
        "scraper_anses_user_agent": "JupiterScraperANSES-tests/1.0",
    }
    values.update(overrides)
    return ScraperSettings.model_validate(values)


@dataclass
class Run:
    """Runs scrape tasks in-process against one settings object and keeps the progress."""

    worker: ScraperWorker
    reporter: RecordingReporter

    def steps(self) -> list[str | None]:
        """The ``current_step`` of every progress update so far."""
        return [update.current_step for update in self.reporter.updates]

    def scrape(self, target_id: str, task_id: str = "task-1") -> ScrapeResult:
        """Execute one task for ``target_id`` and return its result (or raise its error)."""
        ctx = TaskContext(
            task_id=task_id,
            attempt=1,
            redelivered=False,
            queue="scraper-anses-test",
            worker_type=self.worker.worker_type(),
            reporter=self.reporter,
        )
        task = ScrapeTask.model_validate({"id": task_id, "targetId": target_id})
        return self.worker.execute_task(task, ctx)
