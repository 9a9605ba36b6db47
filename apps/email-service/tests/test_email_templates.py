"""Packaged Jinja2 templates: parts, autoescaping, and errors that name what is wrong."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import email_service
import pytest
from email_service.templates import TemplateRenderer
from worker_framework import WorkerError


@pytest.fixture(scope="module")
def renderer() -> TemplateRenderer:
    """The renderer over the templates shipped in the package."""
    return TemplateRenderer()


def test_the_package_ships_welcome_and_password_reset(renderer: TemplateRenderer) -> None:
    assert {"welcome", "password-reset"} <= set(renderer.names())


@pytest.mark.parametrize(
    ("name", "variables"),
    [
        ("welcome", {"name": "Ana", "login_url": "https://app.example.com/login"}),
        ("password-reset", {"name": "Ana", "reset_url": "https://app.example.com/reset?t=1"}),
    ],
)
def test_each_template_has_subject_text_and_html_parts(
    renderer: TemplateRenderer, name: str, variables: dict[str, str]
) -> None:
    content = renderer.render(name, variables)
    assert content.subject and "\n" not in content.subject
    assert content.text and "Ana" in content.text
    assert content.html and "<html" in content.html and "Ana" in content.html


def test_variables_are_html_escaped_in_the_html_part_only(renderer: TemplateRenderer) -> None:
    content = renderer.render(
        "welcome",
        {"name": "<script>alert(1)</script>", "login_url": "https://x.example.com/?a=1&b=2"},
    )
    assert content.html is not None and content.text is not None
    assert "<script>" not in content.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in content.html
    assert 'href="https://x.example.com/?a=1&amp;b=2"' in content.html
    assert "<script>alert(1)</script>" in content.text


def test_optional_variables_have_defaults(renderer: TemplateRenderer) -> None:
    content = renderer.render(
        "password-reset", {"name": "Ana", "reset_url": "https://r.example.com"}
    )
    assert content.text is not None and "60 minutes" in content.text
    content = renderer.render(
        "password-reset",
        {"name": "Ana", "reset_url": "https://r.example.com", "expires_in_minutes": 15},
    )
    assert content.text is not None and "15 minutes" in content.text


def test_an_unknown_template_is_a_permanent_error_naming_it(renderer: TemplateRenderer) -> None:
    with pytest.raises(WorkerError) as caught:
        renderer.render("newsletter", {})
    assert caught.value.permanent
    assert "unknown template 'newsletter'" in str(caught.value)
    assert "welcome" in str(caught.value)


def test_the_shared_layout_is_not_a_template_of_its_own(renderer: TemplateRenderer) -> None:
    assert "_layout.html" not in renderer.names()


def test_a_missing_variable_is_a_permanent_error_naming_it(renderer: TemplateRenderer) -> None:
    with pytest.raises(WorkerError) as caught:
        renderer.render("welcome", {"name": "Ana"})
    assert caught.value.permanent
    assert "'login_url' is undefined" in str(caught.value)
    assert "welcome" in str(caught.value)


def test_a_line_break_smuggled_into_the_subject_by_a_variable_is_rejected(
    renderer: TemplateRenderer,
) -> None:
    with pytest.raises(WorkerError) as caught:
        renderer.render(
            "welcome", {"name": "Ana\r\nBcc: victim@example.com", "login_url": "https://x"}
        )
    assert caught.value.permanent
    assert "header injection" in str(caught.value)


def test_templates_load_when_the_package_is_imported_from_a_zip_archive(tmp_path: Path) -> None:
    # A PEX may run its code straight from a zip: resources must not need real files.
    package_dir = Path(email_service.__file__).parent
    archive = tmp_path / "email_service.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in package_dir.rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                bundle.write(path, Path("email_service") / path.relative_to(package_dir))
    others = [p for p in sys.path if p and Path(p).resolve() != package_dir.parent.resolve()]
    code = (
        "import email_service, email_service.templates as t\n"
        "assert email_service.__file__.startswith(sys.argv[1]), email_service.__file__\n"
        "c = t.TemplateRenderer().render('welcome', {'name': 'Ana', 'login_url': 'https://x'})\n"
        "print(c.subject)\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", "import sys\n" + code, str(archive)],
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(archive), *others])},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "Welcome to Jupiter, Ana!"


def test_a_broken_template_is_a_permanent_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "body.txt").write_text("Hello {{ name ")
    with pytest.raises(WorkerError) as caught:
        TemplateRenderer(tmp_path).render("broken", {"name": "Ana"})
    assert caught.value.permanent
    assert "template 'broken' (body.txt) failed" in str(caught.value)
