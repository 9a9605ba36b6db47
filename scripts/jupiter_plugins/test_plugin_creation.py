"""What create-worker decides before writing, and how the app gets into place all at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from jupiter_plugins.creation import (
    NewWorker,
    discard_staging,
    move_into_place,
    plan_new_worker,
    staging_dir_for,
)
from jupiter_plugins.manifest import MANIFEST_NAME, Manifest


def stage(build_root: Path, name: str = "pdf-render") -> tuple[str, NewWorker]:
    worker = plan_new_worker(build_root, name, "basic")
    staging_dir = staging_dir_for(worker)
    for path, content in worker.files.items():
        target = build_root / staging_dir / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    return staging_dir, worker


def test_the_plan_holds_the_rendered_files_and_a_manifest_of_them(tmp_path: Path) -> None:
    worker = plan_new_worker(tmp_path, "pdf-render", "basic")

    manifest = Manifest.from_json(worker.files[MANIFEST_NAME])
    assert set(manifest.files) == set(worker.files) - {MANIFEST_NAME}
    assert manifest.template_type == "basic"
    assert worker.app_dir == "apps/pdf-render"


def test_the_staging_folder_is_a_hidden_sibling_of_the_app(tmp_path: Path) -> None:
    worker = plan_new_worker(tmp_path, "pdf-render", "basic")

    assert staging_dir_for(worker).startswith("apps/.pdf-render.creating-")


def test_the_staged_app_is_renamed_into_place(tmp_path: Path) -> None:
    (tmp_path / "apps").mkdir()
    staging_dir, worker = stage(tmp_path)

    move_into_place(tmp_path, staging_dir, worker)
    discard_staging(tmp_path, staging_dir)

    assert (tmp_path / "apps" / "pdf-render" / "src" / "pdf_render" / "worker.py").is_file()
    assert sorted(path.name for path in (tmp_path / "apps").iterdir()) == ["pdf-render"]


def test_an_app_folder_that_appeared_meanwhile_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "apps").mkdir()
    staging_dir, worker = stage(tmp_path)
    (tmp_path / "apps" / "pdf-render").mkdir()
    (tmp_path / "apps" / "pdf-render" / "mine.txt").write_text("mine")

    with pytest.raises(FileExistsError):
        move_into_place(tmp_path, staging_dir, worker)
    discard_staging(tmp_path, staging_dir)

    assert [path.name for path in (tmp_path / "apps" / "pdf-render").iterdir()] == ["mine.txt"]
    assert sorted(path.name for path in (tmp_path / "apps").iterdir()) == ["pdf-render"]
