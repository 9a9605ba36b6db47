"""A guard around pika's header decoding, so one hostile message cannot kill the connection.

Part of the broker adapter (it patches pika): RabbitMQ passes on field values pika's decoder
raises on (a timestamp beyond year 9999, tables nested deeper than Python's recursion limit).
Raised in the I/O loop, that error drops the connection; the broker redelivers the message and
the worker reconnects into the same error, forever. With the guard installed, the outermost
table of a message's headers becomes ``{UNDECODABLE_HEADERS: reason}`` instead and decoding
continues after it (its length is known).
"""

from __future__ import annotations

import struct
import threading
from typing import Any

import pika.data

#: The header a delivery gets instead of its own when pika cannot decode them (the value says
#: why).
UNDECODABLE_HEADERS = "x-undecodable-headers"

_pika_decode_table = pika.data.decode_table
_decoding = threading.local()


def tolerant_decode_table(encoded: bytes, offset: int) -> tuple[dict[Any, Any], int]:
    """pika's ``decode_table``, except that a table pika cannot decode becomes a note.

    Nested tables go to pika's function unchanged: only the outermost one is replaced.
    """
    if getattr(_decoding, "active", False):
        nested: tuple[dict[Any, Any], int] = _pika_decode_table(encoded, offset)
        return nested
    _decoding.active = True
    try:
        decoded: tuple[dict[Any, Any], int] = _pika_decode_table(encoded, offset)
        return decoded
    except Exception as error:  # noqa: BLE001 - whatever the decoder raises on a hostile value
        (size,) = struct.unpack_from(">I", encoded, offset)
        reason = f"pika could not decode them ({type(error).__name__})"
        return {UNDECODABLE_HEADERS: reason}, offset + 4 + size
    finally:
        _decoding.active = False


def install() -> None:
    """Decode message properties through :func:`tolerant_decode_table` from now on.

    pika decodes properties through the module-level name ``pika.data.decode_table``.
    """
    pika.data.decode_table = tolerant_decode_table
