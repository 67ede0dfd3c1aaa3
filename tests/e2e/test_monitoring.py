"""The dashboard and the alerts name only metrics that the running operator or an edge agent
really export: both are scraped after some work (a deploy, a failed push, a request), and
every metric name in every query must appear in one of the scrapes."""

from __future__ import annotations

import re
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from edgeplane.localstack.stack import Stack
from tests.e2e.conftest import Kube, eventually, fetch, responder, route, worker
from tests.unit.test_monitoring import all_queries, promql_metric_names

pytestmark = pytest.mark.integration


def scrape(url: str, token: str | None = None) -> str:
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return str(resp.read().decode())


def exported_names(text: str) -> set[str]:
    """Every series name a scrape can hold: sample names, plus the names HELP/TYPE announce
    (a labelled metric without samples yet has only those), with the suffixes its type
    adds."""
    names: set[str] = set()
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count"),
                "summary": ("_sum", "_count"), "gauge": (), "untyped": (), "info": ("_info",)}
    for line in text.splitlines():
        if m := re.match(r"# TYPE (\S+) (\w+)", line):
            base, kind = m.group(1), m.group(2)
            names.add(base)
            names |= {base.removesuffix("_total") + s for s in suffixes.get(kind, ())}
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def test_every_dashboard_and_alert_metric_is_exported(stack: Stack, kube: Kube) -> None:
    assert stack.operator is not None
    host = f"metrics.{kube.namespace}.example.com"
    kube.apply(worker("metered", responder('"counted"')), route("metered", f"{host}/*", "metered"))
    kube.wait_ready("metered", timeout=90)
    agent = stack.agents[0]
    eventually(lambda: fetch(agent, host) == (200, "counted"))
    fetch(agent, f"nothing.{kube.namespace}.example.com")  # a 404 at the edge too

    operator_names = exported_names(scrape(stack.operator.metrics_url))
    agent_text = scrape(f"{agent.api_url}/metrics", agent.token)
    agent_names = exported_names(agent_text)
    # The request counter is labelled, so HELP/TYPE alone would pass the check below even if
    # the agent never counted: the request above must be a sample of it.
    counted = [
        sample.value
        for family in text_string_to_metric_families(agent_text)
        for sample in family.samples
        if sample.name == "edgeplane_agent_requests_total"
        and sample.labels.get("worker") == f"{kube.namespace}.metered"
        and sample.labels.get("code") == "2xx"
    ]
    assert counted and counted[0] >= 1, agent_text
    assert any(n.startswith("edgeplane_agent_") for n in agent_names), sorted(agent_names)
    exported = operator_names | agent_names
    unknown = {
        (where, name)
        for where, expr in all_queries()
        for name in promql_metric_names(expr)
        if name not in exported
    }
    assert not unknown, f"named by the dashboard or alerts but exported by neither: {unknown}"
