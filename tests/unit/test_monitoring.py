"""The dashboard and alerts in manifests/monitoring/, read as files: every query parses into
metric names (checked against live scrapes in tests/e2e/test_monitoring.py), and every
part of the issue's list is covered."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "manifests" / "monitoring"

FUNCTIONS_AND_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "le",
    "inf",
    "nan",
}


def promql_metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression (or a Grafana label_values() query) reads."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges: [5m], [$__rate_interval]
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\$\w+", "", text)  # Grafana variables
    names = set()
    for m in re.finditer(r"(?<![\w.])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?", text):
        name, call = m.group(1), m.group(2)
        if call or name.lower() in FUNCTIONS_AND_KEYWORDS:
            continue
        names.add(name)
    # label_values(metric, label): the label is not a metric.
    for m in re.finditer(r"label_values\(\s*([A-Za-z_:][\w:]*)\s*(?:\{[^}]*\})?\s*,\s*(\w+)", expr):
        names.discard(m.group(2))
        names.add(m.group(1))
    return names


def dashboard() -> dict[str, Any]:
    return dict(json.loads((MONITORING / "grafana-dashboard.json").read_text()))


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel or variable title, query) for every query of the dashboard."""
    out = []
    for p in dashboard()["panels"]:
        out += [(p["title"], t["expr"]) for t in p.get("targets", [])]
    for v in dashboard()["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            out.append((f"${v['name']}", q))
    return out


def alert_rules() -> list[dict[str, Any]]:
    rule = yaml.safe_load((MONITORING / "prometheus-rule.yaml").read_text())
    return [r for g in rule["spec"]["groups"] for r in g["rules"]]


def all_queries() -> list[tuple[str, str]]:
    return dashboard_queries() + [(r["alert"], r["expr"]) for r in alert_rules()]


def test_extractor() -> None:
    assert promql_metric_names(
        "histogram_quantile(0.99, sum by (le, controller) "
        '(rate(edgeplane_reconcile_time_seconds_bucket{job="x"}[$__rate_interval])))'
    ) == {"edgeplane_reconcile_time_seconds_bucket"}
    assert promql_metric_names(
        "sum by (c) (rate(a_total[10m])) / sum by (c) (rate(b_total[10m])) > 0.1"
    ) == {"a_total", "b_total"}
    assert promql_metric_names("count(up == 0) or vector(0)") == {"up"}
    assert promql_metric_names("label_values(edgeplane_target_up, target)") == {
        "edgeplane_target_up"
    }


@pytest.mark.parametrize(("where", "expr"), all_queries())
def test_every_query_reads_edgeplane_metrics(where: str, expr: str) -> None:
    names = promql_metric_names(expr)
    assert names, where
    assert all(n.startswith("edgeplane_") for n in names), (where, names)


def test_alerts_cover_the_issue() -> None:
    exprs = {r["alert"]: r["expr"] for r in alert_rules()}
    assert "edgeplane_workers" in exprs["EdgeplaneWorkerNotReady"]
    assert next(r for r in alert_rules() if r["alert"] == "EdgeplaneWorkerNotReady")["for"] == "10m"
    assert "edgeplane_target_up" in exprs["EdgeplaneEdgeLocationUnreachable"]
    assert "edgeplane_reconcile_errors_total" in exprs["EdgeplaneReconcileErrorsRising"]
    # The data plane: the front not taking state, processes replaced, versions quarantined.
    front = exprs["EdgeplaneAgentFrontNotTakingState"]
    assert 'edgeplane_agent_publishes_total{result="failed"}' in front
    assert "edgeplane_agent_workerd_restarts_total" in exprs["EdgeplaneAgentWorkerdRestarting"]
    assert "edgeplane_agent_quarantined_versions" in exprs["EdgeplaneVersionQuarantined"]
    # Edge request errors, from the agents' per-version counters.
    assert "edgeplane_agent_requests_total" in exprs["EdgeplaneWorkerEdgeErrorsHigh"]
    assert 'code="5xx"' in exprs["EdgeplaneWorkerEdgeErrorsHigh"]
    assert 'result="rolled_back"' in exprs["EdgeplaneRolloutRolledBack"]
    for r in alert_rules():
        assert r["labels"]["severity"] in ("warning", "critical")
        assert r["annotations"]["summary"]


def test_dashboard_covers_the_issue() -> None:
    text = " ".join(q for _, q in dashboard_queries())
    for metric in (
        "edgeplane_reconcile_total",
        "edgeplane_reconcile_errors_total",
        "edgeplane_reconcile_time_seconds_bucket",
        "edgeplane_workqueue_depth",
        "edgeplane_workers",
        "edgeplane_pushes_total",
    ):
        assert metric in text, metric
    assert "edgeplane_agent_publish_duration_seconds_bucket" in text  # deploy time at the edge
    # Edge request rate and errors: a rate by Worker and a 5xx ratio by Worker.
    by_title = {t: q for t, q in dashboard_queries()}
    rate = by_title["Edge request rate by Worker"]
    assert "edgeplane_agent_requests_total" in rate and "by (worker)" in rate
    ratio = by_title["Edge 5xx ratio by Worker"]
    assert 'code="5xx"' in ratio and " / " in ratio and "by (worker)" in ratio
    ids = [p["id"] for p in dashboard()["panels"]]
    assert len(ids) == len(set(ids))


def test_dashboard_shows_the_work_queue_lanes() -> None:
    """Issue 15: depth and wait by lane (is a rollback held back?), and a stuck handler."""
    queries = [q for t, q in dashboard_queries() if t.startswith(("Work queue", "Queue wait"))]
    text = " ".join(queries)
    assert "sum by (name, lane) (edgeplane_workqueue_depth)" in text
    assert "le, name, lane" in text and "edgeplane_workqueue_queue_duration_seconds" in text
    assert "edgeplane_workqueue_longest_running_processor_seconds" in text
