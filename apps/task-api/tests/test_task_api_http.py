"""The HTTP surface: bearer-token auth, the body size limit, the page, settings at start."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import requests
from shared_utils.child_process import inherited_pythonpath
from task_api import main as task_api_main
from task_api.testing import TaskApiServer, fetch_task, graphql

QUERY = "{ tasks(first: 1) { pageInfo { hasNextPage } } }"
REPORT = """
mutation Report($input: TaskProgressInput!) { reportTaskProgress(input: $input) { id } }
"""


@pytest.fixture(scope="module")
def secured_api():
    """A task-api that accepts two bearer tokens."""
    with TaskApiServer(tokens=["alpha-token", "beta-token"]) as server:
        yield server


def test_with_tokens_a_request_without_a_token_is_refused(secured_api):
    response = requests.post(secured_api.url, json={"query": QUERY}, timeout=10)

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "errors" in response.json()


def test_with_tokens_a_wrong_token_is_refused(secured_api):
    response = requests.post(
        secured_api.url,
        json={"query": QUERY},
        headers={"Authorization": "Bearer wrong"},
        timeout=10,
    )

    assert response.status_code == 401


def test_with_tokens_each_configured_token_is_accepted(secured_api):
    for token in ("alpha-token", "beta-token"):
        body = graphql(secured_api.url, QUERY, token=token)

        assert "errors" not in body


def test_with_tokens_the_page_needs_a_token_too(secured_api):
    refused = requests.get(secured_api.base_url + "/", timeout=10)
    allowed = requests.get(
        secured_api.base_url + "/", headers={"Authorization": "Bearer beta-token"}, timeout=10
    )

    assert refused.status_code == 401
    assert allowed.status_code == 200


def test_with_tokens_the_token_never_appears_in_the_log(secured_api):
    graphql(secured_api.url, QUERY, token="alpha-token")

    assert "alpha-token" not in secured_api.log()


def test_without_tokens_the_server_warns_at_start_that_it_is_open():
    with TaskApiServer() as server:
        body = graphql(server.url, QUERY)

        assert "errors" not in body
        assert "TASK_API_TOKENS is not set" in server.log()


def test_a_body_over_the_limit_is_refused_with_413():
    with TaskApiServer(extra_env={"TASK_API_MAX_BODY_BYTES": "2048"}) as server:
        big = {"query": REPORT, "variables": {"input": {"taskId": "x" * 4000}}}

        response = requests.post(server.url, json=big, timeout=10)

        assert response.status_code == 413


def test_a_body_that_is_not_json_is_a_400(api):
    response = requests.post(
        api.url, data=b"{nope", headers={"Content-Type": "application/json"}, timeout=10
    )

    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


def test_get_on_the_graphql_path_says_to_use_post(api):
    response = requests.get(api.url, timeout=10)

    assert response.status_code == 405
    assert "POST" in response.json()["errors"][0]["message"]


def test_the_page_lists_recent_tasks_with_status_and_escaped_values(api):
    hostile = "<script>alert(1)</script>"
    api.graphql(
        REPORT,
        {
            "input": {
                "taskId": "page-task-1",
                "workerType": "demo",
                "status": "PROCESSING",
                "progress": 42,
                "currentStep": hostile,
            }
        },
    )

    response = requests.get(api.base_url + "/", timeout=10)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "page-task-1" in response.text
    assert '<progress max="100" value="42">' in response.text
    assert hostile not in response.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in response.text


def test_tasks_survive_a_restart_of_the_server_on_the_same_database():
    server = TaskApiServer()
    with server:
        graphql(
            server.url, REPORT, {"input": {"taskId": "kept", "workerType": "d", "status": "QUEUED"}}
        )
        server.stop()
        server.start()

        task = fetch_task(server.url, "kept")

    assert task is not None
    assert task["status"] == "QUEUED"


#: What serving needs and --help does not; importing them costs most of a second at start.
SERVER_ONLY_MODULES = ("uvicorn", "strawberry", "graphql", "pika")


def test_help_lists_the_settings_without_importing_what_serving_needs():
    probe = (
        "import sys\n"
        "from task_api.main import cli\n"
        "try:\n"
        "    cli(['--help'])\n"
        "except SystemExit as done:\n"
        "    assert done.code == 0, done.code\n"
        f"print(sorted(set({SERVER_ONLY_MODULES!r}) & sys.modules.keys()))\n"
    )
    env = dict(os.environ, PYTHONPATH=inherited_pythonpath())

    completed = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, timeout=60, check=True
    )

    output = completed.stdout.decode()
    assert "TASK_API_DATABASE_URL" in output
    assert output.strip().splitlines()[-1] == "[]"


def test_an_invalid_setting_stops_the_process_with_one_line_naming_the_variable():
    env = dict(os.environ, PYTHONPATH=inherited_pythonpath(), TASK_API_PORT="not-a-port")

    completed = subprocess.run(
        [sys.executable, "-m", task_api_main.__name__], env=env, capture_output=True, timeout=60
    )

    assert completed.returncode == 2
    lines = completed.stderr.decode().strip().splitlines()
    assert len(lines) == 1
    assert "TASK_API_PORT" in lines[0]


@pytest.mark.parametrize(
    "amqp_url",
    [
        "http://guest:s3cret-pw@127.0.0.1:5672/%2F",
        "amqp://guest:guest@127.0.0.1:5672/%2F,redis://guest:s3cret-pw@127.0.0.1:6379",
        " , ",
    ],
)
def test_an_invalid_amqp_url_stops_the_process_with_one_line_naming_it_without_its_value(
    amqp_url,
):
    env = dict(os.environ, PYTHONPATH=inherited_pythonpath(), AMQP_URL=amqp_url)

    completed = subprocess.run(
        [sys.executable, "-m", task_api_main.__name__], env=env, capture_output=True, timeout=60
    )

    assert completed.returncode == 2
    lines = completed.stderr.decode().strip().splitlines()
    assert len(lines) == 1
    assert "AMQP_URL" in lines[0]
    assert "s3cret-pw" not in lines[0]


def test_passwords_in_the_database_and_broker_urls_never_appear_in_the_log(postgres_database_url):
    # Trust authentication ignores the password, so the URL works and still carries one.
    scheme, rest = postgres_database_url.split("://", 1)
    user, _, location = rest.rpartition("@")
    with_password = f"{scheme}://{user.split(':')[0] or 'postgres'}:db-s3cret@{location}"
    broker = "amqp://guest:guest@127.0.0.1:5672/%2F"
    with TaskApiServer(database_url=with_password, extra_env={"AMQP_URL": broker}) as server:
        graphql(server.url, QUERY)
        log = server.log()

    assert "db-s3cret" not in log
    assert "guest:guest" not in log


def test_sigterm_shuts_the_server_down_gracefully():
    server = TaskApiServer()
    with server:
        exit_code = server.stop()
        log = server.log()

    assert exit_code == 0
    assert "Application shutdown complete" in log
