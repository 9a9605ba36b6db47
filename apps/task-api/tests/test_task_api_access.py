"""Scoped tokens and safe defaults: each scope allowed and refused, refusals store nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pika
import pytest
import requests
from shared_utils.child_process import inherited_pythonpath
from task_api import main as task_api_main
from task_api.testing import TaskApiServer, fetch_task, free_port, graphql

REPORT = """
mutation Report($input: TaskProgressInput!) { reportTaskProgress(input: $input) { id status } }
"""
SUBMIT = """
mutation Submit($queue: String!, $payload: JSON!, $id: ID) {
  submitTask(queue: $queue, payload: $payload, id: $id) { id status }
}
"""
READ = "query Task($id: ID!) { task(id: $id) { id status progress } }"
READ_PAYLOAD = "query Task($id: ID!) { task(id: $id) { id payload } }"
READ_RESULT = "query Task($id: ID!) { task(id: $id) { id history { status result } } }"
LIST = "{ tasks(first: 5) { edges { node { id status } } } }"

#: The worked example of the README: a worker, a submitter limited to one queue, a dashboard.
WORKER, SUBMITTER, ANY_QUEUE, READER, DASHBOARD = (
    "w0rker-t0ken",
    "subm1t-t0ken",
    "any-queue-t0ken",
    "read-only-t0ken",
    "dashb0ard-t0ken",
)


@pytest.fixture(scope="module")
def scoped_queue(amqp_url: str) -> Iterator[str]:
    """A queue the submitter's token names, deleted after the module."""
    name = f"task-api-scoped-{uuid.uuid4().hex[:12]}"
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    channel.queue_declare(queue=name, durable=True)
    try:
        yield name
    finally:
        channel.queue_delete(queue=name)
        connection.close()


@pytest.fixture(scope="module")
def scoped_api(amqp_url: str, scoped_queue: str) -> Iterator[TaskApiServer]:
    """A task-api whose tokens each grant different scopes."""
    tokens = {
        WORKER: ["report"],
        SUBMITTER: [f"submit:{scoped_queue}", "read"],
        ANY_QUEUE: ["submit"],
        READER: ["read"],
        DASHBOARD: ["read", "read:payload"],
    }
    with TaskApiServer(tokens=tokens, extra_env={"AMQP_URL": amqp_url}) as server:
        yield server


def report(api: TaskApiServer, token: str, task_id: str, **fields: Any) -> dict[str, Any]:
    values = {"taskId": task_id, "workerType": "demo", "status": "PROCESSING", **fields}
    return graphql(api.url, REPORT, {"input": values}, token=token)


def submit(api: TaskApiServer, token: str, queue: str, task_id: str) -> dict[str, Any]:
    variables = {"queue": queue, "payload": {"to": "a@example.org"}, "id": task_id}
    return graphql(api.url, SUBMIT, variables, token=token)


def error_code(body: dict[str, Any]) -> str:
    code: str = body["errors"][0]["extensions"]["code"]
    return code


def messages_in(channel: Any, queue: str) -> int:
    return int(channel.queue_declare(queue=queue, passive=True).method.message_count)


def test_a_report_token_reports_progress(scoped_api, task_id):
    body = report(scoped_api, WORKER, task_id, progress=10)

    assert "errors" not in body, body
    task = fetch_task(scoped_api.url, task_id, token=DASHBOARD)
    assert task is not None and task["progress"] == 10


@pytest.mark.parametrize("token", [SUBMITTER, READER, DASHBOARD, ANY_QUEUE])
def test_a_token_without_report_cannot_report_and_nothing_is_stored(scoped_api, task_id, token):
    body = report(scoped_api, token, task_id, progress=10)

    assert error_code(body) == "FORBIDDEN"
    assert "'report' scope" in body["errors"][0]["message"]
    assert fetch_task(scoped_api.url, task_id, token=DASHBOARD) is None


def test_a_report_token_cannot_read_tasks(scoped_api, task_id):
    report(scoped_api, WORKER, task_id)

    single = graphql(scoped_api.url, READ, {"id": task_id}, token=WORKER)
    listing = graphql(scoped_api.url, LIST, token=WORKER)

    assert error_code(single) == "FORBIDDEN"
    assert single["data"]["task"] is None
    assert error_code(listing) == "FORBIDDEN"


def test_a_queue_scoped_token_submits_to_its_queue(scoped_api, scoped_queue, rabbit_channel):
    task_id = f"t-{uuid.uuid4().hex}"
    before = messages_in(rabbit_channel, scoped_queue)

    body = submit(scoped_api, SUBMITTER, scoped_queue, task_id)

    assert "errors" not in body, body
    assert messages_in(rabbit_channel, scoped_queue) == before + 1


def test_a_queue_scoped_token_cannot_submit_to_another_queue_and_nothing_is_stored(
    scoped_api, queue_name, rabbit_channel, task_id
):
    body = submit(scoped_api, SUBMITTER, queue_name, task_id)

    assert error_code(body) == "FORBIDDEN"
    assert f"submit:{queue_name}" in body["errors"][0]["message"]
    assert fetch_task(scoped_api.url, task_id, token=DASHBOARD) is None
    assert messages_in(rabbit_channel, queue_name) == 0


def test_a_submit_token_submits_to_any_queue(scoped_api, queue_name, rabbit_channel, task_id):
    body = submit(scoped_api, ANY_QUEUE, queue_name, task_id)

    assert "errors" not in body, body
    assert messages_in(rabbit_channel, queue_name) == 1


@pytest.mark.parametrize("token", [WORKER, READER, DASHBOARD])
def test_a_token_without_submit_cannot_submit_and_nothing_is_stored(
    scoped_api, queue_name, rabbit_channel, task_id, token
):
    body = submit(scoped_api, token, queue_name, task_id)

    assert error_code(body) == "FORBIDDEN"
    assert fetch_task(scoped_api.url, task_id, token=DASHBOARD) is None
    assert messages_in(rabbit_channel, queue_name) == 0


def test_a_read_token_reads_tasks_but_not_payloads_or_results(scoped_api, scoped_queue):
    task_id = f"t-{uuid.uuid4().hex}"
    submit(scoped_api, SUBMITTER, scoped_queue, task_id)
    report(scoped_api, WORKER, task_id, status="COMPLETED", result={"secret": "link"})

    task = graphql(scoped_api.url, READ, {"id": task_id}, token=READER)
    listing = graphql(scoped_api.url, LIST, token=READER)
    payload = graphql(scoped_api.url, READ_PAYLOAD, {"id": task_id}, token=READER)
    result = graphql(scoped_api.url, READ_RESULT, {"id": task_id}, token=READER)

    assert "errors" not in task and task["data"]["task"]["status"] == "COMPLETED"
    assert "errors" not in listing
    assert error_code(payload) == "FORBIDDEN"
    assert payload["data"]["task"]["payload"] is None
    assert error_code(result) == "FORBIDDEN"
    assert "link" not in json.dumps(payload) + json.dumps(result)


def test_a_read_payload_token_reads_payloads_and_results(scoped_api, scoped_queue):
    task_id = f"t-{uuid.uuid4().hex}"
    submit(scoped_api, SUBMITTER, scoped_queue, task_id)
    report(scoped_api, WORKER, task_id, status="COMPLETED", result={"sent": True})

    payload = graphql(scoped_api.url, READ_PAYLOAD, {"id": task_id}, token=DASHBOARD)
    result = graphql(scoped_api.url, READ_RESULT, {"id": task_id}, token=DASHBOARD)

    assert payload["data"]["task"]["payload"] == {"to": "a@example.org", "id": task_id}
    assert result["data"]["task"]["history"][-1]["result"] == {"sent": True}


def test_the_page_needs_the_read_scope(scoped_api):
    refused = requests.get(
        scoped_api.base_url + "/", headers={"Authorization": f"Bearer {WORKER}"}, timeout=10
    )
    allowed = requests.get(
        scoped_api.base_url + "/", headers={"Authorization": f"Bearer {READER}"}, timeout=10
    )

    assert refused.status_code == 403
    assert allowed.status_code == 200


def test_no_scoped_token_appears_in_the_log(scoped_api):
    graphql(scoped_api.url, LIST, token=READER)

    log = scoped_api.log()
    assert all(token not in log for token in (WORKER, SUBMITTER, READER, DASHBOARD))


def test_a_plain_list_of_tokens_still_grants_every_scope_with_a_warning(task_id):
    with TaskApiServer(tokens=["legacy-t0ken"]) as server:
        reported = report(server, "legacy-t0ken", task_id, result={"r": 1})
        task = fetch_task(server.url, task_id, token="legacy-t0ken")
        log = server.log()

    assert "errors" not in reported
    assert task is not None and task["result"] == {"r": 1}
    assert "TASK_API_TOKENS is a plain list" in log


def test_tokens_can_come_from_a_file(tmp_path, task_id):
    tokens_file = tmp_path / "tokens.json"
    tokens_file.write_text(json.dumps({"file-t0ken": ["report", "read"]}))
    env = {"TASK_API_TOKENS_FILE": str(tokens_file)}
    with TaskApiServer(extra_env=env) as server:
        reported = report(server, "file-t0ken", task_id)
        refused = requests.post(server.url, json={"query": LIST}, timeout=10)

    assert "errors" not in reported
    assert refused.status_code == 401


def _start_expecting_failure(**env: str) -> subprocess.CompletedProcess[bytes]:
    full_env = dict(os.environ, PYTHONPATH=inherited_pythonpath(), TASK_API_PORT=str(free_port()))
    for variable in ("TASK_API_TOKENS", "TASK_API_TOKENS_FILE", "TASK_API_ALLOW_ANONYMOUS"):
        full_env.pop(variable, None)
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", task_api_main.__name__],
        env=full_env,
        capture_output=True,
        timeout=60,
    )


def test_without_tokens_on_a_public_address_the_server_refuses_to_start():
    completed = _start_expecting_failure(TASK_API_HOST="0.0.0.0")  # noqa: S104

    assert completed.returncode == 2
    [line] = completed.stderr.decode().strip().splitlines()
    assert "TASK_API_TOKENS" in line
    assert "TASK_API_ALLOW_ANONYMOUS=true" in line


def test_anonymous_access_on_a_public_address_is_possible_when_asked_for():
    env = {"TASK_API_HOST": "0.0.0.0", "TASK_API_ALLOW_ANONYMOUS": "true"}  # noqa: S104
    with TaskApiServer(extra_env=env) as server:
        body = graphql(server.url, LIST)

    assert "errors" not in body


@pytest.mark.parametrize(
    "tokens",
    [
        '{"s3cret-t0ken": ["report", "admin"]}',
        '{"s3cret-t0ken": []}',
        '{"s3cret-t0ken": "report"}',
        '{"s3cret-t0ken": ["report"]',
        '{"s3cret-t0ken": ["submit:"]}',
    ],
)
def test_a_malformed_token_configuration_stops_the_process_without_echoing_it(tokens):
    completed = _start_expecting_failure(TASK_API_TOKENS=tokens)

    assert completed.returncode == 2
    [line] = completed.stderr.decode().strip().splitlines()
    assert "TASK_API_TOKENS" in line
    assert "s3cret" not in line


def test_tokens_in_both_variables_stop_the_process(tmp_path):
    tokens_file = tmp_path / "tokens.json"
    tokens_file.write_text('{"a-t0ken": ["read"]}')

    completed = _start_expecting_failure(
        TASK_API_TOKENS='{"b-t0ken": ["read"]}', TASK_API_TOKENS_FILE=str(tokens_file)
    )

    assert completed.returncode == 2
    assert "not both" in completed.stderr.decode()


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None],
)
def test_a_post_that_is_not_application_json_is_refused_and_stores_nothing(
    api, task_id, content_type
):
    values = {"taskId": task_id, "workerType": "demo", "status": "PROCESSING"}
    body = json.dumps({"query": REPORT, "variables": {"input": values}})
    headers = {} if content_type is None else {"Content-Type": content_type}

    response = requests.post(api.url, data=body.encode(), headers=headers, timeout=10)

    assert response.status_code == 415
    assert response.json()["errors"][0]["extensions"]["code"] == "UNSUPPORTED_MEDIA"
    assert fetch_task(api.url, task_id) is None


def test_application_json_with_a_charset_is_accepted(api):
    response = requests.post(
        api.url,
        data=json.dumps({"query": LIST}).encode(),
        headers={"Content-Type": "application/json; charset=utf-8"},
        timeout=10,
    )

    assert response.status_code == 200
    assert "errors" not in response.json()


def test_a_database_password_that_breaks_url_parsing_never_reaches_the_output():
    # The unencoded "/" makes the password look like a path to a URL parser; the database is
    # unreachable, so the process reports the URL and the driver's error, then exits 1.
    url = f"postgresql://postgres:pa/ss-w0rd@127.0.0.1:{free_port()}/tasks"

    completed = _start_expecting_failure(TASK_API_DATABASE_URL=url)

    output = (completed.stdout + completed.stderr).decode()
    assert completed.returncode == 1
    assert "cannot open the database" in output
    assert "ss-w0rd" not in output
