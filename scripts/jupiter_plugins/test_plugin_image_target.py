"""The image target and compose service create-worker gives a new worker."""

from __future__ import annotations

from pathlib import Path

import pytest
from pants.testutil.rule_runner import RuleRunner

from jupiter_plugins import register
from jupiter_plugins.create_worker import CreateWorker
from jupiter_plugins.image_target import (
    ImageTargetState,
    image_target_path,
    image_target_state,
    remove_image_target,
    render_image_target,
    write_image_target,
)
from jupiter_plugins.remove_worker import RemoveWorker
from jupiter_plugins.rendering import TEMPLATE_TYPES, render_worker
from jupiter_plugins.worker_names import derive_names


@pytest.fixture
def build_root(tmp_path: Path) -> Path:
    (tmp_path / "docker").mkdir()
    return tmp_path


def test_the_image_target_builds_the_workers_pex_into_jupiter_slash_name() -> None:
    text = render_image_target(derive_names("pdf-render")).decode()

    assert 'name="pdf-render"' in text
    assert 'dependencies=["apps/pdf-render"]' in text
    assert 'extra_build_args=["APP=pdf-render"]' in text
    assert 'repository="jupiter/pdf-render"' in text
    assert 'target_stage="worker"' in text
    assert "{{" not in text


def test_the_image_target_is_a_build_file_of_its_own_in_docker() -> None:
    assert image_target_path("pdf-render") == "docker/BUILD.pdf-render"


def test_writing_the_image_target_never_replaces_an_existing_file(build_root: Path) -> None:
    existing = build_root / "docker" / "BUILD.pdf-render"
    existing.write_text("# someone's\n")

    with pytest.raises(FileExistsError):
        write_image_target(build_root, derive_names("pdf-render"))
    assert existing.read_text() == "# someone's\n"


def test_the_state_tells_absent_generated_and_changed_apart(build_root: Path) -> None:
    names = derive_names("pdf-render")
    assert image_target_state(build_root, "pdf-render") is ImageTargetState.ABSENT

    path = build_root / write_image_target(build_root, names)
    assert image_target_state(build_root, "pdf-render") is ImageTargetState.GENERATED

    path.write_bytes(path.read_bytes() + b"# tuned by hand\n")
    assert image_target_state(build_root, "pdf-render") is ImageTargetState.CHANGED


def test_removing_deletes_the_file_and_says_so_only_when_it_was_there(build_root: Path) -> None:
    write_image_target(build_root, derive_names("pdf-render"))

    assert remove_image_target(build_root, "pdf-render") == "docker/BUILD.pdf-render"
    assert not (build_root / "docker" / "BUILD.pdf-render").exists()
    assert remove_image_target(build_root, "pdf-render") is None


@pytest.mark.parametrize("template_type", TEMPLATE_TYPES)
def test_the_app_gets_a_compose_service_built_from_its_pex(template_type: str) -> None:
    compose = render_worker(derive_names("pdf-render"), template_type)["compose.yaml"].decode()

    assert "\n  pdf-render:\n" in compose
    assert "image: jupiter/pdf-render:${JUPITER_IMAGE_TAG:-latest}" in compose
    assert "APP: pdf-render" in compose
    assert "PYTHON_IMAGE: ${PYTHON_IMAGE:-python:3.11-slim}" in compose


@pytest.fixture
def rule_runner() -> RuleRunner:
    runner = RuleRunner(rules=register.rules())
    runner.write_files(
        {"apps/BUILD": "# defaults\n", "docker/BUILD": "", "docker/Dockerfile": "FROM scratch\n"}
    )
    return runner


def test_create_worker_writes_the_image_target_and_remove_worker_deletes_it(
    rule_runner: RuleRunner,
) -> None:
    created = rule_runner.run_goal_rule(CreateWorker, args=["--name=pdf-render"])
    image_target = Path(rule_runner.build_root, "docker/BUILD.pdf-render")

    assert created.exit_code == 0, created.stderr
    assert image_target.read_bytes() == render_image_target(derive_names("pdf-render"))
    assert "./pants package docker:pdf-render" in created.stdout

    removed = rule_runner.run_goal_rule(RemoveWorker, args=["--name=pdf-render"])

    assert removed.exit_code == 0, removed.stderr
    assert not image_target.exists()
    assert "docker/BUILD.pdf-render" in removed.stdout


def test_create_worker_refuses_a_name_whose_image_target_exists(rule_runner: RuleRunner) -> None:
    rule_runner.write_files({"docker/BUILD.pdf-render": "# someone's\n"})

    result = rule_runner.run_goal_rule(CreateWorker, args=["--name=pdf-render"])

    assert result.exit_code == 1
    assert "docker/BUILD.pdf-render exists" in result.stderr
    assert not Path(rule_runner.build_root, "apps/pdf-render").exists()


def test_remove_worker_refuses_a_changed_image_target_unless_forced(
    rule_runner: RuleRunner,
) -> None:
    rule_runner.run_goal_rule(CreateWorker, args=["--name=pdf-render"])
    image_target = Path(rule_runner.build_root, "docker/BUILD.pdf-render")
    image_target.write_text(image_target.read_text() + "# tuned by hand\n")

    refused = rule_runner.run_goal_rule(RemoveWorker, args=["--name=pdf-render"])

    assert refused.exit_code == 1
    assert "docker/BUILD.pdf-render changed" in refused.stderr
    assert image_target.exists()
    assert Path(rule_runner.build_root, "apps/pdf-render/BUILD").exists()

    forced = rule_runner.run_goal_rule(RemoveWorker, args=["--name=pdf-render", "--force"])

    assert forced.exit_code == 0, forced.stderr
    assert not image_target.exists()
