"""remove-worker removes exactly what create-worker wrote, and refuses to lose anyone's work."""

from __future__ import annotations

from pathlib import Path

import pytest

from jupiter_plugins.creation import plan_new_worker
from jupiter_plugins.removal import (
    RemovalRefused,
    files_to_remove,
    plan_removal,
    remove_worker_files,
)
from jupiter_plugins.worker_names import InvalidWorkerName


def create(build_root: Path, name: str = "pdf-render") -> Path:
    worker = plan_new_worker(build_root, name, "basic")
    for path, content in worker.files.items():
        target = build_root / worker.app_dir / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    return build_root / worker.app_dir


def all_files(root: Path) -> set[str]:
    return {path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file()}


@pytest.fixture
def build_root(tmp_path: Path) -> Path:
    (tmp_path / "apps").mkdir()
    (tmp_path / "apps" / "BUILD").write_text("# the apps' defaults\n")
    (tmp_path / "apps" / "other" / "src").mkdir(parents=True)
    (tmp_path / "apps" / "other" / "src" / "keep.py").write_text("")
    return tmp_path


def test_a_generated_worker_is_removed_completely_and_nothing_else(build_root: Path) -> None:
    before = all_files(build_root)
    app = create(build_root)

    removed = remove_worker_files(plan_removal(build_root, "pdf-render"), "pdf-render", force=False)

    assert not app.exists()
    assert all_files(build_root) == before
    assert "src/pdf_render/worker.py" in removed
    assert ".generated.json" in removed


def test_tool_caches_inside_the_worker_are_removed_with_it(build_root: Path) -> None:
    app = create(build_root)
    (app / "tests" / "__pycache__").mkdir()
    (app / "tests" / "__pycache__" / "conftest.cpython-311.pyc").write_bytes(b"")
    (app / ".pytest_cache" / "v").mkdir(parents=True)

    remove_worker_files(plan_removal(build_root, "pdf-render"), "pdf-render", force=False)

    assert not app.exists()


def test_a_file_the_generator_did_not_write_stops_the_removal(build_root: Path) -> None:
    app = create(build_root)
    (app / "src" / "pdf_render" / "extra.py").write_text("")
    before = all_files(build_root)
    plan = plan_removal(build_root, "pdf-render")

    with pytest.raises(RemovalRefused, match="not generated: src/pdf_render/extra.py"):
        remove_worker_files(plan, "pdf-render", force=False)

    assert all_files(build_root) == before


def test_a_generated_file_changed_since_stops_the_removal(build_root: Path) -> None:
    app = create(build_root)
    with (app / "src" / "pdf_render" / "worker.py").open("a") as worker:
        worker.write("# my change\n")
    plan = plan_removal(build_root, "pdf-render")

    with pytest.raises(RemovalRefused, match="changed since generated: src/pdf_render/worker.py"):
        remove_worker_files(plan, "pdf-render", force=False)

    assert (app / "src" / "pdf_render" / "worker.py").exists()


def test_the_refusal_says_how_to_force_it(build_root: Path) -> None:
    app = create(build_root)
    (app / "notes.txt").write_text("mine")

    with pytest.raises(RemovalRefused, match="--force"):
        remove_worker_files(plan_removal(build_root, "pdf-render"), "pdf-render", force=False)


def test_force_removes_the_whole_folder_with_foreign_and_changed_files(build_root: Path) -> None:
    before = all_files(build_root)
    app = create(build_root)
    (app / "notes.txt").write_text("mine")
    (app / "BUILD").write_text("changed")

    removed = remove_worker_files(plan_removal(build_root, "pdf-render"), "pdf-render", force=True)

    assert not app.exists()
    assert all_files(build_root) == before
    assert {"notes.txt", "BUILD"} <= set(removed)


def test_a_folder_without_manifest_is_refused_and_the_refusal_says_how_to_force_it(
    build_root: Path,
) -> None:
    plan = plan_removal(build_root, "other")

    with pytest.raises(RemovalRefused, match="no .generated.json") as refused:
        remove_worker_files(plan, "other", force=False)

    assert "--force" in str(refused.value)
    assert (build_root / "apps" / "other" / "src" / "keep.py").exists()


def test_force_removes_a_hand_written_app_and_names_each_file_first(build_root: Path) -> None:
    plan = plan_removal(build_root, "other")

    listed = files_to_remove(plan, "other", force=True)
    assert (build_root / "apps" / "other" / "src" / "keep.py").exists()  # listing deletes nothing
    removed = remove_worker_files(plan, "other", force=True)

    assert listed == removed == ["src/keep.py"]
    assert not (build_root / "apps" / "other").exists()
    assert (build_root / "apps" / "BUILD").exists()


def test_a_folder_with_a_broken_manifest_is_removed_only_with_force(build_root: Path) -> None:
    app = create(build_root)
    (app / ".generated.json").write_text("{")

    with pytest.raises(RemovalRefused, match="not valid JSON"):
        remove_worker_files(plan_removal(build_root, "pdf-render"), "pdf-render", force=False)
    assert (app / "BUILD").exists()

    removed = remove_worker_files(plan_removal(build_root, "pdf-render"), "pdf-render", force=True)
    assert {".generated.json", "BUILD"} <= set(removed)
    assert not app.exists()


def test_a_worker_that_does_not_exist_cannot_be_removed(build_root: Path) -> None:
    with pytest.raises(InvalidWorkerName, match="no worker apps/missing"):
        plan_removal(build_root, "missing")


def test_an_invalid_name_cannot_reach_outside_apps(build_root: Path) -> None:
    with pytest.raises(InvalidWorkerName):
        plan_removal(build_root, "../libs")
