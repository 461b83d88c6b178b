"""grafana/: the dashboard queries only metrics the exporter exposes, and with a real
Prometheus (Debian's package, started here on loopback) every panel's query returns data."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from policies.model import Sample
from sim.lab.metrics import DEFAULT_METRICS_PORT, EXPORTED, WEB_METRICS, RunMetrics
from sim.report.synthetic import novel_like

try:  # the mock web lives on its own branch; when it is here, its real counter is used
    from sim.web import MockWeb
except ImportError:
    MockWeb = None

GRAFANA = Path(__file__).resolve().parents[2] / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "runaway-run.json"
PROMTOOL = shutil.which("promtool")

# PromQL words that look like metric names but are not.
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
             "group_left", "group_right", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL (or Grafana `label_values(...)`) expression reads."""
    lv = re.fullmatch(r"\s*label_values\(\s*(.*?)\s*,\s*\w+\s*\)\s*", expr)
    if lv:
        expr = lv.group(1)
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals (regexes in matchers)
    e = re.sub(r"\{[^}]*\}", " ", e)  # label matchers
    e = re.sub(r"\[[^\]]*\]", " ", e)  # range selectors, incl. [$__rate_interval]
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)  # label lists
    names = set()
    for m in re.finditer(r"(?<![\w.$])[a-zA-Z_:][a-zA-Z0-9_:]*", e):
        if e[m.end():].lstrip().startswith("(") or m.group(0).lower() in _KEYWORDS:
            continue  # a function or aggregation, or a keyword
        names.add(m.group(0))
    return names


def test_metric_name_parser():
    assert metric_names('sum by (category) (increase(runaway_events_total{run=~"$run"}[$__rate_interval]))') == {
        "runaway_events_total"}
    assert metric_names('a_total / on(run) group_left b{x="sum(c)"} > 1e3 and bool d offset 5m') == {
        "a_total", "b", "d"}
    assert metric_names('label_values(runaway_sandbox_cpu_ratio{run=~"$run"}, scenario)') == {
        "runaway_sandbox_cpu_ratio"}


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, expr) for every target of every panel, rows included."""
    out = []
    stack = list(dashboard()["panels"])
    while stack:
        p = stack.pop(0)
        stack.extend(p.get("panels", []))
        for t in p.get("targets", []):
            out.append((p["title"], t["expr"]))
    return out


def annotation_queries() -> list[tuple[str, str]]:
    return [(f"annotation {a['name']}", a["expr"]) for a in dashboard()["annotations"]["list"] if "expr" in a]


def variable_queries() -> list[tuple[str, str]]:
    out = []
    for v in dashboard()["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]
            out.append((f"variable {v['name']}", q["query"] if isinstance(q, dict) else q))
    return out


def web_metric_names() -> set[str]:
    """The mock web's metric names: from its real registry when sim.web is here, else the
    names the contract gives it (sim.lab.metrics.WEB_METRICS, the one place they are listed)."""
    if MockWeb is None:
        return set(WEB_METRICS)
    registry = CollectorRegistry()
    MockWeb(seed=1, pages=10, labels={"run": "r1", "scenario": "novel"}, registry=registry)
    names = {f.name + "_total" if f.type == "counter" else f.name for f in registry.collect()}
    assert set(WEB_METRICS) <= names, "sim.lab.metrics.WEB_METRICS is out of date with sim.web"
    return names


def scrape_names(port: int) -> set[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {s.name for fam in text_string_to_metric_families(text) for s in fam.samples
            if not s.name.endswith("_created")}


def test_every_panel_queries_only_metrics_the_exporter_exposes():
    m = RunMetrics("r1", "novel")
    for rec in novel_like("r1"):
        m.observe(rec)
    port = m.serve(port=0)
    try:
        exposed = scrape_names(port) | web_metric_names()
    finally:
        m.stop()
    queries = panel_queries() + variable_queries() + annotation_queries()
    assert len(panel_queries()) >= 12
    for where, expr in queries:
        names = metric_names(expr)
        assert names, f"{where}: no metric in {expr!r}"
        assert names <= exposed, f"{where}: {sorted(names - exposed)} not exposed by the exporter"
    # The dashboard covers what the issue asks for.
    used = set().union(*(metric_names(e) for _, e in queries))
    assert set(EXPORTED) | set(WEB_METRICS) <= used


def test_panels_use_the_provisioned_datasource_and_the_run_variables():
    ds = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())["datasources"][0]
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert {"datasource", "run", "scenario"} <= set(variables)
    assert variables["datasource"]["current"]["value"] == ds["uid"]
    for title, expr in panel_queries():
        assert 'run=~"$run"' in expr and 'scenario=~"$scenario"' in expr, title
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/runaway.yml").read_text())["providers"][0]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


def test_compose_file_wires_the_config_and_stays_on_loopback():
    compose = yaml.safe_load((GRAFANA / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"prometheus", "grafana"}
    for svc in services.values():
        assert svc["network_mode"] == "host"  # to reach the exporter on 127.0.0.1
        for vol in svc["volumes"]:
            src = vol.split(":")[0]
            if src.startswith("."):
                assert (GRAFANA / src).exists(), f"compose mounts missing {src}"
    assert "--web.listen-address=127.0.0.1:9090" in services["prometheus"]["command"]
    assert services["grafana"]["environment"]["GF_SERVER_HTTP_ADDR"] == "127.0.0.1"
    prom = yaml.safe_load((GRAFANA / "prometheus.yml").read_text())
    assert prom["scrape_configs"][0]["static_configs"][0]["targets"] == [f"127.0.0.1:{DEFAULT_METRICS_PORT}"]


@pytest.mark.skipif(PROMTOOL is None and not os.environ.get("CI"),
                    reason="promtool not installed (Debian package `prometheus`; .ci/run installs it)")
def test_prometheus_config_passes_promtool():
    assert PROMTOOL, "promtool missing in CI"
    p = subprocess.run([PROMTOOL, "check", "config", str(GRAFANA / "prometheus.yml")],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr


def instant(base: str, expr: str) -> list[dict]:
    with urllib.request.urlopen(f"{base}/api/v1/query?{urllib.parse.urlencode({'query': expr})}", timeout=5) as r:
        data = json.loads(r.read())
    assert data["status"] == "success", (expr, data)
    return data["data"]["result"]


def grafana_to_promql(expr: str, run: str, scenario: str) -> str:
    """What Grafana sends for one selected run and scenario."""
    return (expr.replace("$__rate_interval", "10s").replace("${run}", run).replace("$run", run)
            .replace("${scenario}", scenario).replace("$scenario", scenario))


async def start_web(metrics: RunMetrics) -> tuple[object, int] | None:
    """The real mock web counting its requests in the run's registry, or None when sim.web
    is not here (then a stand-in counter with the contract's name and labels is used)."""
    if MockWeb is None:
        stand_in = Counter("runaway_web_requests", "requests the mock web served (stand-in)",
                           ["run", "scenario", *WEB_METRICS["runaway_web_requests_total"]],
                           registry=metrics.registry)
        stand_in.labels(metrics.run, metrics.scenario, "page", "200").inc(3)
        return None
    web = MockWeb(seed=1, pages=50, labels=dict(metrics.labels), registry=metrics.registry)
    port = await web.start("127.0.0.1", 0)
    return web, port


async def test_every_panel_returns_data_from_a_real_prometheus(prometheus):
    """...and the annotations, and the shipped rules (what grafana/prometheus.yml loads) alert
    on the synthetic run's escalation."""
    run, scenario = "r-prom", "novel"
    records = novel_like(run)
    metrics = RunMetrics(run, scenario)
    metrics.set_guard_states({"cpu-pegged": "inactive", "escalation": "inactive", "egress-scan": "inactive",
                              "robots-violation": "inactive", "covert-marker": "inactive"})
    half = len(records) // 2
    for rec in records[:half]:
        metrics.observe(rec)
    web = await start_web(metrics)
    port = metrics.serve(port=0)
    try:
        if web is not None:
            import aiohttp

            async with aiohttp.ClientSession() as session:
                for path in ("/", "/robots.txt", "/admin"):
                    async with session.get(f"http://127.0.0.1:{web[1]}{path}") as resp:
                        await resp.read()
        with prometheus(port, rule_files=sorted((GRAFANA / "rules").glob("*.yml"))) as base:
            queries = [(t, grafana_to_promql(e, run, scenario))
                       for t, e in panel_queries() + variable_queries() + annotation_queries()
                       if not t.startswith("variable")]
            deadline = time.monotonic() + 60
            fed_rest = False
            while True:
                empty = [(t, q) for t, q in queries if not instant(base, q)]
                up = instant(base, "up")
                if up and up[0]["value"][1] == "1" and not fed_rest:
                    # The second half arrives while Prometheus scrapes, as in a live run.
                    for rec in records[half:]:
                        metrics.observe(rec)
                    fed_rest = True
                if not empty and fed_rest:
                    break
                if time.monotonic() > deadline:
                    pytest.fail(f"panels with no data after 60 s: {empty}")
                time.sleep(0.5)
            # Wait for a scrape after the whole run was fed, then check what the panels show.
            last = [r for r in records if isinstance(r, Sample)][-1]
            sel = f'{{run="{run}",scenario="{scenario}"}}'
            deadline = time.monotonic() + 30
            while float(instant(base, f"sum(runaway_guard_firing{sel})")[0]["value"][1]) != 5:
                if time.monotonic() > deadline:
                    pytest.fail("Prometheus never saw the five firing guards of the synthetic run")
                time.sleep(0.5)
            assert float(instant(base, f"runaway_sandbox_cpu_ratio{sel}")[0]["value"][1]) == last.cpu_ratio
            pages = float(instant(base, f"runaway_learner_pages_total{sel}")[0]["value"][1])
            assert pages == last.extra["pages"]
            kills = instant(base, f'runaway_actions_total{{run="{run}",action="kill",ok="true"}}')
            assert float(kills[0]["value"][1]) == 1
            deadline = time.monotonic() + 30
            while not instant(base, 'ALERTS{alertname="escalation",alertstate="firing",run="%s"}' % run):
                if time.monotonic() > deadline:
                    pytest.fail("the shipped rules never alerted on the run's escalation")
                time.sleep(0.5)
            for title, q in variable_queries():
                inner = re.fullmatch(r"label_values\((.*), (\w+)\)", grafana_to_promql(q, run, scenario))
                assert inner and instant(base, inner.group(1)), title
    finally:
        metrics.stop()
        if web is not None:
            await web[0].stop()


def test_dashboard_layout_is_valid():
    panels = dashboard()["panels"]
    assert len({p["id"] for p in panels}) == len(panels), "panel ids must be unique"
    cells: dict[tuple[int, int], str] = {}
    for p in panels:
        assert p["type"] in {"timeseries", "stat", "state-timeline", "table", "bargauge", "row"}, p["title"]
        assert p["title"] and p["description"], "every panel says what it shows"
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]  # Grafana's grid is 24 wide
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = p["title"]


def test_one_run_at_a_time_the_newest_first_with_a_link_to_its_report():
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    run = variables["run"]
    # Single-select, no "All"; sorted alphabetically descending: run ids start with their UTC
    # start time, so the first option, which Grafana selects when nothing is, is the newest.
    assert run["multi"] is False and run["includeAll"] is False and run["sort"] == 2 and not run["current"]
    links = dashboard()["links"]
    assert any("${run}" in link["url"] and "${reports}" in link["url"] for link in links)
    assert "reports" in variables


def test_counters_are_plotted_as_increases_and_verdicts_and_actions_annotated():
    for title, expr in panel_queries():
        panel_type = next(p["type"] for p in dashboard()["panels"] if p["title"] == title)
        if panel_type != "timeseries":
            continue  # a stat of a counter is the run's total so far: what it should show
        for name in metric_names(expr):
            if name.endswith("_total"):
                assert re.search(rf"(increase|rate)\({name}\b", expr), f"{title}: raw counter {name}"
    names = {n for _, e in annotation_queries() for n in metric_names(e)}
    assert {"runaway_guard_firing", "runaway_actions_total"} <= names


def test_prometheus_loads_the_rules_exported_from_the_default_policy(tmp_path):
    from policies import default_policy
    from policies.promql import rules_yaml

    prom = yaml.safe_load((GRAFANA / "prometheus.yml").read_text())
    assert prom["rule_files"] == ["rules/*.yml"]
    shipped = (GRAFANA / "rules" / "default.yml").read_text()
    body = lambda text: [ln for ln in text.splitlines() if not ln.startswith("# Prometheus alerting rules")]
    assert body(shipped) == body(rules_yaml(default_policy())), \
        "grafana/rules/default.yml is stale: runaway rules -o grafana/rules/default.yml"
    assert "# skipped" not in shipped  # every default guard exports
