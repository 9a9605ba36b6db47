"""What a worker name may be, and the identifiers derived from it.

A worker name is the folder under ``apps/``, the pex_binary's name and the default queue, so it
must be valid in all three and in a container image name: lowercase letters, digits and single
hyphens, starting with a letter. The Python package is the name with ``-`` turned into ``_``;
it must not shadow a module that the apps already import.
"""

from __future__ import annotations

import importlib.util
import keyword
import re
import sysconfig
from dataclasses import dataclass
from pathlib import Path

#: Letters, digits and single hyphens; a letter first, no hyphen last.
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")

#: Queue names allow 255 bytes, but the name also prefixes the delay and dead-letter queues, log
#: lines and image tags, and the generated code must stay within the 100-column line limit with
#: the class names derived from it (the end-to-end test generates a worker with the longest name).
MAX_NAME_LENGTH = 30

#: Names that mean something else in the repository or its tooling.
RESERVED_NAMES = frozenset(
    {
        "worker-framework",
        "shared-utils",
        "task-api",
        "jupiter-plugins",
        "apps",
        "libs",
        "scripts",
        "tests",
        "test",
        "bench",
        "docker",
        "dist",
        "src",
        "examples",
        "conftest",
        "main",
        "worker",
    }
)

#: Import names of the third-party distributions in the repository's lockfile (and of tools that
#: run the tests): a package with one of these names would shadow the real module.
THIRD_PARTY_MODULES = frozenset(
    {
        "aiosmtpd",
        "backoff",
        "black",
        "click",
        "email_validator",
        "jinja2",
        "loguru",
        "mypy",
        "pants",
        "pika",
        "psycopg",
        "pydantic",
        "pydantic_core",
        "pydantic_settings",
        "pytest",
        "requests",
        "ruff",
        "selectolax",
        "starlette",
        "strawberry",
        "trustme",
        "urllib3",
        "uvicorn",
    }
)

#: Standard library modules that are new after 3.9 (the plugin runs on 3.9, the apps on 3.11).
NEWER_STDLIB_MODULES = frozenset({"tomllib", "wsgiref"})


class InvalidWorkerName(ValueError):
    """The name cannot be used for a worker; the message says why and what to do."""


@dataclass(frozen=True)
class WorkerNames:
    """Every identifier the templates derive from one worker name (``pdf-render`` below)."""

    #: ``pdf-render``: folder, pex_binary, default queue.
    name: str
    #: ``pdf_render``: the Python package under ``src/``.
    package: str
    #: ``PdfRender``: prefix of the task, result and worker classes.
    class_prefix: str
    #: ``pdf-render`` without a trailing ``-worker``: the worker_type() shown in logs.
    worker_type: str

    @property
    def app_dir(self) -> str:
        """The app's folder, relative to the build root."""
        return f"apps/{self.name}"


def derive_names(name: str) -> WorkerNames:
    """The identifiers for a name that :func:`check_name_format` accepts."""
    package = name.replace("-", "_")
    short = name[: -len("-worker")] if name.endswith("-worker") else name
    class_prefix = "".join(part.capitalize() for part in short.split("-"))
    return WorkerNames(name=name, package=package, class_prefix=class_prefix, worker_type=short)


def check_name_format(name: str | None) -> str:
    """Return ``name`` if it has the shape of a worker name, else raise InvalidWorkerName."""
    if not name:
        raise InvalidWorkerName(
            "missing worker name: pass --name=<worker-name>, e.g. --name=pdf-render"
        )
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidWorkerName(
            f"worker name {name!r} is {len(name)} characters long; use at most {MAX_NAME_LENGTH}"
        )
    if not NAME_PATTERN.match(name):
        raise InvalidWorkerName(
            f"invalid worker name {name!r}: use lowercase letters, digits and single hyphens, "
            "starting with a letter and not ending with a hyphen (e.g. pdf-render)"
        )
    return name


def check_new_worker_name(name: str | None, build_root: Path) -> WorkerNames:
    """The names for a new worker, or InvalidWorkerName saying why ``name`` cannot be one."""
    checked = check_name_format(name)
    names = derive_names(checked)
    if (build_root / names.app_dir).exists() or (build_root / names.app_dir).is_symlink():
        raise InvalidWorkerName(f"{names.app_dir} exists already: choose another name")
    if checked in RESERVED_NAMES:
        raise InvalidWorkerName(
            f"worker name {checked!r} is reserved (it names a part of the repository); "
            "choose another"
        )
    clash = _module_clash(names.package, build_root)
    if clash:
        raise InvalidWorkerName(
            f"worker name {checked!r} gives the Python package {names.package!r}, which would "
            f"shadow {clash}; choose another name"
        )
    return names


def _module_clash(package: str, build_root: Path) -> str | None:
    """What an importable ``package`` would shadow, or None."""
    if keyword.iskeyword(package):
        return "a Python keyword"
    if package in THIRD_PARTY_MODULES:
        return "a third-party library the repository uses"
    if package in NEWER_STDLIB_MODULES or _is_stdlib_module(package):
        return "a module of the Python standard library"
    if package in _first_party_packages(build_root):
        return "a package of the repository"
    return None


def _is_stdlib_module(package: str) -> bool:
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    if spec.origin in ("built-in", "frozen"):
        return True
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    locations = [spec.origin] if spec.origin else list(spec.submodule_search_locations or [])
    for location in locations:
        path = Path(location).resolve()
        if stdlib in path.parents and "site-packages" not in path.parts:
            return True
    return False


def _first_party_packages(build_root: Path) -> set[str]:
    """Top-level packages under the repository's source roots (libs/*, apps/*/src)."""
    found: set[str] = set()
    for pattern in ("libs/*/*/__init__.py", "apps/*/src/*/__init__.py", "scripts/*/__init__.py"):
        found.update(path.parent.name for path in build_root.glob(pattern))
    return found
