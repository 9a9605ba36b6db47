"""The create-worker and remove-worker goals, run by the Pants engine (RuleRunner)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pants.testutil.rule_runner import RuleRunner

from jupiter_plugins import register
from jupiter_plugins.create_worker import CreateWorker
from jupiter_plugins.remove_worker import RemoveWorker


@pytest.fixture
def rule_runner() -> RuleRunner:
    runner = RuleRunner(rules=register.rules())
    runner.write_files({"apps/BUILD": "# defaults\n", "apps/existing/BUILD": ""})
    return runner


def files_under(rule_runner: RuleRunner, folder: str) -> set[str]:
    root = Path(rule_runner.build_root, folder)
    return {path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file()}


def test_create_worker_writes_the_app_and_its_manifest(rule_runner: RuleRunner) -> None:
    result = rule_runner.run_goal_rule(CreateWorker, args=["--name=pdf-render"])

    assert result.exit_code == 0, result.stderr
    written = files_under(rule_runner, "apps/pdf-render")
    assert {"BUILD", "src/pdf_render/worker.py", "examples/task.json", ".generated.json"} <= written
    manifest = json.loads(
        Path(rule_runner.build_root, "apps/pdf-render/.generated.json").read_text()
    )
    assert set(manifest["files"]) == written - {".generated.json"}
    assert manifest["template_type"] == "basic"
    assert "apps/pdf-render/src/pdf_render/worker.py" in result.stdout
    assert "./pants lint check test package apps/pdf-render::" in result.stdout
    # This repository has no docker/Dockerfile: no image target is written or announced.
    assert not Path(rule_runner.build_root, "docker").exists()
    assert "docker:" not in result.stdout and "None" not in result.stdout


def test_create_worker_type_option_chooses_the_template(rule_runner: RuleRunner) -> None:
    result = rule_runner.run_goal_rule(
        CreateWorker, args=["--name=site-reader", "--type=http-scraper"]
    )

    assert result.exit_code == 0, result.stderr
    assert "src/site_reader/page.py" in files_under(rule_runner, "apps/site-reader")


def test_create_worker_leaves_no_staging_folder_behind(rule_runner: RuleRunner) -> None:
    rule_runner.run_goal_rule(CreateWorker, args=["--name=pdf-render"])

    assert sorted(path.name for path in Path(rule_runner.build_root, "apps").iterdir()) == [
        "BUILD",
        "existing",
        "pdf-render",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "missing worker name"),
        (["--name=PDF"], "invalid worker name"),
        (["--name=existing"], "exists already"),
        (["--name=worker-framework"], "reserved"),
        (["--name=pdf-render", "--type=grpc"], "unknown worker type"),
    ],
)
def test_create_worker_refuses_and_writes_nothing(
    rule_runner: RuleRunner, args: list[str], message: str
) -> None:
    before = files_under(rule_runner, "apps")

    result = rule_runner.run_goal_rule(CreateWorker, args=args)

    assert result.exit_code == 1
    assert message in result.stderr
    assert "Nothing was written" in result.stderr
    assert files_under(rule_runner, "apps") == before


def test_remove_worker_removes_what_create_worker_wrote(rule_runner: RuleRunner) -> None:
    before = files_under(rule_runner, "apps")
    rule_runner.run_goal_rule(CreateWorker, args=["--name=pdf-render"])

    result = rule_runner.run_goal_rule(RemoveWorker, args=["--name=pdf-render"])

    assert result.exit_code == 0, result.stderr
    assert "apps/pdf-render/src/pdf_render/worker.py" in result.stdout
    assert files_under(rule_runner, "apps") == before
    assert not Path(rule_runner.build_root, "apps/pdf-render").exists()


def test_remove_worker_refuses_a_folder_with_other_files_unless_forced(
    rule_runner: RuleRunner,
) -> None:
    rule_runner.run_goal_rule(CreateWorker, args=["--name=pdf-render"])
    rule_runner.write_files({"apps/pdf-render/src/pdf_render/mine.py": "x = 1\n"})

    refused = rule_runner.run_goal_rule(RemoveWorker, args=["--name=pdf-render"])
    forced = rule_runner.run_goal_rule(RemoveWorker, args=["--name=pdf-render", "--force"])

    assert refused.exit_code == 1
    assert "not generated: src/pdf_render/mine.py" in refused.stderr
    assert forced.exit_code == 0, forced.stderr
    assert not Path(rule_runner.build_root, "apps/pdf-render").exists()


def test_remove_worker_force_removes_a_hand_written_app_after_listing_its_files(
    rule_runner: RuleRunner,
) -> None:
    rule_runner.write_files({"apps/mine/BUILD": "# mine\n", "apps/mine/src/mine/app.py": ""})

    refused = rule_runner.run_goal_rule(RemoveWorker, args=["--name=mine"])
    assert refused.exit_code == 1
    assert Path(rule_runner.build_root, "apps/mine/src/mine/app.py").exists()

    forced = rule_runner.run_goal_rule(RemoveWorker, args=["--name=mine", "--force"])
    assert forced.exit_code == 0, forced.stderr
    listing = forced.stdout.split("Removed", 1)[0]
    assert "Deleting apps/mine (2 files):" in listing
    assert "apps/mine/BUILD" in listing and "apps/mine/src/mine/app.py" in listing
    assert not Path(rule_runner.build_root, "apps/mine").exists()


def test_remove_worker_of_an_unknown_worker_fails_clearly(rule_runner: RuleRunner) -> None:
    result = rule_runner.run_goal_rule(RemoveWorker, args=["--name=nothing-here"])

    assert result.exit_code == 1
    assert "there is no worker apps/nothing-here" in result.stderr
