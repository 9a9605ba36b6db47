"""The page at ``/`` as a person sees it: rendered by a real headless Chromium.

Chromium comes from the OS packages (`apt-get install chromium`; `.ci/run` installs it). Without
it these tests are skipped on a developer's machine, and fail in CI (``CI`` set), where skipping
would hide a broken page.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from html.parser import HTMLParser

import pytest
from task_api.testing import TaskApiServer

REPORT = """
mutation Report($input: TaskProgressInput!) {
  reportTaskProgress(input: $input) { id status progress }
}
"""

#: An error message a hostile worker (or task payload) could produce: it must stay text.
HOSTILE_ERROR = "<img src=x onerror=\"document.title='pwned'\">bad input"

#: Flags for a root user on a machine with no network but loopback (see the machine notes).
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("CI"):
        pytest.fail("Chromium is not installed; .ci/run installs it with apt-get")
    pytest.skip("Chromium is not installed (apt-get install chromium)")


class _PageReader(HTMLParser):
    """The title, the table rows (cell texts) and the progress bars of the rendered DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.title = ""
        self.rows: list[list[str]] = []
        self.progress_values: list[str | None] = []
        self.images = 0
        self._in_title = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "progress":
            self.progress_values.append(dict(attrs).get("value"))
        elif tag == "img":
            self.images += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in ("td", "th") and self._cell is not None and self.rows:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        if self._cell is not None:
            self._cell.append(data)


def _rendered_dom(url: str) -> _PageReader:
    with tempfile.TemporaryDirectory() as profile:
        completed = subprocess.run(
            [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert completed.returncode == 0, completed.stderr[-2000:]
    reader = _PageReader()
    reader.feed(completed.stdout)
    return reader


@pytest.fixture(scope="module")
def api():
    with TaskApiServer() as server:
        yield server


def _report(api: TaskApiServer, **fields: object) -> None:
    body = api.graphql(REPORT, {"input": {"workerType": "email", **fields}})
    assert not body.get("errors"), body


def test_page_lists_tasks_with_status_and_progress_bars_in_a_real_browser(api):
    running, done = f"page-{uuid.uuid4().hex[:8]}", f"page-{uuid.uuid4().hex[:8]}"
    _report(api, taskId=running, status="PROCESSING", progress=40, currentStep="sending")
    _report(api, taskId=done, status="COMPLETED", progress=100, attempt=1)

    page = _rendered_dom(api.base_url + "/")

    rows = {row[0]: row for row in page.rows if row and row[0] in (running, done)}
    assert "PROCESSING" in rows[running] and "sending" in rows[running]
    assert "COMPLETED" in rows[done]
    assert "40" in page.progress_values and "100" in page.progress_values


def test_markup_in_an_error_message_is_shown_as_text_and_never_runs(api):
    failed = f"page-{uuid.uuid4().hex[:8]}"
    _report(api, taskId=failed, status="FAILED", attempt=1, errorMessage=HOSTILE_ERROR)

    page = _rendered_dom(api.base_url + "/")

    [row] = [row for row in page.rows if row and row[0] == failed]
    assert HOSTILE_ERROR in row
    assert page.images == 0
    assert "pwned" not in page.title
