"""The task model: what a valid email task is, and what validation refuses before sending."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from email_service.task import MAX_ATTACHMENT_BYTES, MAX_RECIPIENTS, EmailTask
from pydantic import ValidationError


def _task(**fields: Any) -> EmailTask:
    body: dict[str, Any] = {"id": "t-1", "to": "ana@example.com", "subject": "Hi", "text": "Hello"}
    body.update(fields)
    return EmailTask.model_validate(
        {key: value for key, value in body.items() if value is not None}
    )


def _error_text(**fields: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        _task(**fields)
    return str(caught.value)


def test_a_single_address_is_accepted_where_a_list_is_expected() -> None:
    task = _task(to="ana@example.com", cc="bruno@example.com", reply_to="help@example.com")
    assert [m.address for m in task.to] == ["ana@example.com"]
    assert [m.address for m in task.cc] == ["bruno@example.com"]
    assert [m.address for m in task.reply_to] == ["help@example.com"]


def test_addresses_may_carry_display_names_in_string_or_object_form() -> None:
    task = _task(
        to=["Ana Gómez <ana@example.com>", {"name": "Bruno", "address": "bruno@example.com"}]
    )
    assert [(m.name, m.address) for m in task.to] == [
        ("Ana Gómez", "ana@example.com"),
        ("Bruno", "bruno@example.com"),
    ]


def test_quoted_display_names_may_hold_commas() -> None:
    task = _task(to='"Gómez, Ana" <ana@example.com>')
    assert task.to[0].name == "Gómez, Ana"
    assert str(task.to[0]) == '"Gómez, Ana" <ana@example.com>'


def test_address_domains_are_normalised() -> None:
    assert _task(to="Ana@EXAMPLE.com").to[0].address == "Ana@example.com"


@pytest.mark.parametrize(
    "address",
    [
        "not-an-address",
        "ana@",
        "@example.com",
        "ana@example..com",
        "ana@localhost",
        "a, b@example.com",
    ],
)
def test_invalid_addresses_are_rejected(address: str) -> None:
    assert "invalid email address" in _error_text(to=[address])


def test_at_least_one_to_recipient_is_required() -> None:
    assert "to" in _error_text(to=[])


@pytest.mark.parametrize(
    "fields",
    [
        {"subject": "Hello\r\nBcc: victim@example.com"},
        {"subject": "Hello\nX-Injected: 1"},
        {"subject": "Hello\u2028X-Injected: 1"},
        {"to": ["Ana\r\nBcc: victim@example.com <ana@example.com>"]},
        {"cc": [{"name": "Bruno\nBcc: x@example.com", "address": "bruno@example.com"}]},
        {"reply_to": "ana@example.com\r\nBcc: victim@example.com"},
        {"attachments": [{"name": "a.txt\r\nX-Injected: 1", "content": "aGk="}]},
        {
            "attachments": [
                {"name": "a.txt", "content_type": "text/plain\r\nX: 1", "content": "aGk="}
            ]
        },
    ],
    ids=[
        "subject-crlf",
        "subject-lf",
        "subject-unicode-separator",
        "to-name",
        "cc-name",
        "reply-to",
        "attachment-name",
        "content-type",
    ],
)
def test_header_injection_in_any_header_field_is_rejected(fields: dict[str, Any]) -> None:
    text = _error_text(**fields)
    assert "header injection" in text or "invalid email address" in text


def test_body_or_template_is_required() -> None:
    assert "give a body" in _error_text(text=None)


def test_body_and_template_together_are_rejected() -> None:
    assert "not both" in _error_text(template="welcome")


def test_subject_is_required_with_a_direct_body() -> None:
    assert "subject is required" in _error_text(subject=None)


def test_template_tasks_may_omit_the_subject() -> None:
    task = _task(subject=None, text=None, template="welcome", variables={"name": "Ana"})
    assert task.subject is None and task.template == "welcome"


def test_template_names_cannot_reach_outside_the_template_folder() -> None:
    assert "is not a template name" in _error_text(text=None, template="../secrets")


def test_variables_without_a_template_are_rejected() -> None:
    assert "only used with a template" in _error_text(variables={"name": "Ana"})


def test_unknown_fields_are_rejected() -> None:
    assert "from_address" in _error_text(from_address="boss@example.com")


def test_recipients_are_deduplicated_across_to_cc_and_bcc() -> None:
    task = _task(
        to=["ana@example.com", "bruno@example.com"],
        cc=["Ana@example.com"],
        bcc=["carla@example.com"],
    )
    assert task.envelope_recipients() == [
        "ana@example.com",
        "bruno@example.com",
        "carla@example.com",
    ]


def test_more_than_the_recipient_limit_is_rejected() -> None:
    addresses = [f"user{n}@example.com" for n in range(MAX_RECIPIENTS + 1)]
    assert f"at most {MAX_RECIPIENTS} recipients" in _error_text(to=addresses)


def test_attachments_decode_from_base64_including_wrapped_lines() -> None:
    encoded = base64.encodebytes(b"x" * 200).decode()  # wrapped at 76 characters
    task = _task(attachments=[{"name": "x.bin", "content": encoded}])
    assert task.attachments[0].data() == b"x" * 200
    assert task.attachments[0].size == 200
    assert task.attachments[0].content_type == "application/octet-stream"


def test_attachments_that_are_not_base64_are_rejected() -> None:
    assert "not valid base64" in _error_text(
        attachments=[{"name": "a.txt", "content": "no!base64"}]
    )


def test_attachment_names_are_file_names_not_paths() -> None:
    assert "without /" in _error_text(attachments=[{"name": "../etc/passwd", "content": "aGk="}])


def test_attachment_content_types_must_be_a_single_part_type() -> None:
    assert "type/subtype" in _error_text(
        attachments=[{"name": "a", "content_type": "text", "content": "aGk="}]
    )
    assert "multipart" in _error_text(
        attachments=[{"name": "a", "content_type": "multipart/mixed", "content": "aGk="}]
    )


def test_an_attachment_over_the_size_limit_is_rejected() -> None:
    oversized = base64.b64encode(b"\0" * (MAX_ATTACHMENT_BYTES + 3)).decode()
    assert "larger than" in _error_text(attachments=[{"name": "big.bin", "content": oversized}])


def test_attachments_over_the_size_limit_together_are_rejected() -> None:
    half = base64.b64encode(b"\0" * (MAX_ATTACHMENT_BYTES // 2 + 3)).decode()
    attachments = [{"name": "a.bin", "content": half}, {"name": "b.bin", "content": half}]
    assert "attachments total" in _error_text(attachments=attachments)
