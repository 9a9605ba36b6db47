"""Which worker names create-worker accepts, and what it derives from them."""

from __future__ import annotations

from pathlib import Path

import pytest

from jupiter_plugins.worker_names import (
    InvalidWorkerName,
    WorkerNames,
    check_name_format,
    check_new_worker_name,
    derive_names,
)


@pytest.mark.parametrize("name", ["pdf-render", "a", "a1", "image-resize-v2", "x" * 30])
def test_lowercase_letters_digits_and_single_hyphens_starting_with_a_letter_are_accepted(
    name: str,
) -> None:
    assert check_name_format(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "Pdf",
        "pdf_render",
        "1pdf",
        "-pdf",
        "pdf-",
        "pdf--render",
        "pdf render",
        "pdf.render",
        "é",
    ],
)
def test_other_names_are_refused_with_the_rule_spelled_out(name: str) -> None:
    with pytest.raises(
        InvalidWorkerName, match="lowercase letters, digits and single hyphens|missing"
    ):
        check_name_format(name)


def test_a_missing_name_says_how_to_pass_one() -> None:
    with pytest.raises(InvalidWorkerName, match="--name="):
        check_name_format(None)


def test_a_name_longer_than_30_characters_is_refused() -> None:
    with pytest.raises(InvalidWorkerName, match="at most 30"):
        check_name_format("x" * 31)


def test_names_give_the_package_the_classes_and_the_worker_type() -> None:
    assert derive_names("pdf-render") == WorkerNames(
        "pdf-render", "pdf_render", "PdfRender", "pdf-render"
    )
    assert derive_names("demo-worker") == WorkerNames("demo-worker", "demo_worker", "Demo", "demo")


def test_a_name_whose_folder_exists_is_refused(tmp_path: Path) -> None:
    (tmp_path / "apps" / "pdf-render").mkdir(parents=True)

    with pytest.raises(InvalidWorkerName, match="exists already"):
        check_new_worker_name("pdf-render", tmp_path)


@pytest.mark.parametrize("name", ["worker-framework", "shared-utils", "task-api", "tests"])
def test_reserved_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidWorkerName, match="reserved"):
        check_new_worker_name(name, tmp_path)


@pytest.mark.parametrize(
    ("name", "what"),
    [
        ("import", "keyword"),
        ("json", "standard library"),
        ("email", "standard library"),
        ("tomllib", "standard library"),
        ("requests", "third-party"),
        ("pydantic-settings", "third-party"),
    ],
)
def test_names_whose_package_would_shadow_a_module_are_refused(
    tmp_path: Path, name: str, what: str
) -> None:
    with pytest.raises(InvalidWorkerName, match=what):
        check_new_worker_name(name, tmp_path)


def test_a_name_whose_package_exists_in_the_repository_is_refused(tmp_path: Path) -> None:
    package = tmp_path / "libs" / "image-tools" / "image_tools"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")

    with pytest.raises(InvalidWorkerName, match="package of the repository"):
        check_new_worker_name("image-tools", tmp_path)


def test_a_fresh_valid_name_is_accepted(tmp_path: Path) -> None:
    assert check_new_worker_name("pdf-render", tmp_path).package == "pdf_render"
