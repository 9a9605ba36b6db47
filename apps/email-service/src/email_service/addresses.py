"""Email addresses as they arrive in tasks and settings, validated once at the boundary."""

from __future__ import annotations

import re
from email.headerregistry import Address
from typing import Any

from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from email_service.headers import check_header_text

#: ``Display Name <local@domain>``; the name may be quoted. Anything fancier (groups, comments,
#: several addresses in one string) is rejected rather than guessed at.
_NAME_ADDR = re.compile(r'^\s*(?:"(?P<quoted>[^"]*)"|(?P<plain>[^<>"]*?))\s*<(?P<addr>[^<>]+)>\s*$')


class Mailbox(BaseModel):
    """One mailbox: an address and an optional display name.

    Accepted input forms: ``"ana@example.com"``, ``"Ana Gómez <ana@example.com>"``, or
    ``{"name": "Ana Gómez", "address": "ana@example.com"}``. The address is checked for
    syntax (not deliverability: no DNS look-up at validation time) and normalised by
    email-validator; the name must be safe in a header.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    address: str
    name: str = ""

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        match = _NAME_ADDR.match(value)
        if match is None:
            return {"address": value.strip()}
        name = match.group("quoted") if match.group("quoted") is not None else match.group("plain")
        return {"address": match.group("addr").strip(), "name": name.strip()}

    @field_validator("name")
    @classmethod
    def _name_is_header_safe(cls, value: str) -> str:
        return check_header_text(value, "display name").strip()

    @field_validator("address")
    @classmethod
    def _address_is_valid(cls, value: str) -> str:
        check_header_text(value, "address")
        try:
            return validate_email(value, check_deliverability=False).normalized
        except EmailNotValidError as error:
            raise ValueError(f"invalid email address {value!r}: {error}") from None

    @property
    def domain(self) -> str:
        """The part after the ``@``."""
        return self.address.rpartition("@")[2]

    def header_address(self) -> Address:
        """This mailbox as an ``email`` header object (encodes non-ASCII names correctly)."""
        return Address(display_name=self.name, addr_spec=self.address)

    def __str__(self) -> str:
        return str(self.header_address())
