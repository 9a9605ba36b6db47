"""Who may do what: bearer tokens, the scopes each one grants, and the checks resolvers make.

``TASK_API_TOKENS`` (or the file named by ``TASK_API_TOKENS_FILE``) maps each token to its
scopes as a JSON object, e.g. ``{"w0rker-t0ken": ["report"], "dash": ["read"]}``. The older
form, a comma-separated list of tokens, still works: every token then has every scope.

Scopes:

- ``report``: ``reportTaskProgress`` (what a worker needs, and all it should have);
- ``submit``: ``submitTask`` to any queue; ``submit:<queue>``: to that queue only;
- ``read``: the ``task``/``tasks`` queries and the page, without payloads and results;
- ``read:payload``: the same plus the ``payload`` and ``result`` fields (implies ``read``).
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass

from graphql import GraphQLError

REPORT = "report"
SUBMIT = "submit"
READ = "read"
READ_PAYLOAD = "read:payload"
_SUBMIT_TO = "submit:"
_PLAIN_SCOPES = (REPORT, SUBMIT, READ, READ_PAYLOAD)
#: RabbitMQ's limit on a queue name.
_MAX_QUEUE_LENGTH = 255

#: The ``extensions.code`` of every refusal for lack of a scope.
FORBIDDEN = "FORBIDDEN"


@dataclass(frozen=True)
class Grants:
    """The scopes of one caller (one token, or anyone when the API is open)."""

    scopes: frozenset[str]

    def may_report(self) -> bool:
        """Whether ``reportTaskProgress`` is allowed."""
        return REPORT in self.scopes

    def may_submit(self, queue: str) -> bool:
        """Whether ``submitTask`` to ``queue`` is allowed."""
        return SUBMIT in self.scopes or f"{_SUBMIT_TO}{queue}" in self.scopes

    def may_read(self) -> bool:
        """Whether tasks may be queried (without payloads and results)."""
        return READ in self.scopes or READ_PAYLOAD in self.scopes

    def may_read_payloads(self) -> bool:
        """Whether ``payload`` and ``result`` may be read."""
        return READ_PAYLOAD in self.scopes


#: What a caller may do when the API runs without tokens.
EVERYTHING = Grants(frozenset(_PLAIN_SCOPES))


def forbidden(needed: str, operation: str) -> GraphQLError:
    """The GraphQL error for a caller without the scope ``needed`` for ``operation``."""
    return GraphQLError(
        f"{operation} needs the '{needed}' scope, which this token does not have",
        extensions={"code": FORBIDDEN, "scope": needed},
    )


class TokenConfigError(ValueError):
    """The token configuration is malformed; the message never contains a token."""


@dataclass(frozen=True)
class TokenTable:
    """The accepted bearer tokens and what each grants."""

    grants_by_token: dict[str, Grants]
    #: True when configured as a plain comma-separated list (every scope, with a warning).
    legacy: bool = False

    def grants_for(self, presented: bytes) -> Grants | None:
        """The grants of the token ``presented``, or None when it is not one of ours."""
        found = None
        # Compare against every token so the time taken does not hint at which one matched.
        for token, grants in self.grants_by_token.items():
            if hmac.compare_digest(presented, token.encode()):
                found = grants
        return found


def parse_tokens(text: str) -> TokenTable:
    """Read a token configuration: a JSON object of token -> scopes, or a comma-separated list.

    Raises :class:`TokenConfigError` naming what is wrong (by position, never by value).
    """
    stripped = text.strip()
    if not stripped.startswith("{"):
        tokens = [token.strip() for token in stripped.split(",") if token.strip()]
        if not tokens:
            raise TokenConfigError("no tokens: expected a JSON object of token -> scopes")
        return TokenTable({token: EVERYTHING for token in tokens}, legacy=True)
    try:
        mapping = json.loads(stripped)
    except ValueError:
        # The decoder's message quotes the text around the error: a token, perhaps.
        raise TokenConfigError("not valid JSON: expected an object of token -> scopes") from None
    if not isinstance(mapping, dict) or not mapping:
        raise TokenConfigError("expected a non-empty JSON object of token -> list of scopes")
    table = {}
    for position, (token, scopes) in enumerate(mapping.items(), start=1):
        where = f"token #{position}"
        # The Authorization header's value is read without surrounding spaces: such a token
        # could never match.
        if not token.strip() or token != token.strip():
            raise TokenConfigError(f"{where} is blank or has spaces at an end")
        table[token] = Grants(_checked_scopes(scopes, where))
    return TokenTable(table)


def _checked_scopes(scopes: object, where: str) -> frozenset[str]:
    if not isinstance(scopes, list) or not scopes:
        raise TokenConfigError(f"{where}: expected a non-empty list of scopes")
    for number, scope in enumerate(scopes, start=1):
        if not isinstance(scope, str) or not _is_scope(scope):
            # Not echoed: a token pasted into the wrong place would end up in a log.
            raise TokenConfigError(
                f"{where}: scope #{number} is not one of report, submit, submit:<queue>,"
                " read, read:payload"
            )
    return frozenset(scopes)


def _is_scope(scope: str) -> bool:
    if scope in _PLAIN_SCOPES:
        return True
    queue = scope[len(_SUBMIT_TO) :]
    return scope.startswith(_SUBMIT_TO) and 0 < len(queue.encode()) <= _MAX_QUEUE_LENGTH
