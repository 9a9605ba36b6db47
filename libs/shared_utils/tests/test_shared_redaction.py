from shared_utils.redaction import redact_url


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
