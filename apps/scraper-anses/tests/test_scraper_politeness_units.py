"""The rate limiter, Retry-After parsing and robots rules, checked without a clock."""

from datetime import UTC, datetime

import pytest
from scraper_anses.fetcher import parse_retry_after
from scraper_anses.ratelimit import RateLimiter, SitePaused
from scraper_anses.robots import RobotsRules


class FrozenClock:
    """A clock that moves only when the limiter sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))


def test_limiter_spaces_requests_by_the_rate_even_when_all_arrive_at_once():
    clock = FrozenClock()
    limiter = RateLimiter(4.0, clock=clock, sleep=clock.sleep)

    for _ in range(5):
        limiter.acquire()

    assert clock.sleeps == [0.25, 0.5, 0.75, 1.0]
    assert limiter.acquired == 5


def test_limiter_does_not_wait_when_requests_are_already_spaced():
    clock = FrozenClock()
    limiter = RateLimiter(2.0, clock=clock, sleep=clock.sleep)

    for _ in range(3):
        limiter.acquire()
        clock.now += 1.0

    assert clock.sleeps == []


def test_pause_holds_back_every_later_request():
    clock = FrozenClock()
    limiter = RateLimiter(10.0, clock=clock, sleep=clock.sleep)
    limiter.acquire()

    limiter.pause(3.0)
    limiter.acquire()
    limiter.acquire()

    assert clock.sleeps == [3.0, 3.1]


def test_pause_longer_than_the_limit_refuses_at_once_without_taking_a_slot():
    clock = FrozenClock()
    limiter = RateLimiter(10.0, max_pause_s=5.0, clock=clock, sleep=clock.sleep)

    limiter.pause(60.0)
    with pytest.raises(SitePaused) as raised:
        limiter.acquire()

    assert raised.value.remaining_s == 60.0
    assert clock.sleeps == []
    assert limiter.acquired == 0


def test_pause_within_the_limit_is_slept_through():
    clock = FrozenClock()
    limiter = RateLimiter(10.0, max_pause_s=5.0, clock=clock, sleep=clock.sleep)

    limiter.pause(60.0)
    clock.now += 56.0
    limiter.acquire()

    assert clock.sleeps == [4.0]


def test_crawl_delay_widens_the_spacing_but_never_below_the_configured_rate():
    limiter = RateLimiter(2.0)

    limiter.apply_crawl_delay(5.0)
    assert limiter.interval_s == 5.0

    limiter.apply_crawl_delay(0.1)
    assert limiter.interval_s == 0.5


def test_a_crawl_delay_the_site_drops_no_longer_throttles():
    limiter = RateLimiter(2.0)

    limiter.apply_crawl_delay(5.0)
    limiter.apply_crawl_delay(None)

    assert limiter.interval_s == 0.5


def test_limiter_refuses_a_non_positive_rate():
    with pytest.raises(ValueError):
        RateLimiter(0)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        (" 0 ", 0.0),
        ("Sun, 29 Nov 2026 03:00:30 GMT", 30.0),
        ("Sun, 29 Nov 2026 02:00:00 GMT", 0.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
    ],
)
def test_retry_after_accepts_seconds_and_http_dates(header, seconds):
    now = datetime(2026, 11, 29, 3, 0, 0, tzinfo=UTC)

    assert parse_retry_after(header, now=now) == seconds


def test_robots_rules_apply_to_our_user_agent_and_report_crawl_delay():
    text = (
        "User-agent: JupiterBot\nDisallow: /oficinas/\nCrawl-delay: 3\n\nUser-agent: *\nDisallow:\n"
    )

    ours = RobotsRules.from_response("JupiterBot/1.0", 200, text)
    others = RobotsRules.from_response("SomeoneElse/2.0", 200, text)

    assert not ours.allows("https://x/oficinas/jujuy")
    assert ours.crawl_delay_s() == 3.0
    assert others.allows("https://x/oficinas/jujuy")
    assert others.crawl_delay_s() is None


def test_missing_robots_txt_allows_everything_and_forbidden_one_allows_nothing():
    missing = RobotsRules.from_response("Bot", 404, "")
    forbidden = RobotsRules.from_response("Bot", 403, "")

    assert missing.allows("https://x/oficinas/jujuy")
    assert not forbidden.allows("https://x/oficinas/jujuy")
