"""The email task (what arrives on the queue) and its result (what the worker reports back)."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from email_service.addresses import Mailbox
from email_service.headers import check_header_text

#: Decoded bytes of all attachments of one task. Common relays refuse messages over 10-25 MB
#: and base64 adds a third on the wire; the task body itself travels through RabbitMQ.
MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024

#: RFC 5321 obliges servers to accept at least 100 recipients per message; more is a list
#: mailing, which is not this service's job.
MAX_RECIPIENTS = 100

#: Template names map to package folders: no dots or slashes, so no path tricks.
_TEMPLATE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")

#: RFC 6838 restricted names for type and subtype.
_CONTENT_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")

#: Characters that name a folder rather than a file in mail clients and file systems.
_PATH_SEPARATORS = re.compile(r"[/\\]")


def _as_list(value: Any) -> Any:
    """Let a single address stand where a list of addresses is expected."""
    if isinstance(value, str | dict):
        return [value]
    return value


class Attachment(BaseModel):
    """A file attached to the message; ``content`` is base64 (line breaks allowed)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=255)
    content_type: str = "application/octet-stream"
    content: str

    @field_validator("name")
    @classmethod
    def _name_is_a_plain_file_name(cls, value: str) -> str:
        check_header_text(value, "attachment name")
        if _PATH_SEPARATORS.search(value):
            raise ValueError("attachment name must be a file name, without / or \\")
        return value

    @field_validator("content_type")
    @classmethod
    def _content_type_is_a_single_part_type(cls, value: str) -> str:
        value = check_header_text(value, "attachment content_type").strip().lower()
        if not _CONTENT_TYPE.match(value):
            raise ValueError(f"attachment content_type {value!r} is not a type/subtype")
        if value.startswith(("multipart/", "message/")):
            raise ValueError("attachment content_type must not be multipart/* or message/*")
        return value

    @field_validator("content")
    @classmethod
    def _content_is_base64_within_limit(cls, value: str) -> str:
        compact = "".join(value.split())
        # Checked before decoding so an oversized task costs no memory to reject.
        if len(compact) * 3 // 4 > MAX_ATTACHMENT_BYTES:
            raise ValueError(f"attachment is larger than {MAX_ATTACHMENT_BYTES} bytes")
        try:
            base64.b64decode(compact, validate=True)
        except binascii.Error:
            raise ValueError("attachment content is not valid base64") from None
        return compact

    def data(self) -> bytes:
        """The decoded file content."""
        return base64.b64decode(self.content)

    @property
    def size(self) -> int:
        """Decoded size in bytes, computed without decoding."""
        return len(self.content) * 3 // 4 - self.content[-2:].count("=")


class EmailTask(BaseModel):
    """One email to send.

    The body is given either directly (``text`` and/or ``html``, then ``subject`` is
    required) or by a packaged ``template`` rendered with ``variables`` (the template
    provides the subject unless the task sets one). Everything that becomes a header is
    checked for injection, and every address for syntax: a task failing either is invalid
    and never sent.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=256)
    to: list[Mailbox] = Field(min_length=1)
    cc: list[Mailbox] = Field(default_factory=list)
    bcc: list[Mailbox] = Field(default_factory=list)
    reply_to: list[Mailbox] = Field(default_factory=list)
    subject: str | None = Field(default=None, max_length=998)
    text: str | None = None
    html: str | None = None
    template: str | None = None
    variables: dict[str, Any] = Field(default_factory=dict)
    attachments: list[Attachment] = Field(default_factory=list)

    @field_validator("to", "cc", "bcc", "reply_to", mode="before")
    @classmethod
    def _single_address_is_a_list(cls, value: Any) -> Any:
        return _as_list(value)

    @field_validator("subject")
    @classmethod
    def _subject_is_header_safe(cls, value: str | None) -> str | None:
        return None if value is None else check_header_text(value, "subject")

    @field_validator("template")
    @classmethod
    def _template_name_is_plain(cls, value: str | None) -> str | None:
        if value is not None and not _TEMPLATE_NAME.match(value):
            raise ValueError(
                f"template {value!r} is not a template name (lower-case letters, digits, - and _)"
            )
        return value

    @model_validator(mode="after")
    def _body_xor_template(self) -> EmailTask:
        has_body = self.text is not None or self.html is not None
        if self.template is not None and has_body:
            raise ValueError("give either a template or a body (text/html), not both")
        if self.template is None and not has_body:
            raise ValueError("give a body (text and/or html) or a template")
        if self.template is None and self.variables:
            raise ValueError("variables are only used with a template")
        if self.template is None and not self.subject:
            raise ValueError("subject is required when the body is given directly")
        return self

    @model_validator(mode="after")
    def _within_limits(self) -> EmailTask:
        if len(self.envelope_recipients()) > MAX_RECIPIENTS:
            raise ValueError(f"at most {MAX_RECIPIENTS} recipients (to, cc and bcc together)")
        total = sum(attachment.size for attachment in self.attachments)
        if total > MAX_ATTACHMENT_BYTES:
            raise ValueError(
                f"attachments total {total} bytes, more than the {MAX_ATTACHMENT_BYTES} allowed"
            )
        return self

    def envelope_recipients(self) -> list[str]:
        """Every address the message goes to (to, cc, bcc), each once, in order."""
        seen: dict[str, str] = {}
        for mailbox in (*self.to, *self.cc, *self.bcc):
            seen.setdefault(mailbox.address.lower(), mailbox.address)
        return list(seen.values())


class EmailResult(BaseModel):
    """What happened to the message: its id, where it went, who took it."""

    model_config = ConfigDict(frozen=True)

    message_id: str
    transport: Literal["smtp", "outbox"]
    accepted: list[str]
    refused: dict[str, str] = Field(
        default_factory=dict,
        description="recipient -> the server's reply, for recipients the server refused",
    )
    path: str | None = Field(default=None, description="the .eml file, in outbox mode")
