"""deploy/grafana/jupiter-workers.json: the panels operators are promised, a datasource they
choose, and PromQL that parses and names only metrics the workers and task-api expose."""

from __future__ import annotations

from pathlib import Path

import yaml

from .contract import exposed_names
from .prometheus_server import run_promtool
from .promql import (
    dashboard,
    dashboard_expressions,
    dashboard_panels,
    our_metric_names,
)

#: The panels docs/observability.md describes, one by one.
EXPECTED_PANELS = {
    "Throughput by outcome",
    "Failure ratio",
    "Tasks in flight",
    "Task duration p50 / p95 / p99",
    "Queue wait p95",
    "Queue depth",
    "Retries by delay tier",
    "Dead letters by error type",
    "Reconnects",
    "Deliveries requeued",
    "Progress reporter: pending and dropped",
    "Since the last finished task",
    "task-api requests by operation and outcome",
    "task-api latency p50 / p95 / p99",
    "task-api errors",
    "task-api progress updates and submissions",
    "Versions running",
}


def test_the_dashboard_has_every_documented_panel_and_no_other():
    titles = [panel["title"] for panel in dashboard_panels()]

    assert sorted(titles) == sorted(EXPECTED_PANELS)


def test_panels_query_the_datasource_chosen_in_the_ds_prometheus_variable():
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}

    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    for panel in dashboard_panels():
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]


def test_panel_ids_are_unique():
    ids = [panel["id"] for panel in dashboard()["panels"]]

    assert len(ids) == len(set(ids))


def test_every_expression_names_only_metrics_of_the_contract():
    known = exposed_names()

    for where, expr in dashboard_expressions().items():
        names = our_metric_names(expr)
        assert names, f"{where}: names none of our metrics"
        assert not names - known, f"{where} names {sorted(names - known)}"


def test_every_expression_parses(tmp_path: Path):
    # promtool parses the expression of every rule it checks: each panel's query becomes one.
    rules = [
        {"record": f"dashboard:panel_{index}", "expr": expr}
        for index, expr in enumerate(dashboard_expressions().values())
    ]
    rules_file = tmp_path / "dashboard-expressions.yml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))

    checked = run_promtool("check", "rules", str(rules_file))

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules)} rules found" in checked.stdout
