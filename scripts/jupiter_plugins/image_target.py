"""The image target create-worker gives a new worker: ``docker/BUILD.<name>``.

Image targets live in ``docker/``, beside the one Dockerfile every app is built from (a target's
Dockerfile must be in its own folder), not in ``apps/<name>/``, where ``./pants package`` of the
folder would build the image instead of the PEX. Pants reads ``BUILD.<anything>`` as a BUILD file
of its folder, so each worker gets a file of its own and nothing shared is edited. The file is
outside the app folder and its manifest: remove-worker removes it when its content is what the
template renders for the name, and refuses (unless ``--force``) when someone changed it.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

from jupiter_plugins.rendering import PLACEHOLDER, template_root, template_values
from jupiter_plugins.worker_names import WorkerNames, derive_names

#: The Dockerfile the image targets build with; a repository without it gets no image target.
DOCKERFILE = "docker/Dockerfile"

#: The template, outside the app layers (``common/`` and one per type) so it is not an app file.
IMAGE_TEMPLATE = "image/docker_image.tmpl"


class ImageTargetState(Enum):
    """What ``docker/BUILD.<name>`` holds compared with what create-worker writes."""

    ABSENT = "absent"
    GENERATED = "generated"
    CHANGED = "changed"


def image_target_path(name: str) -> str:
    """Where the worker's image target goes, relative to the build root."""
    return f"docker/BUILD.{name}"


def render_image_target(names: WorkerNames) -> bytes:
    """The content of ``docker/BUILD.<name>``."""
    values = template_values(names, "")
    text = (template_root() / IMAGE_TEMPLATE).read_text(encoding="utf-8")
    return PLACEHOLDER.sub(lambda match: values[match.group(1)], text).encode("utf-8")


def has_dockerfile(build_root: Path) -> bool:
    """Whether the repository builds images (``docker/Dockerfile`` exists)."""
    return (build_root / DOCKERFILE).is_file()


def write_image_target(build_root: Path, names: WorkerNames) -> str:
    """Create ``docker/BUILD.<name>``; its path. FileExistsError if it exists (nothing replaced)."""
    path = image_target_path(names.name)
    with (build_root / path).open("xb") as target:
        target.write(render_image_target(names))
    return path


def image_target_state(build_root: Path, name: str) -> ImageTargetState:
    """Whether ``docker/BUILD.<name>`` is absent, as generated, or changed by someone."""
    path = build_root / image_target_path(name)
    if not path.exists() and not path.is_symlink():
        return ImageTargetState.ABSENT
    if path.is_file() and path.read_bytes() == render_image_target(derive_names(name)):
        return ImageTargetState.GENERATED
    return ImageTargetState.CHANGED


def remove_image_target(build_root: Path, name: str) -> str | None:
    """Delete ``docker/BUILD.<name>`` if present; its path, or None when there was none."""
    path = build_root / image_target_path(name)
    if not path.exists() and not path.is_symlink():
        return None
    path.unlink()
    return image_target_path(name)
