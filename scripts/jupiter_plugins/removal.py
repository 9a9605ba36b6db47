"""What remove-worker deletes, and when it refuses.

It deletes the files listed in the app's manifest whose content is still what create-worker
wrote, the manifest, tool caches, and the folders left empty: exactly what create-worker made.
A file that is not in the manifest, or one whose content changed, is someone's work: the
removal is refused (listing those files) unless ``--force``. A folder without a valid manifest
is not a generated worker at all (a hand-written app, or one whose owners deleted the manifest
to make it theirs): it is refused too unless ``--force``. ``--force`` deletes the whole folder,
and the goal lists every file before it deletes anything.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from jupiter_plugins.manifest import MANIFEST_NAME, Manifest, ManifestError, sha256_of
from jupiter_plugins.worker_names import InvalidWorkerName, check_name_format

#: Folders that tools (pytest, mypy, ruff, the interpreter) create next to sources; deleting
#: them loses nothing.
CACHE_DIRS = frozenset({"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"})


class RemovalRefused(Exception):
    """The folder holds work create-worker did not write; the message lists it."""


@dataclass(frozen=True)
class RemovalPlan:
    """The state of ``apps/<name>`` compared with its manifest (paths relative to the folder)."""

    app_dir: Path
    generated: tuple[str, ...]
    foreign: tuple[str, ...]
    modified: tuple[str, ...]
    manifest_problem: str | None

    @property
    def clean(self) -> bool:
        """True when every file in the folder is an unmodified generated one."""
        return not (self.foreign or self.modified or self.manifest_problem)


def plan_removal(build_root: Path, name: str | None) -> RemovalPlan:
    """Compare ``apps/<name>`` with its manifest. Raises InvalidWorkerName for a bad name."""
    checked = check_name_format(name)
    app_dir = build_root / "apps" / checked
    if app_dir.is_symlink() or not app_dir.is_dir():
        raise InvalidWorkerName(f"there is no worker apps/{checked} to remove")
    present = sorted(_user_files(app_dir))
    manifest_problem: str | None = None
    recorded: dict[str, str] = {}
    try:
        recorded = Manifest.from_json((app_dir / MANIFEST_NAME).read_bytes()).files
    except FileNotFoundError:
        manifest_problem = f"it has no {MANIFEST_NAME}: create-worker did not make it"
    except ManifestError as error:
        manifest_problem = str(error)
    generated, foreign, modified = [], [], []
    for path in present:
        if path == MANIFEST_NAME and manifest_problem is None:
            continue
        digest = recorded.get(path)
        if digest is None:
            foreign.append(path)
        elif (app_dir / path).is_symlink() or sha256_of((app_dir / path).read_bytes()) != digest:
            modified.append(path)
        else:
            generated.append(path)
    return RemovalPlan(app_dir, tuple(generated), tuple(foreign), tuple(modified), manifest_problem)


def refusal_message(plan: RemovalPlan, name: str) -> str:
    """Why the removal was refused, what is at stake and how to go ahead anyway."""
    if plan.manifest_problem:
        return (
            f"refusing to remove apps/{name}: {plan.manifest_problem}. Without --force, "
            "remove-worker only removes workers create-worker generated. Nothing was removed. "
            f"Run ./pants remove-worker --name={name} --force to delete the whole folder "
            "(it lists every file first)."
        )
    lines = [f"refusing to remove apps/{name}: it holds work create-worker did not write."]
    lines.extend(f"  - not generated: {path}" for path in plan.foreign)
    lines.extend(f"  - changed since generated: {path}" for path in plan.modified)
    lines.append(
        f"Nothing was removed. Move those files away, or run "
        f"./pants remove-worker --name={name} --force to delete the whole folder."
    )
    return "\n".join(lines)


def files_to_remove(plan: RemovalPlan, name: str, *, force: bool) -> list[str]:
    """What :func:`remove_worker_files` deletes (relative to ``apps/<name>``), to show first.

    Raises RemovalRefused when the plan is not clean (foreign or changed files, no valid
    manifest) and ``force`` is false.
    """
    if not plan.clean and not force:
        raise RemovalRefused(refusal_message(plan, name))
    files = {*plan.generated, *plan.modified, *plan.foreign}
    if plan.manifest_problem is None:
        files.add(MANIFEST_NAME)  # a broken manifest is already among the foreign files
    return sorted(files)


def remove_worker_files(plan: RemovalPlan, name: str, *, force: bool) -> list[str]:
    """Delete the worker; return the deleted files (relative to the build root's apps/<name>).

    Raises RemovalRefused (deleting nothing) when the plan is not clean and ``force`` is false;
    with ``force`` the whole folder goes, generated or not.
    """
    removed = files_to_remove(plan, name, force=force)
    if force:
        shutil.rmtree(plan.app_dir)
        return removed
    for path in plan.generated:
        (plan.app_dir / path).unlink()
    (plan.app_dir / MANIFEST_NAME).unlink()
    _remove_caches_and_empty_dirs(plan.app_dir)
    return removed


def _user_files(app_dir: Path) -> list[str]:
    """Every file (or symlink) under ``app_dir`` outside tool caches, relative, with '/'."""
    found = []
    for path in app_dir.rglob("*"):
        relative = path.relative_to(app_dir)
        if CACHE_DIRS.intersection(relative.parts) or path.suffix == ".pyc":
            continue
        if path.is_symlink() or not path.is_dir():
            found.append(relative.as_posix())
    return found


def _remove_caches_and_empty_dirs(app_dir: Path) -> None:
    # Deepest first, so that a folder emptied by its children's removal goes too.
    for path in sorted(app_dir.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_dir() and not path.is_symlink():
            if path.name in CACHE_DIRS:
                shutil.rmtree(path)
            elif not any(path.iterdir()):
                path.rmdir()
        elif path.suffix == ".pyc":
            path.unlink()
    if not any(app_dir.iterdir()):
        app_dir.rmdir()
