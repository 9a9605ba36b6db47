"""``run-task`` through the real entry point (scraper_anses.main:main) in a subprocess."""

import json
import subprocess
import sys

from scraper_anses import main as scraper_main
from scraper_anses.worker import ScraperWorker
from worker_framework.testing import subprocess_env
from worker_framework.testing_processes import NOT_NEEDED_FOR_HELP, help_by_name_and_by_class

# Imported above, not only named here, so that Pants ships the module to the test sandbox.
ENTRY_POINT = (
    f"import sys; from {scraper_main.__name__} import main; sys.argv[0] = 'scraper-anses'; main()"
)


#: What ``--help`` needs none of: the framework's commands and settings, and what they import.


def run_task(site, task: dict[str, str], tmp_path, **env: str) -> subprocess.CompletedProcess[str]:
    task_file = tmp_path / "task.json"
    task_file.write_text(json.dumps(task), encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-c", ENTRY_POINT, "run-task", str(task_file)],
        env=subprocess_env(
            SCRAPER_ANSES_BASE_URL=site.base_url,
            SCRAPER_ANSES_REQUESTS_PER_S="1000",
            SCRAPER_ANSES_TIMEOUT_S="5",
            **env,
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_run_task_prints_the_result_json_and_exits_0(site, tmp_path):
    done = run_task(site, {"id": "cli-1", "targetId": "buenos-aires"}, tmp_path)

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["targetId"] == "buenos-aires"
    assert result["officeCount"] == 8
    assert result["pages"] == 3
    assert result["offices"][0]["name"] == "UDAI La Plata"
    assert result["offices"][0]["sourceUrl"] == site.url("/oficina/udai-la-plata")


def test_run_task_reports_progress_per_page_in_the_log(site, tmp_path):
    done = run_task(site, {"id": "cli-2", "targetId": "buenos-aires"}, tmp_path)

    assert done.returncode == 0, done.stderr
    for step in ("Processing page 1/3", "Processing page 2/3", "Processing page 3/3"):
        assert step in done.stderr


def test_run_task_of_an_unknown_province_exits_1_naming_it(site, tmp_path):
    done = run_task(site, {"id": "cli-3", "targetId": "atlantida"}, tmp_path)

    assert done.returncode == 1
    assert "atlantida" in done.stderr
    assert done.stdout == ""


def test_run_task_with_an_invalid_target_exits_2(site, tmp_path):
    done = run_task(site, {"id": "cli-4", "targetId": "../admin"}, tmp_path)

    assert done.returncode == 2
    assert "targetId" in done.stderr
    assert site.requests == []


def test_invalid_setting_exits_2_naming_the_variable(site, tmp_path):
    done = run_task(
        site, {"id": "cli-5", "targetId": "jujuy"}, tmp_path, SCRAPER_ANSES_MAX_CONCURRENCY="0"
    )

    assert done.returncode == 2
    assert "SCRAPER_ANSES_MAX_CONCURRENCY" in done.stderr


def test_help_names_the_worker_and_its_queue_without_importing_them_or_the_framework():
    completed, imported, by_class = help_by_name_and_by_class(
        scraper_main.__name__, f"{ScraperWorker.__module__}:ScraperWorker"
    )

    assert completed.returncode == 0, completed.stderr
    # As the class itself gives it: its name, its default_queue as the program name.
    assert completed.stdout == by_class
    assert "Usage: scraper-anses [OPTIONS]" in completed.stdout
    assert not imported & {*NOT_NEEDED_FOR_HELP, ScraperWorker.__module__}
