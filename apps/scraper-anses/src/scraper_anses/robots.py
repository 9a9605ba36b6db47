"""robots.txt rules for one site, read through the scraper's own session."""

from urllib.robotparser import RobotFileParser

#: Statuses that mean "no robots.txt here": everything is allowed (RFC 9309, section 2.3.1.3).
_ALLOW_ALL_STATUSES = frozenset(range(400, 500)) - {401, 403, 408, 429}
#: Statuses by which a site refuses the file itself; like urllib's own reader we then
#: assume the site wants no robots at all.
_DISALLOW_ALL_STATUSES = frozenset({401, 403})


class RobotsRules:
    """What robots.txt allows ``user_agent`` to fetch, plus its Crawl-delay if any."""

    def __init__(self, user_agent: str, parser: RobotFileParser) -> None:
        self._user_agent = user_agent
        self._parser = parser

    @classmethod
    def from_response(cls, user_agent: str, status: int, text: str) -> "RobotsRules":
        """Build the rules from a fetched robots.txt (status and body).

        Callers handle 408, 429 and 5xx themselves: those mean "try later", not a rule.
        """
        parser = RobotFileParser()
        if status in _DISALLOW_ALL_STATUSES:
            parser.parse(["User-agent: *", "Disallow: /"])
        elif status in _ALLOW_ALL_STATUSES:
            parser.parse([])
        else:
            parser.parse(text.splitlines())
        return cls(user_agent, parser)

    def allows(self, url: str) -> bool:
        """Whether the rules let this user agent fetch ``url``."""
        return self._parser.can_fetch(self._user_agent, url)

    def crawl_delay_s(self) -> float | None:
        """The Crawl-delay that applies to this user agent, if the file sets one."""
        delay = self._parser.crawl_delay(self._user_agent)
        return float(delay) if delay is not None else None
