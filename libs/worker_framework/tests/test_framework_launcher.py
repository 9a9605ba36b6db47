"""``run_worker`` with the worker named by an import string: ``--help`` without the framework."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner
from framework_probe_worker import ProbeWorker
from worker_framework import testing_processes
from worker_framework.cli import COMMANDS
from worker_framework.launcher import COMMAND_SUMMARIES, build_cli
from worker_framework.testing_processes import modules_imported_by

PROBE = f"{ProbeWorker.__module__}:ProbeWorker"

#: ``main()`` as an app writes it, and as it was written before (the class imported).
BY_NAME = (
    "from worker_framework import run_worker; "
    f"run_worker({PROBE!r}, prog_name={ProbeWorker.default_queue!r})"
)
BY_CLASS = "from framework_probe_worker import main; main()"

#: What a worker's ``--help`` used to import and need not: the commands, the settings, the worker.
NOT_NEEDED_FOR_HELP = {
    *testing_processes.NOT_NEEDED_FOR_HELP,
    "pydantic_settings",
    "worker_framework.progress",
    "worker_framework.worker",
    ProbeWorker.__module__,
}


def _help(group: click.Group, width: int) -> str:
    result = CliRunner().invoke(group, ["--help"], terminal_width=width)
    assert result.exit_code == 0, result.output
    return result.output


def test_the_listed_summaries_are_the_commands_own_short_help():
    assert {command.name: command.short_help for command in COMMANDS} == COMMAND_SUMMARIES


@pytest.mark.parametrize("width", [50, 64, 80, 120])
def test_help_reads_as_a_plain_click_group_of_the_commands_would(width):
    lazy = build_cli(ProbeWorker)
    plain = click.Group(
        name=lazy.name, commands=COMMANDS, help=lazy.help, invoke_without_command=True
    )

    assert _help(lazy, width) == _help(plain, width)


def test_an_import_string_with_the_program_name_gives_the_same_command_line_as_the_class():
    named = _help(build_cli(PROBE, prog_name=ProbeWorker.default_queue), 80)

    assert named == _help(build_cli(ProbeWorker), 80)
    assert "Usage: framework-probe [OPTIONS] [COMMAND]" in named
    assert "ProbeWorker: consume tasks from RabbitMQ" in named


def test_an_import_string_alone_takes_the_program_name_from_the_default_queue():
    assert build_cli(PROBE).name == "framework-probe"


def test_a_malformed_import_string_is_refused_naming_the_expected_form():
    with pytest.raises(ValueError, match="package.module:ClassName"):
        build_cli("framework_probe_worker.ProbeWorker", prog_name="probe")


def test_help_imports_neither_the_worker_nor_the_commands_nor_their_dependencies():
    completed, imported = modules_imported_by(BY_NAME, "--help")

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == modules_imported_by(BY_CLASS, "--help")[0].stdout
    assert "click" in imported  # the check sees what the program imports
    assert not imported & NOT_NEEDED_FOR_HELP


def test_a_command_given_an_import_string_imports_the_worker_and_runs(tmp_path):
    (tmp_path / "task.json").write_text("not json")
    completed, imported = modules_imported_by(BY_NAME, "run-task", str(tmp_path / "task.json"))

    assert completed.returncode == 2  # invalid input, as with the class
    assert completed.stderr.startswith("error: invalid task: ")
    assert {ProbeWorker.__module__, "worker_framework.cli"} <= imported


def test_the_package_names_its_public_api_without_importing_it():
    completed, imported = modules_imported_by(
        "import worker_framework; print(sorted(worker_framework.__all__))"
    )

    assert completed.returncode == 0, completed.stderr
    assert "'BaseWorker'" in completed.stdout
    assert not imported & NOT_NEEDED_FOR_HELP
