"""Log lines carry task context, come as text or JSON, and never show secrets."""

from __future__ import annotations

import io
import json

import pytest
from loguru import logger
from worker_framework.broker import BrokerConnection, describe_nodes
from worker_framework.errors import BrokerUnavailable
from worker_framework.logging import configure_logging, redact
from worker_framework.testing import worker_settings


@pytest.fixture
def captured():
    stream = io.StringIO()

    def configure(**overrides):
        configure_logging(worker_settings(**overrides), stream=stream)
        return stream

    yield configure
    configure_logging(worker_settings())


def test_text_lines_carry_worker_type_queue_task_id_and_attempt(captured):
    stream = captured()
    logger.bind(worker_type="probe", queue="q1", task_id="t1", attempt=2).info("hello")
    line = stream.getvalue()
    assert "worker_type=probe queue=q1 task_id=t1 attempt=2 | hello" in line


def test_json_format_writes_one_object_per_line(captured):
    stream = captured(log_format="json")
    logger.bind(task_id="t1", attempt=1).warning("first")
    logger.info("second")
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [r["message"] for r in records] == ["first", "second"]
    assert records[0]["task_id"] == "t1" and records[0]["level"] == "WARNING"


def test_url_credentials_and_tokens_are_redacted_in_messages(captured):
    stream = captured(graphql_token="tok-0123456789")
    logger.info("connecting to amqp://admin:s3cr3t@rabbit:5672/%2F with tok-0123456789")
    logger.info("header Authorization: Bearer abc.def.ghi")
    output = stream.getvalue()
    assert "s3cr3t" not in output and "tok-0123456789" not in output and "abc.def.ghi" not in output
    assert "amqp://admin:***@rabbit:5672" in output


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_secrets_in_exception_tracebacks_are_redacted(captured, log_format):
    stream = captured(log_format=log_format)
    try:
        raise ConnectionError("cannot reach amqps://svc:pa55word@broker.internal:5671")
    except ConnectionError:
        logger.exception("connection failed")
    output = stream.getvalue()
    assert "ConnectionError" in output
    assert "pa55word" not in output


def test_redact_leaves_ordinary_text_alone():
    assert (
        redact("task 42 done in 3 ms at http://example.org/path")
        == "task 42 done in 3 ms at http://example.org/path"
    )
    assert redact("password=hunter2 token: abc") == "password=*** token: ***"


def test_stdlib_logging_records_are_redacted_too(captured):
    import logging

    stream = captured()
    logging.getLogger("somelib").error("dsn postgresql://u:dbpass@db/x")
    assert "dbpass" not in stream.getvalue()
    assert "postgresql://u:***@db/x" in stream.getvalue()


def test_broker_node_descriptions_mask_whole_passwords_even_with_an_at_sign():
    described = describe_nodes(["amqp://guest:p@ssw0rd@node1/%2F", "amqps://svc:k3y@node2:5671"])
    assert described == "amqp://guest:***@node1/%2F, amqps://svc:***@node2:5671"


def test_invalid_amqp_url_is_reported_without_its_password():
    with pytest.raises(BrokerUnavailable, match="invalid AMQP_URL") as caught:
        BrokerConnection.connect(["amqp://guest:p@ssw0rd@node1:notaport/%2F"])
    assert "ssw0rd" not in str(caught.value)
