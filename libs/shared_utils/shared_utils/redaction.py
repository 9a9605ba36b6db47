"""Making connection URLs safe to print."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

#: What stands in place of a removed secret.
MASK = "***"


def redact_url(url: str) -> str:
    """Return ``url`` with the password masked, keeping what helps a person (scheme, user, host).

    A comma-separated list of URLs (as ``AMQP_URL`` allows) is redacted part by part. Anything
    that does not parse as a URL is masked whole after the scheme rather than risk a leak.
    """
    return ",".join(_redact_one(part) for part in url.split(","))


def _redact_one(url: str) -> str:
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        scheme, sep, _ = url.partition("://")
        return f"{scheme}{sep}{MASK}" if sep else MASK
    if password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{host}"))
