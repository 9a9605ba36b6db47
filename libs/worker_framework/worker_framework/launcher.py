"""What an app's ``main()`` calls: the worker's command line, loading only what a command needs.

.. code-block:: python

    def main() -> None:
        run_worker("email_service.worker:EmailWorker", prog_name="email-service")

Given the worker as an import string and the program name (the worker's ``default_queue``),
``--help`` imports click and this module only: the commands (``worker_framework.cli``, with
pydantic, loguru and the settings) and the worker's own module are imported when a command
runs. A worker class works too, for code that has it at hand.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from worker_framework.worker import BaseWorker

    WorkerClass = type[BaseWorker[Any, Any]]

__all__ = ["COMMAND_SUMMARIES", "WorkerGroup", "build_cli", "run_worker"]

#: Each command's one-line help, as ``--help`` lists it without importing the commands.
#: Must equal the commands' own ``short_help`` (a test compares them).
COMMAND_SUMMARIES = {
    "run": "Consume tasks until SIGTERM/SIGINT (the default).",
    "run-task": "Run one task locally and print its result.",
    "enqueue": "Publish tasks (a JSON object or JSON lines); print ids.",
    "dlq": "Inspect, replay or purge the dead-letter queue.",
    "healthcheck": "Exit 0 if the broker is reachable and the queue exists.",
}


class WorkerGroup(click.Group):
    """The command line of one worker: ``run`` (the default), ``run-task``, ``enqueue``,
    ``dlq``, ``healthcheck``.

    ``worker`` is the worker class or its import string (``"package.module:ClassName"``),
    imported when a command runs. ``prog_name`` defaults to the class's ``default_queue``
    (which needs the class: give it with an import string to keep ``--help`` light).
    """

    def __init__(self, worker: WorkerClass | str, *, prog_name: str | None = None) -> None:
        self._worker = worker
        if prog_name is None:
            prog_name = getattr(self.worker_cls, "default_queue", None)
        super().__init__(
            name=prog_name,
            callback=click.pass_context(self._start),
            invoke_without_command=True,
            help=f"{_class_name(worker)}: consume tasks from RabbitMQ (default command: run). "
            "Configured by environment variables (AMQP_URL, WORKER_QUEUE, WORKER_PREFETCH, ...).",
        )

    @property
    def worker_cls(self) -> WorkerClass:
        """The worker class, imported on first use when given as a string."""
        if isinstance(self._worker, str):
            module, _, name = self._worker.partition(":")
            worker_cls: WorkerClass = getattr(importlib.import_module(module), name)
            self._worker = worker_cls
            return worker_cls
        return self._worker

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMAND_SUMMARIES)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if not self.commands:
            from worker_framework.cli import COMMANDS

            for command in COMMANDS:
                self.add_command(command)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # click's own listing would import every command for its short help.
        rows = [(name, COMMAND_SUMMARIES[name]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def _start(self, ctx: click.Context) -> None:
        from worker_framework.cli import start

        start(ctx, self.worker_cls)


def _class_name(worker: WorkerClass | str) -> str:
    if isinstance(worker, str):
        module, colon, name = worker.partition(":")
        if not (module and colon and name):
            raise ValueError(f"not a 'package.module:ClassName' import string: {worker!r}")
        return name
    return worker.__name__


def build_cli(worker: WorkerClass | str, *, prog_name: str | None = None) -> WorkerGroup:
    """The click group for ``worker`` (a class, or ``"package.module:ClassName"``)."""
    return WorkerGroup(worker, prog_name=prog_name)


def run_worker(worker: WorkerClass | str, *, prog_name: str | None = None) -> None:
    """Run the command line for ``worker`` (the whole ``main()`` of a worker app).

    ``prog_name`` is the program name in usage lines, the worker's ``default_queue`` by
    default; with ``worker`` an import string, give it too, and ``--help`` imports neither the
    worker nor the framework's commands.
    """
    group = build_cli(worker, prog_name=prog_name)
    group(prog_name=group.name)
