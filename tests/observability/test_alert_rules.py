"""deploy/prometheus/alerts.yml: valid for promtool, each alert firing when it should, and only
naming metrics the workers and task-api expose."""

from __future__ import annotations

from .contract import exposed_names
from .prometheus_server import run_promtool
from .promql import ALERT_TESTS, ALERTS, alert_rules, our_metric_names

#: What the operators' documentation promises (docs/observability.md, "Alerts").
EXPECTED_ALERTS = {
    "JupiterWorkerDown",
    "JupiterWorkerNotReady",
    "JupiterDeadLettersGrowing",
    "JupiterQueueStalled",
    "JupiterReconnectStorm",
    "JupiterProgressUpdatesDropped",
    "TaskApiDown",
    "TaskApiDatabaseErrors",
    "TaskApiErrorRate",
}


def test_promtool_accepts_the_rules():
    checked = run_promtool("check", "rules", str(ALERTS))

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(EXPECTED_ALERTS)} rules found" in checked.stdout


def test_each_alert_fires_when_it_should_and_not_otherwise():
    # alerts.test.yml feeds series to every rule and lists the alerts expected at given times.
    tested = run_promtool("test", "rules", ALERT_TESTS.name, cwd=ALERT_TESTS.parent)

    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_documented_alert_exists_with_a_severity_and_a_summary():
    rules = {rule["alert"]: rule for rule in alert_rules()}

    assert set(rules) == EXPECTED_ALERTS
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"], name


def test_every_alert_is_unit_tested():
    text = ALERT_TESTS.read_text()

    untested = {name for name in EXPECTED_ALERTS if f"alertname: {name}" not in text}
    assert not untested


def test_rules_name_only_metrics_of_the_contract():
    known = exposed_names()

    for rule in alert_rules():
        unknown = our_metric_names(rule["expr"]) - known
        assert not unknown, f"{rule['alert']} names {sorted(unknown)}"
