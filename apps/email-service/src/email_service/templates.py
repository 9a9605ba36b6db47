"""Jinja2 templates shipped inside the package (and so inside the PEX).

A template is a folder under ``email_service/templates/`` named after it, holding
``subject.txt`` (optional), ``body.txt`` and/or ``body.html``. HTML parts are autoescaped;
every part is rendered with ``StrictUndefined``, so a variable the task forgot is an error
that names it instead of an email with a hole in it. Files are read through
``importlib.resources``, which works the same from a folder, a wheel or a zipped PEX.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Any

from jinja2 import (
    BaseLoader,
    Environment,
    StrictUndefined,
    TemplateError,
    TemplateNotFound,
    UndefinedError,
    select_autoescape,
)
from worker_framework import WorkerError

from email_service.headers import HeaderInjectionError, check_header_text

#: Part file names inside a template folder; only ``.html`` parts are autoescaped.
SUBJECT_PART = "subject.txt"
TEXT_PART = "body.txt"
HTML_PART = "body.html"


@dataclass(frozen=True)
class RenderedContent:
    """The rendered parts of one message; a part the template lacks is ``None``."""

    subject: str | None
    text: str | None
    html: str | None


class ResourceLoader(BaseLoader):
    """Loads templates from a package resource folder, zipped or not."""

    def __init__(self, root: Traversable) -> None:
        self._root = root

    def get_source(
        self, environment: Environment, template: str
    ) -> tuple[str, str | None, Callable[[], bool] | None]:
        """Return the template source; names are ``/``-separated and may not climb up."""
        node = self._root
        for part in template.split("/"):
            if part in ("", ".", ".."):
                raise TemplateNotFound(template)
            node = node / part
        if not node.is_file():
            raise TemplateNotFound(template)
        # Packaged templates never change while the process runs: always "up to date".
        return node.read_text(encoding="utf-8"), None, lambda: True


class TemplateRenderer:
    """Renders the packaged templates; unknown names and missing variables are permanent."""

    def __init__(self, root: Traversable | None = None) -> None:
        self._root = root if root is not None else files("email_service") / "templates"
        self._environment = Environment(
            loader=ResourceLoader(self._root),
            autoescape=select_autoescape(enabled_extensions=("html",), default=False),
            undefined=StrictUndefined,
            auto_reload=False,
        )
        # Packaged templates never change while the process runs: list them once.
        self._names = sorted(
            node.name
            for node in self._root.iterdir()
            if node.is_dir() and not node.name.startswith("_")
        )

    def names(self) -> list[str]:
        """The templates that exist, sorted."""
        return list(self._names)

    def render(self, name: str, variables: Mapping[str, Any]) -> RenderedContent:
        """Render every part of template ``name``.

        Raises a permanent :class:`WorkerError` naming the template, and the variable or the
        part at fault, when the template does not exist, a variable is missing, or a rendered
        subject would break the header.
        """
        if name not in self._names:
            available = ", ".join(self._names) or "none"
            raise WorkerError(f"unknown template {name!r} (available: {available})", permanent=True)
        subject = self._render_part(name, SUBJECT_PART, variables)
        text = self._render_part(name, TEXT_PART, variables)
        html = self._render_part(name, HTML_PART, variables)
        if text is None and html is None:
            raise WorkerError(
                f"template {name!r} has neither {TEXT_PART} nor {HTML_PART}", permanent=True
            )
        if subject is not None:
            # A subject template ends in a newline, and a variable may carry one in: only
            # the former is harmless.
            subject = subject.strip()
            try:
                check_header_text(subject, f"subject rendered from template {name!r}")
            except HeaderInjectionError as error:
                raise WorkerError(str(error), permanent=True) from None
        return RenderedContent(subject=subject, text=text, html=html)

    def _render_part(self, name: str, part: str, variables: Mapping[str, Any]) -> str | None:
        if not (self._root / name / part).is_file():
            return None
        try:
            return self._environment.get_template(f"{name}/{part}").render(variables)
        except UndefinedError as error:
            raise WorkerError(
                f"template {name!r} ({part}) needs a variable the task did not give: "
                f"{error.message}",
                permanent=True,
            ) from None
        except TemplateError as error:
            # A broken template (syntax error, missing layout) fails every task alike: the
            # dead letters can be replayed once a fixed release is deployed.
            raise WorkerError(
                f"template {name!r} ({part}) failed: {error}", permanent=True
            ) from None
