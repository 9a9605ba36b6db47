"""The ``create-worker`` goal: ``./pants create-worker --name=pdf-render [--type=http-scraper]``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pants.base.build_root import BuildRoot
from pants.engine.console import Console
from pants.engine.fs import CreateDigest, Digest, FileContent, Workspace
from pants.engine.goal import Goal, GoalSubsystem
from pants.engine.rules import Get, collect_rules, goal_rule
from pants.option.option_types import StrOption

from jupiter_plugins.creation import (
    NewWorker,
    discard_staging,
    move_into_place,
    plan_new_worker,
    staging_dir_for,
)
from jupiter_plugins.image_target import (
    ImageTargetState,
    has_dockerfile,
    image_target_path,
    image_target_state,
    remove_image_target,
    write_image_target,
)
from jupiter_plugins.kubernetes_manifests import add_worker_manifests
from jupiter_plugins.rendering import TEMPLATE_TYPES
from jupiter_plugins.worker_names import InvalidWorkerName


class CreateWorkerSubsystem(GoalSubsystem):
    """Options of ``create-worker``."""

    name = "create-worker"
    help = (
        "Generate a new worker app in apps/<name>/ (pex_binary, worker, tests, example task, "
        "README) from the templates in scripts/jupiter_plugins/templates/."
    )

    # The attribute cannot be called `name`: that is the goal's own name.
    worker_name = StrOption(
        "--name",
        default=None,
        help=(
            "The worker's name: lowercase letters, digits and single hyphens, starting with a "
            "letter (e.g. pdf-render). It names the folder, the PEX and the default queue."
        ),
    )
    worker_type = StrOption(
        "--type",
        default=TEMPLATE_TYPES[0],
        help=f"The template to start from: one of {', '.join(TEMPLATE_TYPES)}.",
    )


class CreateWorker(Goal):
    """Generate a new worker app."""

    subsystem_cls = CreateWorkerSubsystem
    environment_behavior = Goal.EnvironmentBehavior.LOCAL_ONLY


@goal_rule
async def create_worker(
    console: Console,
    subsystem: CreateWorkerSubsystem,
    workspace: Workspace,
    build_root: BuildRoot,
) -> CreateWorker:
    """Check the name, render the app, write it all at once, and say what to run next."""
    root = build_root.pathlib_path
    try:
        worker = plan_new_worker(root, subsystem.worker_name, subsystem.worker_type)
    except (InvalidWorkerName, ValueError) as error:
        console.print_stderr(f"create-worker: {error}. Nothing was written.")
        return CreateWorker(exit_code=1)
    if image_target_state(root, worker.names.name) is not ImageTargetState.ABSENT:
        console.print_stderr(
            f"create-worker: {image_target_path(worker.names.name)} exists already (the image "
            "target of a worker of that name). Nothing was written."
        )
        return CreateWorker(exit_code=1)

    digest = await Get(
        Digest,
        CreateDigest(FileContent(path, content) for path, content in worker.files.items()),
    )
    try:
        image_target = _write_worker(root, workspace, digest, worker)
    except OSError as error:
        console.print_stderr(
            f"create-worker: could not write {worker.app_dir}: {error}. Nothing was written."
        )
        return CreateWorker(exit_code=1)

    console.print_stdout(f"Created {worker.app_dir} ({worker.template_type} worker):")
    for path in worker.files:
        console.print_stdout(f"  {worker.app_dir}/{path}")
    try:
        for path in add_worker_manifests(root, worker.names):
            console.print_stdout(f"  {path} (Kubernetes)")
    except OSError as error:
        console.print_stderr(f"create-worker: Kubernetes manifests not written: {error}")
    if image_target:
        console.print_stdout(
            f"  {image_target}  (its container image: ./pants package docker:{worker.names.name})"
        )
    console.print_stdout(
        "\nNext:\n"
        f"  ./pants lint check test package {worker.app_dir}::\n"
        f"  ./pants run {worker.app_dir} -- run-task {worker.app_dir}/examples/task.json\n"
        f"Remove it again with ./pants remove-worker --name={worker.names.name}"
    )
    return CreateWorker(exit_code=0)


def _write_worker(
    root: Path, workspace: Workspace, digest: Digest, worker: NewWorker
) -> str | None:
    """Write the app (staged, then moved into place) and its image target, all or nothing.

    Returns the image target's path, or None when the repository has no Dockerfile.
    """
    image_target = image_target_path(worker.names.name) if has_dockerfile(root) else None
    staging_dir = staging_dir_for(worker)
    image_written = False
    try:
        workspace.write_digest(digest, path_prefix=staging_dir)
        if image_target:
            write_image_target(root, worker.names)
            image_written = True
        move_into_place(root, staging_dir, worker)
    except OSError:
        if image_written:
            remove_image_target(root, worker.names.name)
        raise
    finally:
        discard_staging(root, staging_dir)
    return image_target


def rules() -> list[Any]:
    """The rules of this goal."""
    return [*collect_rules()]
