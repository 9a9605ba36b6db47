"""PromQL as the dashboard and the rules hold it: the expressions, and the metric names in them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from .contract import OUR_PREFIXES, PREFIXED_LABELS

#: deploy/ is found from this file: tests/observability/ -> the repository.
REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "jupiter-workers.json"
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"
ALERT_TESTS = REPO / "deploy" / "prometheus" / "alerts.test.yml"

#: What Grafana puts in place of the dashboard's variables before it sends a query.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$queue": ".*"}

_IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')


def dashboard() -> dict[str, Any]:
    """The Grafana dashboard, decoded."""
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def dashboard_panels() -> list[dict[str, Any]]:
    """Every panel that shows data (rows left out)."""
    return [panel for panel in dashboard()["panels"] if panel["type"] != "row"]


def dashboard_expressions() -> dict[str, str]:
    """``panel title / refId`` -> the panel's PromQL as Grafana sends it."""
    expressions = {}
    for panel in dashboard_panels():
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            expressions[f"{panel['title']} / {target['refId']}"] = expr
    return expressions


def alert_rules() -> list[dict[str, Any]]:
    """Every rule of alerts.yml."""
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def our_metric_names(expr: str) -> set[str]:
    """The names in ``expr`` that look like ours (prefixes of the contract), strings left out."""
    without_strings = _QUOTED.sub('""', expr)
    names = set(_IDENTIFIER.findall(without_strings)) - PREFIXED_LABELS
    return {name for name in names if name.startswith(OUR_PREFIXES)}
