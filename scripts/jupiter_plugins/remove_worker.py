"""The ``remove-worker`` goal: ``./pants remove-worker --name=pdf-render [--force]``."""

from __future__ import annotations

from typing import Any

from pants.base.build_root import BuildRoot
from pants.engine.console import Console
from pants.engine.goal import Goal, GoalSubsystem
from pants.engine.rules import collect_rules, goal_rule
from pants.option.option_types import BoolOption, StrOption

from jupiter_plugins.image_target import (
    ImageTargetState,
    image_target_path,
    image_target_state,
    remove_image_target,
)
from jupiter_plugins.kubernetes_manifests import remove_worker_manifests
from jupiter_plugins.removal import (
    RemovalRefused,
    files_to_remove,
    plan_removal,
    remove_worker_files,
)
from jupiter_plugins.worker_names import InvalidWorkerName, derive_names


class RemoveWorkerSubsystem(GoalSubsystem):
    """Options of ``remove-worker``."""

    name = "remove-worker"
    help = (
        "Remove a worker app that create-worker generated: exactly the files it wrote (listed "
        "in apps/<name>/.generated.json). Refuses when apps/<name>/ holds files it did not "
        "write or that were changed, or is not a generated worker at all, unless --force."
    )

    # The attribute cannot be called `name`: that is the goal's own name.
    worker_name = StrOption("--name", default=None, help="The worker to remove (its folder name).")
    force = BoolOption(
        default=False,
        help=(
            "Delete the whole apps/<name>/ folder, including files create-worker did not write, "
            "files changed since, and apps create-worker never made; every file is listed "
            "before anything is deleted."
        ),
    )


class RemoveWorker(Goal):
    """Remove a generated worker app."""

    subsystem_cls = RemoveWorkerSubsystem
    environment_behavior = Goal.EnvironmentBehavior.LOCAL_ONLY


@goal_rule
async def remove_worker(
    console: Console, subsystem: RemoveWorkerSubsystem, build_root: BuildRoot
) -> RemoveWorker:
    """Compare the folder with its manifest, then delete or refuse."""
    name = subsystem.worker_name
    try:
        plan = plan_removal(build_root.pathlib_path, name)
        assert name is not None  # plan_removal checked it
        image_state = image_target_state(build_root.pathlib_path, name)
        if (
            image_state is ImageTargetState.CHANGED
            and not subsystem.force
            and not plan.manifest_problem
        ):
            raise RemovalRefused(
                f"refusing to remove apps/{name}: {image_target_path(name)} changed since "
                f"create-worker wrote it. Nothing was removed. Run ./pants remove-worker "
                f"--name={name} --force to delete it with the app."
            )
        doomed = files_to_remove(plan, name, force=subsystem.force)
        if not plan.clean:
            # Forced: say what goes before it goes, as the files are not all generated ones.
            console.print_stdout(f"Deleting apps/{name} ({len(doomed)} files):")
            for path in doomed:
                console.print_stdout(f"  apps/{name}/{path}")
        removed = remove_worker_files(plan, name, force=subsystem.force)
        removed_image = remove_image_target(build_root.pathlib_path, name)
    except InvalidWorkerName as error:
        console.print_stderr(f"remove-worker: {error}. Nothing was removed.")
        return RemoveWorker(exit_code=1)
    except RemovalRefused as error:
        console.print_stderr(f"remove-worker: {error}")
        return RemoveWorker(exit_code=1)

    console.print_stdout(f"Removed apps/{name} ({len(removed)} files):")
    for path in removed:
        console.print_stdout(f"  apps/{name}/{path}")
    if removed_image:
        console.print_stdout(f"  {removed_image}")
    changed, kept = remove_worker_manifests(build_root.pathlib_path, derive_names(name))
    for path in changed:
        console.print_stdout(f"  {path} (Kubernetes)")
    for path in kept:
        console.print_stderr(
            f"remove-worker: {path} was changed since create-worker; left in place"
        )
    return RemoveWorker(exit_code=0)


def rules() -> list[Any]:
    """The rules of this goal."""
    return [*collect_rules()]
