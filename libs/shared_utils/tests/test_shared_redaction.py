import pytest
from shared_utils.redaction import redact_url, url_passwords


def test_password_is_masked_and_user_and_host_kept():
    assert redact_url("postgresql://app:s3cret@db.internal:5432/tasks") == (
        "postgresql://app:***@db.internal:5432/tasks"
    )


def test_each_url_of_a_comma_separated_list_is_masked():
    redacted = redact_url("amqp://u:p1@node-a:5672/%2F,amqp://u:p2@node-b:5672/%2F")
    assert redacted == "amqp://u:***@node-a:5672/%2F,amqp://u:***@node-b:5672/%2F"
    assert "p1" not in redacted and "p2" not in redacted


def test_url_without_password_is_unchanged():
    assert redact_url("sqlite:///tasks.db") == "sqlite:///tasks.db"
    assert redact_url("amqp://localhost:5672/%2F") == "amqp://localhost:5672/%2F"


def test_password_with_reserved_characters_is_masked_whole():
    redacted = redact_url("amqp://user:p%40ss:w0rd@host/vhost")
    assert "p%40ss" not in redacted and "w0rd" not in redacted
    assert redacted.endswith("@host/vhost")


def test_unparseable_url_is_masked_rather_than_echoed():
    redacted = redact_url("amqp://user:secret@[broken")
    assert "secret" not in redacted


@pytest.mark.parametrize("separator", ["/", "#", "?"])
def test_password_with_an_unencoded_delimiter_is_masked_after_the_scheme(separator):
    url = f"amqp://user:pa{separator}ss-w0rd@rabbit.internal:5672/%2F"
    redacted = redact_url(url)
    assert redacted == "amqp://***"
    assert "ss-w0rd" not in redacted


def test_password_with_an_unencoded_at_sign_is_masked():
    redacted = redact_url("postgresql://app:p@ss-w0rd@db:5432/tasks")
    assert redacted == "postgresql://app:***@db:5432/tasks"


def test_url_with_an_invalid_port_is_masked_after_the_scheme():
    assert redact_url("amqp://user:s3cret@host:notaport/") == "amqp://***"


def test_one_bad_url_in_a_list_does_not_unmask_the_others():
    redacted = redact_url("amqp://u:a/b@node-a/%2F,amqp://u:p2@node-b/%2F")
    assert redacted == "amqp://***,amqp://u:***@node-b/%2F"


def test_text_that_is_not_a_url_but_holds_credentials_is_masked():
    assert redact_url("user:s3cret@host") == "***"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("amqp://user:s3cret@host/%2F", ["s3cret"]),
        ("amqp://u:a@node-a/,amqp://u:b/c@node-b/", ["a", "b/c"]),
        ("sqlite:///tasks.db", []),
        ("amqp://guest@localhost/", []),
    ],
)
def test_url_passwords_finds_each_password_to_register(url, expected):
    assert url_passwords(url) == expected
