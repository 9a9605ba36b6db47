"""The read-only HTML page at ``/``: recent tasks with their status and a progress bar."""

from __future__ import annotations

from html import escape

from task_api.records import TaskState

#: Enough to see what is going on without paging; the GraphQL `tasks` query pages properly.
RECENT_TASKS = 50

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .35rem .6rem; border-bottom: 1px solid #ddd; }
progress { width: 10rem; }
.QUEUED { color: #666; } .PROCESSING { color: #0b61a4; } .RETRY_SCHEDULED { color: #b8860b; }
.COMPLETED { color: #2e7d32; } .FAILED { color: #c62828; }
"""


def render_page(tasks: list[TaskState]) -> str:
    """The whole page; every value from the database is HTML-escaped."""
    rows = "\n".join(_row(task) for task in tasks) or (
        '<tr><td colspan="8">No tasks yet.</td></tr>'
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="5">
<title>task-api: recent tasks</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>Recent tasks</h1>
<p>The {RECENT_TASKS} newest tasks; this page refreshes every 5 seconds. Query them with GraphQL at
<a href="/graphql"><code>/graphql</code></a>.</p>
<table>
<thead><tr><th>Task</th><th>Queue</th><th>Worker</th><th>Status</th><th>Progress</th>
<th>Step / error</th><th>Updated (UTC)</th><th>Trace</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>
</body>
</html>
"""


def _row(task: TaskState) -> str:
    status = task.status.value
    detail = task.error_message if task.error_message else task.current_step
    return (
        "<tr>"
        f"<td><code>{escape(task.id)}</code></td>"
        f"<td>{escape(task.queue or '')}</td>"
        f"<td>{escape(task.worker_type or '')}</td>"
        f'<td class="{status}">{status}</td>'
        f'<td><progress max="100" value="{task.progress}">{task.progress}%</progress>'
        f" {task.progress}%</td>"
        f"<td>{escape(detail or '')}</td>"
        f"<td>{task.updated_at.strftime('%Y-%m-%d %H:%M:%S')}</td>"
        f"<td><code>{escape(task.trace_id or '')}</code></td>"
        "</tr>"
    )
