"""Test helpers that start processes: a worker in a subprocess, and forced broker disconnects."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping

from pydantic import SecretStr
from shared_utils.child_process import inherited_pythonpath

from worker_framework.settings import WorkerSettings

#: The broker the repository's test suites use when ``AMQP_URL`` is unset.
DEFAULT_TEST_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


def amqp_url() -> str:
    """The broker under test: ``AMQP_URL`` or the local default."""
    return os.environ.get("AMQP_URL", DEFAULT_TEST_AMQP_URL)


def settings_env(settings: WorkerSettings) -> dict[str, str]:
    """``settings`` as environment variables, for a CLI runner or a :class:`WorkerProcess`."""
    env: dict[str, str] = {}
    for field, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[field.upper()] = str(value)
    return env


def subprocess_env(**overrides: str) -> dict[str, str]:
    """The current environment plus ``PYTHONPATH`` = this interpreter's ``sys.path`` (works in a
    Pants sandbox and a venv alike), plus ``overrides``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = inherited_pythonpath()
    env.setdefault("AMQP_URL", amqp_url())
    env.update(overrides)
    return env


def modules_imported_by(
    code: str, *args: str, **env: str
) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run ``python -c code *args`` to its end (environment: :func:`subprocess_env` plus
    ``env``); the completed process and every module in its ``sys.modules`` at exit.

    ``sys.modules``, not ``-X importtime``: that one misses modules imported by
    ``importlib.import_module``, as the framework's lazy names are.
    """
    with tempfile.TemporaryDirectory(prefix="modules-") as folder:
        listing = os.path.join(folder, "modules")
        at_exit = (
            "import atexit, sys\n"
            f"atexit.register(lambda: open({listing!r}, 'w').write('\\n'.join(sys.modules)))\n"
        )
        completed = subprocess.run(
            [sys.executable, "-c", at_exit + code, *args],
            env=subprocess_env(**env),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        with open(listing) as modules:
            return completed, set(modules.read().split())


#: What a worker's top-level ``--help`` needs none of: the framework's commands and settings,
#: and the libraries they import.
NOT_NEEDED_FOR_HELP = frozenset(
    {"pydantic", "loguru", "pika", "requests", "worker_framework.cli", "worker_framework.settings"}
)


def help_by_name_and_by_class(
    main_module: str, worker: str
) -> tuple[subprocess.CompletedProcess[str], set[str], str]:
    """An app's ``--help`` as its ``main`` gives it, each in a fresh interpreter.

    ``main_module`` holds the app's ``main()``; ``worker`` is ``"package.module:ClassName"``.
    Returns the completed ``--help`` of ``main``, the modules it imported, and the help text
    that ``run_worker`` prints when given the worker class itself, which ``main``'s must equal.
    """
    module, _, name = worker.partition(":")
    by_class = f"from worker_framework import run_worker; from {module} import {name}; "
    by_class += f"run_worker({name})"
    completed, imported = modules_imported_by(f"from {main_module} import main; main()", "--help")
    return completed, imported, modules_imported_by(by_class, "--help")[0].stdout


class WorkerProcess:
    """Runs ``entry_point`` (``"package.module:function"``, usually ``app.main:main``) in a
    subprocess with the given CLI ``args`` and environment overrides. Its stderr (the log) is
    kept in a temporary file: read it with :meth:`output`."""

    def __init__(self, entry_point: str, *args: str, env: Mapping[str, str] | None = None) -> None:
        module, _, function = entry_point.partition(":")
        importlib.util.find_spec(module)  # fail early, in the test, on a typo
        code = f"import sys, {module} as m; sys.argv[0] = {module!r}; m.{function or 'main'}()"
        self._log = tempfile.NamedTemporaryFile(prefix="worker-", suffix=".log", delete=False)
        self.process = subprocess.Popen(
            [sys.executable, "-c", code, *args],
            env=subprocess_env(**dict(env or {})),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    def send_signal(self, signum: int = signal.SIGTERM) -> None:
        """Send a signal (SIGTERM by default)."""
        self.process.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL: the process dies without any cleanup."""
        self.process.kill()

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for the exit and return the exit code."""
        return self.process.wait(timeout)

    def output(self) -> str:
        """Everything the process wrote so far (stdout and stderr)."""
        with open(self._log.name, encoding="utf-8", errors="replace") as log:
            return log.read()

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._log.close()
        os.unlink(self._log.name)


def close_broker_connections(connection_name: str) -> int:
    """Have RabbitMQ close (as on a broker restart) the connections with this client name.

    Needs ``rabbitmqctl`` on PATH with rights on the broker; returns how many were closed.
    """
    listing = subprocess.run(
        ["rabbitmqctl", "list_connections", "-q", "--no-table-headers", "pid", "client_properties"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    marker = f'{{"connection_name","{connection_name}"}}'
    pids = [line.split("\t", 1)[0] for line in listing.splitlines() if marker in line]
    for pid in pids:
        subprocess.run(
            ["rabbitmqctl", "close_connection", pid, "closed by test"],
            check=True,
            capture_output=True,
        )
    return len(pids)
