"""Guards for text that ends up in a message header.

A header value that carries a CR or LF can smuggle new headers (``Bcc:``) or a whole body
into a message: header injection. Every task field that becomes a header passes through
:func:`check_header_text`, so the check lives in one place and rejects instead of repairing:
a task that tries it is wrong, and sending a "cleaned" version would hide that.
"""

from __future__ import annotations

import re

#: C0 controls (CR, LF, NUL, ...) and DEL; a horizontal tab is harmless in a header.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

#: Unicode line and paragraph separators: some mail software treats them as line breaks.
_UNICODE_LINE_BREAKS = re.compile(r"[\u0085\u2028\u2029]")


class HeaderInjectionError(ValueError):
    """A value meant for a header holds a line break or another control character."""


def check_header_text(value: str, field: str) -> str:
    """Return ``value`` unchanged if it is safe in a header, else raise.

    ``field`` names the task field in the error, so the person reading the dead letter knows
    what to fix.
    """
    if _CONTROL_CHARACTERS.search(value) or _UNICODE_LINE_BREAKS.search(value):
        raise HeaderInjectionError(
            f"{field} must not contain line breaks or control characters (header injection)"
        )
    return value
