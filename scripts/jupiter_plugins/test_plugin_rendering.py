"""What the templates render into: the fixed app layout, with every placeholder filled."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jupiter_plugins.rendering import TEMPLATE_TYPES, TemplateError, render_worker
from jupiter_plugins.worker_names import derive_names

#: The layout every generated app has (README.md "Repo layout" and docs/architecture.md).
REQUIRED_FILES = {
    "BUILD",
    "README.md",
    "examples/BUILD",
    "examples/task.json",
    "src/pdf_render/BUILD",
    "src/pdf_render/__init__.py",
    "src/pdf_render/main.py",
    "src/pdf_render/worker.py",
    "tests/BUILD",
    "tests/conftest.py",
}


@pytest.mark.parametrize("template_type", TEMPLATE_TYPES)
def test_every_type_renders_the_app_layout(template_type: str) -> None:
    files = render_worker(derive_names("pdf-render"), template_type)

    assert REQUIRED_FILES <= set(files)
    assert not [path for path in files if path.endswith(".py") and "/" not in path]


@pytest.mark.parametrize("template_type", TEMPLATE_TYPES)
def test_the_app_build_file_holds_only_the_pex_binary(template_type: str) -> None:
    files = render_worker(derive_names("pdf-render"), template_type)

    assert files["BUILD"] == b'pex_binary(name="pdf-render", entry_point="pdf_render.main:main")\n'


@pytest.mark.parametrize("template_type", TEMPLATE_TYPES)
def test_test_modules_carry_the_package_name_so_they_are_unique_in_the_repository(
    template_type: str,
) -> None:
    files = render_worker(derive_names("pdf-render"), template_type)

    test_modules = [path for path in files if path.startswith("tests/test_")]
    assert test_modules
    assert all(path.startswith("tests/test_pdf_render_") for path in test_modules)
    assert any("rabbitmq" in path for path in test_modules)
    assert any("cli" in path for path in test_modules)


@pytest.mark.parametrize("template_type", TEMPLATE_TYPES)
def test_no_placeholder_or_template_suffix_is_left(template_type: str) -> None:
    files = render_worker(derive_names("pdf-render"), template_type)

    for path, content in files.items():
        assert not path.endswith(".tmpl")
        assert "__package__" not in path
        assert b"{{" not in content, path


@pytest.mark.parametrize("template_type", TEMPLATE_TYPES)
def test_the_worker_uses_the_framework_api_with_the_derived_names(template_type: str) -> None:
    files = render_worker(derive_names("pdf-render"), template_type)

    worker = files["src/pdf_render/worker.py"].decode()
    assert "class PdfRenderWorker(\n    BaseWorker[PdfRenderTask, PdfRenderResult],\n):" in worker
    assert 'default_queue: ClassVar[str] = "pdf-render"' in worker
    for hook in (
        "worker_type",
        "initialize",
        "initial_step",
        "execute_task",
        "is_permanent_error",
        "shutdown",
    ):
        assert f"    def {hook}(" in worker
    main = files["src/pdf_render/main.py"].decode()
    assert '"pdf_render.worker:PdfRenderWorker",\n        prog_name="pdf-render",' in main


@pytest.mark.parametrize("template_type", TEMPLATE_TYPES)
def test_the_example_task_is_json_with_an_id(template_type: str) -> None:
    files = render_worker(derive_names("pdf-render"), template_type)

    assert json.loads(files["examples/task.json"])["id"] == "pdf-render-example-1"


def test_an_unknown_type_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ValueError, match="basic, http-scraper"):
        render_worker(derive_names("pdf-render"), "grpc")


def test_a_template_with_an_unknown_placeholder_is_a_template_error(tmp_path: Path) -> None:
    (tmp_path / "common").mkdir()
    (tmp_path / "basic").mkdir()
    (tmp_path / "common" / "x.txt.tmpl").write_text("{{ colour }}")

    with pytest.raises(TemplateError, match="colour"):
        render_worker(derive_names("pdf-render"), "basic", root=tmp_path)


def test_a_template_file_without_the_suffix_is_a_template_error(tmp_path: Path) -> None:
    (tmp_path / "common").mkdir()
    (tmp_path / "basic").mkdir()
    (tmp_path / "common" / "main.py").write_text("")

    with pytest.raises(TemplateError, match=".tmpl"):
        render_worker(derive_names("pdf-render"), "basic", root=tmp_path)


def test_a_type_specific_template_replaces_the_common_one_at_the_same_path(
    tmp_path: Path,
) -> None:
    (tmp_path / "common").mkdir()
    (tmp_path / "basic").mkdir()
    (tmp_path / "common" / "README.md.tmpl").write_text("common {{ name }}")
    (tmp_path / "basic" / "README.md.tmpl").write_text("basic {{ name }}")
    (tmp_path / "common" / "BUILD_FILE.tmpl").write_text("{{ package }}")

    files = render_worker(derive_names("pdf-render"), "basic", root=tmp_path)

    assert files == {"BUILD": b"pdf_render", "README.md": b"basic pdf-render"}
