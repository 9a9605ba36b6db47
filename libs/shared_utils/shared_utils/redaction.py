"""Making connection URLs safe to print."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

#: What stands in place of a removed secret.
MASK = "***"

#: Where the authority (``user:password@host:port``) of a URL ends, as RFC 3986 and
#: :func:`urllib.parse.urlsplit` read it.
_AUTHORITY_END = re.compile(r"[/?#]")


def redact_url(url: str) -> str:
    """Return ``url`` with the password masked, keeping what helps a person (scheme, user, host).

    A comma-separated list of URLs (as ``AMQP_URL`` allows) is redacted part by part. A URL
    that does not parse back to itself (a password holding an unencoded ``/``, ``#``, ``?``
    or ``@``, a bad port, anything the parser reads differently from its text) is masked
    whole after the scheme: when in doubt, nothing but the scheme is printed.
    """
    return ",".join(_redact_one(part) for part in url.split(","))


def url_passwords(url: str) -> list[str]:
    """The passwords in ``url`` (one per comma-separated URL), to register as exact secrets.

    A URL that does not parse back to itself yields what its writer meant as the password:
    from the first ``:`` after ``scheme://`` to the last ``@`` (the whole user part when it
    has no ``:``). Masking a little more than the password is harmless.
    """
    passwords = []
    for part in url.split(","):
        scheme, sep, rest = part.strip().partition("://")
        if not sep or "@" not in rest:
            continue
        if _parses_back(part.strip()):
            password = urlsplit(part.strip()).password
            if password:
                passwords.append(password)
        else:
            userinfo = rest.rsplit("@", 1)[0]
            passwords.append(userinfo.partition(":")[2] or userinfo)
    return passwords


def _masked_after_scheme(url: str) -> str:
    scheme, sep, _ = url.partition("://")
    return f"{scheme}{sep}{MASK}" if sep and _is_scheme(scheme) else MASK


def _is_scheme(text: str) -> bool:
    return re.fullmatch(r"[A-Za-z][A-Za-z0-9+.\-]*", text) is not None


def _parses_back(url: str) -> bool:
    """True when the parser's reading of ``url`` is exactly its text, credentials included.

    Besides rebuilding the URL from its parts, an ``@`` after the authority means the text
    had credentials the parser did not see as such (``user:pa/ss@host`` puts ``ss@host``
    in the path), which is how a password would otherwise slip through unmasked.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or not _is_scheme(scheme):
        return False
    end = _AUTHORITY_END.search(rest)
    authority, tail = (rest[: end.start()], rest[end.start() :]) if end else (rest, "")
    if "@" in tail:
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - reading the port is what validates it
    except ValueError:
        return False
    rebuilt = f"{parts.scheme}://{parts.netloc}{parts.path}"
    if parts.query:
        rebuilt += f"?{parts.query}"
    if parts.fragment:
        rebuilt += f"#{parts.fragment}"
    return parts.netloc == authority and rebuilt.lower() == url.lower()


def _redact_one(url: str) -> str:
    if "://" not in url:
        # Not a URL: printable unless it could carry credentials.
        return MASK if "@" in url else url
    if not _parses_back(url):
        return _masked_after_scheme(url)
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return url.replace(parts.netloc, f"{user}:{MASK}@{host}", 1)
