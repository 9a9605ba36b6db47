"""Everything create-worker writes, decided before anything is written.

The goal renders the whole app in memory, then has Pants write it into a hidden staging folder
next to the target and renames that folder into place: the new app appears complete or not at
all, and a name that is refused leaves no trace.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from jupiter_plugins.manifest import MANIFEST_NAME, Manifest
from jupiter_plugins.rendering import render_worker
from jupiter_plugins.worker_names import WorkerNames, check_new_worker_name


@dataclass(frozen=True)
class NewWorker:
    """A worker app ready to be written: ``files`` maps paths under the app folder to content."""

    names: WorkerNames
    template_type: str
    files: dict[str, bytes]

    @property
    def app_dir(self) -> str:
        """Where the app goes, relative to the build root."""
        return self.names.app_dir


def plan_new_worker(build_root: Path, name: str | None, template_type: str) -> NewWorker:
    """Check the name and render the app with its manifest.

    Raises InvalidWorkerName or ValueError (unknown type) with a message for the user.
    """
    names = check_new_worker_name(name, build_root)
    files = render_worker(names, template_type)
    manifest = Manifest.of(names.name, template_type, files)
    return NewWorker(names, template_type, {**files, MANIFEST_NAME: manifest.to_json()})


def staging_dir_for(worker: NewWorker) -> str:
    """A hidden sibling of the app folder (relative to the build root) to write into first."""
    return f"apps/.{worker.names.name}.creating-{uuid.uuid4().hex[:8]}"


def move_into_place(build_root: Path, staging_dir: str, worker: NewWorker) -> None:
    """Rename the staged app to ``apps/<name>``.

    Raises FileExistsError if the app folder appeared meanwhile (nothing is replaced).
    """
    target = build_root / worker.app_dir
    if target.exists() or target.is_symlink():
        raise FileExistsError(f"{worker.app_dir} appeared while the worker was being written")
    # rename(2) of a directory is atomic; it would also replace an empty directory that appeared
    # since the check above, which holds nothing to lose.
    os.rename(build_root / staging_dir, target)


def discard_staging(build_root: Path, staging_dir: str) -> None:
    """Remove what is left of the staging folder (all of it, when the rename did not happen)."""
    shutil.rmtree(build_root / staging_dir, ignore_errors=True)
