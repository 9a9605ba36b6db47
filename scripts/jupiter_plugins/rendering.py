"""Turns the template tree into the files of one new worker app.

Layout of ``jupiter_plugins/templates/``: ``common/`` holds what every worker gets, and one
folder per worker type (``basic/``, ``http-scraper/``) adds its own files or replaces common
ones at the same path. Every template file ends in ``.tmpl`` (dropped on output) so that Pants,
ruff and mypy never take a template for a Python module of the plugin. BUILD files are stored
as ``BUILD_FILE.tmpl``: Pants reads every file matching ``BUILD`` or ``BUILD.*`` as a BUILD file,
``BUILD.tmpl`` included. ``__package__`` in a path becomes the Python package name;
``{{ key }}`` in a file becomes the value of :func:`template_values`. Only these substitutions
exist: templates stay plain files that read like the code they produce.
"""

from __future__ import annotations

import re
from importlib import resources
from importlib.abc import Traversable

from jupiter_plugins.worker_names import WorkerNames

#: The worker types ``create-worker --type`` accepts, the first being the default.
TEMPLATE_TYPES = ("basic", "http-scraper")

COMMON_TEMPLATES = "common"
TEMPLATE_SUFFIX = ".tmpl"
PACKAGE_SEGMENT = "__package__"
BUILD_FILE_TEMPLATE = "BUILD_FILE"
PLACEHOLDER = re.compile(r"\{\{ *([a-z_]+) *\}\}")


class TemplateError(Exception):
    """The template tree is broken (unknown placeholder, file without ``.tmpl``): a plugin bug."""


def template_values(names: WorkerNames, template_type: str) -> dict[str, str]:
    """What ``{{ key }}`` stands for in the templates."""
    return {
        "name": names.name,
        "package": names.package,
        "env_prefix": names.package.upper(),
        "class_prefix": names.class_prefix,
        "worker_type": names.worker_type,
        "template_type": template_type,
    }


def template_root() -> Traversable:
    """The ``templates/`` folder shipped with this package."""
    return resources.files("jupiter_plugins") / "templates"


def render_worker(
    names: WorkerNames, template_type: str, root: Traversable | None = None
) -> dict[str, bytes]:
    """The files of the new app: path relative to ``apps/<name>/`` -> content.

    ``root`` replaces :func:`template_root` (for tests). Raises ValueError for an unknown
    ``template_type`` and TemplateError for a broken template.
    """
    if template_type not in TEMPLATE_TYPES:
        raise ValueError(
            f"unknown worker type {template_type!r}: choose one of {', '.join(TEMPLATE_TYPES)}"
        )
    values = template_values(names, template_type)
    root = root or template_root()
    rendered: dict[str, bytes] = {}
    for layer in (COMMON_TEMPLATES, template_type):
        for relative, template in _walk(root / layer, ""):
            path = _render_path(relative, names)
            rendered[path] = _render_text(template.read_text(encoding="utf-8"), values, relative)
    return dict(sorted(rendered.items()))


def _walk(folder: Traversable, prefix: str) -> list[tuple[str, Traversable]]:
    found: list[tuple[str, Traversable]] = []
    for entry in folder.iterdir():
        relative = f"{prefix}{entry.name}"
        if entry.name == "__pycache__":
            continue
        if entry.is_dir():
            found.extend(_walk(entry, f"{relative}/"))
        else:
            found.append((relative, entry))
    return found


def _render_path(relative: str, names: WorkerNames) -> str:
    if not relative.endswith(TEMPLATE_SUFFIX):
        raise TemplateError(f"template {relative!r} must end in {TEMPLATE_SUFFIX}")
    path = relative[: -len(TEMPLATE_SUFFIX)]
    folder, _, file_name = path.rpartition("/")
    if file_name == BUILD_FILE_TEMPLATE:
        path = f"{folder}/BUILD" if folder else "BUILD"
    # Also inside a segment: test module names carry the package (they must be unique repo-wide).
    return path.replace(PACKAGE_SEGMENT, names.package)


def _render_text(text: str, values: dict[str, str], origin: str) -> bytes:
    def substitute(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise TemplateError(f"template {origin!r} uses unknown placeholder {{{{ {key} }}}}")
        return values[key]

    return PLACEHOLDER.sub(substitute, text).encode("utf-8")
