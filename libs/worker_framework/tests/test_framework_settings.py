"""Settings come from the environment; a bad value names its variable and nothing else."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from pydantic import BaseModel
from worker_framework import BaseWorker, TaskContext, WorkerSettings
from worker_framework.cli import build_cli
from worker_framework.errors import SettingsError
from worker_framework.settings import load_settings


class AppSettings(WorkerSettings):
    smtp_host: str | None = None
    smtp_port: int = 25


def test_defaults_match_the_design(monkeypatch):
    for variable in ("AMQP_URL", "WORKER_PREFETCH", "WORKER_MAX_RETRIES", "LOG_FORMAT"):
        monkeypatch.delenv(variable, raising=False)
    settings = load_settings(WorkerSettings)
    assert settings.amqp_url == "amqp://guest:guest@localhost:5672/%2F"
    assert (settings.worker_prefetch, settings.worker_max_retries) == (10, 5)
    assert (settings.worker_initial_delay_ms, settings.worker_backoff_factor) == (1000, 2.0)
    assert settings.worker_max_delay_ms == 3_600_000
    assert settings.worker_shutdown_grace_s == 30
    assert settings.worker_task_timeout_s < 30 * 60  # below RabbitMQ's default consumer_timeout
    assert (settings.log_format, settings.log_level) == ("text", "INFO")


def test_environment_variables_fill_fields_of_app_subclasses(monkeypatch):
    monkeypatch.setenv("SMTP_HOST", "mail.example.org")
    monkeypatch.setenv("WORKER_QUEUE_TYPE", "quorum")
    monkeypatch.setenv("SOMETHING_UNRELATED", "ignored")
    settings = load_settings(AppSettings)
    assert settings.smtp_host == "mail.example.org"
    assert settings.worker_queue_type == "quorum"


@pytest.mark.parametrize("value", ["", "  "])
def test_blank_graphql_url_means_unset(monkeypatch, value):
    monkeypatch.setenv("GRAPHQL_URL", value)
    assert load_settings(WorkerSettings).graphql_url is None


def test_http_and_https_graphql_urls_are_accepted(monkeypatch):
    for url in ("http://task-api:4000/graphql", "HTTPS://progress.example.org/graphql"):
        monkeypatch.setenv("GRAPHQL_URL", url)
        assert load_settings(WorkerSettings).graphql_url == url


def test_several_comma_separated_broker_urls_are_accepted(monkeypatch):
    monkeypatch.setenv("AMQP_URL", "amqp://a:1@node1/%2F, amqp://a:1@node2/%2F")
    assert load_settings(WorkerSettings).amqp_urls() == [
        "amqp://a:1@node1/%2F",
        "amqp://a:1@node2/%2F",
    ]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("WORKER_PREFETCH", "0"),
        ("WORKER_BACKOFF_FACTOR", "half"),
        ("SMTP_PORT", "smtp"),
        ("LOG_FORMAT", "xml"),
        ("AMQP_URL", "redis://user:topsecret@host"),
        ("GRAPHQL_URL", "ftp://user:topsecret@host/graphql"),
        ("GRAPHQL_URL", "task-api:4000/graphql?token=topsecret"),
        ("GRAPHQL_URL", "http://user:topsecret@task-api:port/graphql"),
        ("WORKER_METRICS_PORT", "0"),
        ("WORKER_METRICS_PORT", "65536"),
        ("WORKER_METRICS_PORT", "-1"),
        ("WORKER_METRICS_PORT", "metrics"),
        ("WORKER_METRICS_HOST", "  "),
        ("WORKER_METRICS_HOST", "0.0.0.0 topsecret"),
        ("WORKER_LIVENESS_TIMEOUT_S", "0"),
    ],
)
def test_invalid_value_raises_settings_error_naming_the_variable_without_its_value(
    monkeypatch, variable, value
):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings(AppSettings)
    assert caught.value.variable == variable
    assert str(caught.value).startswith(f"invalid setting {variable}: ")
    assert "topsecret" not in str(caught.value)


class _Task(BaseModel):
    id: str


class AppWorker(BaseWorker[_Task, _Task]):
    default_queue = "settings-annotation"
    settings: AppSettings


def test_the_settings_annotation_names_the_model_the_cli_loads():
    assert AppWorker.settings_model() is AppSettings
    assert BaseWorker.settings_model() is WorkerSettings


def test_a_worker_gets_its_own_settings_type_without_a_cast():
    worker = AppWorker(settings=load_settings(AppSettings, smtp_port=2525))
    assert worker.settings.smtp_port == 2525


def test_a_worker_refuses_settings_of_another_model():
    with pytest.raises(TypeError, match="AppWorker needs AppSettings, got WorkerSettings"):
        AppWorker(settings=load_settings(WorkerSettings))


def test_the_run_task_command_loads_the_annotated_model(monkeypatch):
    monkeypatch.setenv("SMTP_PORT", "2626")
    seen: list[int] = []

    class EchoWorker(AppWorker):
        def execute_task(self, task: _Task, ctx: TaskContext) -> _Task:
            seen.append(self.settings.smtp_port)
            return task

    result = CliRunner().invoke(build_cli(EchoWorker), ["run-task", "-"], input='{"id": "t1"}')
    assert result.exit_code == 0, result.output
    assert seen == [2626]


def test_metrics_are_off_unless_a_port_is_set(monkeypatch):
    monkeypatch.delenv("WORKER_METRICS_PORT", raising=False)
    assert load_settings(WorkerSettings).worker_metrics_port is None
    monkeypatch.setenv("WORKER_METRICS_PORT", " ")
    assert load_settings(WorkerSettings).worker_metrics_port is None
    monkeypatch.setenv("WORKER_METRICS_PORT", "9102")
    settings = load_settings(WorkerSettings)
    assert settings.worker_metrics_port == 9102
    assert settings.worker_metrics_host == "0.0.0.0"  # noqa: S104 - the default checked
    assert settings.worker_liveness_timeout_s == 60


def test_the_run_command_refuses_an_invalid_metrics_port_with_one_line(monkeypatch):
    monkeypatch.setenv("WORKER_METRICS_PORT", "70000")
    result = CliRunner().invoke(build_cli(AppWorker), ["run"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: invalid setting WORKER_METRICS_PORT: Input should be less than or equal to 65535"
    ]
