"""The run's Prometheus exporter, scraped over loopback as Prometheus would scrape it."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from policies.errors import RunawayError
from policies.model import Action, Event, Meta, Sample, Verdict
from sim.lab.metrics import EXPORTED, SIGNAL_METRICS, RunMetrics
from sim.report.synthetic import novel_like

LABELS = {"run": "r1", "scenario": "novel"}


def scrape(port: int, host: str = "127.0.0.1") -> dict[str, list]:
    """{sample name: [(labels, value), ...]} from a real HTTP scrape of /metrics."""
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, list] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


@pytest.fixture
def served():
    m = RunMetrics("r1", "novel")
    port = m.serve(port=0)
    try:
        yield m, port
    finally:
        m.stop()


def test_every_contract_metric_is_exposed_with_its_labels(served):
    m, port = served
    for rec in novel_like("r1"):
        m.observe(rec)
    got = scrape(port)
    for name, extra in EXPORTED.items():
        assert name in got, f"{name} missing from /metrics"
        for labels, _ in got[name]:
            assert set(labels) == {"run", "scenario", *extra}, name
            assert labels["run"] == "r1" and labels["scenario"] == "novel"
    # Nothing exported that the contract (and so the dashboards) do not know.
    names = {n for n in got if not n.endswith("_created")}
    assert names == set(EXPORTED)


def test_contract_names_of_design_md_are_all_there():
    design = {
        "runaway_sandbox_cpu_ratio", "runaway_sandbox_cpu_seconds_total", "runaway_sandbox_memory_bytes",
        "runaway_sandbox_pids", "runaway_events_total", "runaway_guard_firing", "runaway_guard_verdicts_total",
        "runaway_actions_total", "runaway_learner_pages_total", "runaway_learner_bits_per_char",
    }
    assert design <= set(EXPORTED)
    assert EXPORTED["runaway_events_total"] == ("source", "category", "kind", "outcome")
    assert EXPORTED["runaway_guard_verdicts_total"] == ("guard", "state", "action")
    assert EXPORTED["runaway_actions_total"] == ("action", "ok")
    assert set(SIGNAL_METRICS.values()) <= set(EXPORTED)


def test_values_follow_the_records(served):
    m, port = served
    m.observe(Meta(run="r1", scenario="novel"))
    m.observe(Sample(t=1.0, cpu_ratio=0.98, cpu_seconds=1.5, mem_bytes=1000, mem_limit_bytes=4000, pids=5,
                     extra={"pages": 12, "bits_per_char": 3.5}))
    m.observe(Event(t=1.1, source="audit", category="escalation", kind="setuid", outcome="blocked"))
    m.observe(Event(t=1.2, source="audit", category="escalation", kind="setuid", outcome="blocked"))
    m.observe(Verdict(t=1.2, guard="escalation", state="firing", severity="critical", action="kill"))
    m.observe(Action(t=1.3, action="kill", ok=True, latency_s=0.1))
    m.observe(Action(t=1.4, action="throttle", ok=False))
    got = scrape(port)
    one = lambda name: [v for labels, v in got[name] if labels["run"] == "r1"]  # noqa: E731
    assert one("runaway_sandbox_cpu_ratio") == [0.98]
    assert one("runaway_sandbox_cpu_seconds_total") == [1.5]
    assert one("runaway_sandbox_memory_bytes") == [1000]
    assert one("runaway_sandbox_memory_limit_bytes") == [4000]
    assert one("runaway_sandbox_pids") == [5]
    assert one("runaway_learner_pages_total") == [12]
    assert one("runaway_learner_bits_per_char") == [3.5]
    [(labels, value)] = got["runaway_events_total"]
    assert value == 2 and labels["kind"] == "setuid" and labels["outcome"] == "blocked" and labels["source"] == "audit"
    assert got["runaway_guard_firing"] == [({"guard": "escalation", **LABELS}, 1.0)]
    assert got["runaway_guard_verdicts_total"] == [
        ({"guard": "escalation", "state": "firing", "action": "kill", **LABELS}, 1.0)]
    assert sorted((lab["action"], lab["ok"], v) for lab, v in got["runaway_actions_total"] if v) == [
        ("kill", "true", 1.0), ("throttle", "false", 1.0)]
    # every action starts at 0, so a dashboard shows "none yet" rather than nothing
    assert {(lab["action"], lab["ok"]) for lab, _ in got["runaway_actions_total"]} == {
        (a, ok) for a in ("throttle", "pause", "kill", "disconnect") for ok in ("true", "false")}


def test_cumulative_readings_make_counters_that_never_go_down():
    m = RunMetrics("r1", "novel")
    get = lambda n: m.registry.get_sample_value(n, LABELS)  # noqa: E731
    assert get("runaway_sandbox_cpu_seconds_total") == 0  # there from the start
    for t, secs, pages in [(1, 1.0, 3), (2, 2.5, 7), (3, 2.5, 7), (4, 0.5, 1)]:  # restart at t=4
        m.observe(Sample(t=t, cpu_seconds=secs, extra={"pages": pages}))
    assert get("runaway_sandbox_cpu_seconds_total") == 3.0
    assert get("runaway_learner_pages_total") == 8


def test_guard_states_and_verdicts_drive_the_firing_gauge():
    m = RunMetrics("r1", "novel")
    m.set_guard_states({"cpu-pegged": "firing", "escalation": "inactive", "egress": "pending"})
    firing = lambda g: m.registry.get_sample_value("runaway_guard_firing", {"guard": g, **LABELS})  # noqa: E731
    assert (firing("cpu-pegged"), firing("escalation"), firing("egress")) == (1, 0, 0)
    m.observe(Verdict(t=5, guard="cpu-pegged", state="resolved", severity="warning", action="throttle"))
    assert firing("cpu-pegged") == 0


def test_serves_loopback_only_and_stop_frees_the_port():
    m = RunMetrics("r1", "novel")
    port = m.serve(port=0)
    try:
        assert "runaway_sandbox_cpu_seconds_total" in scrape(port)
        # Bound to 127.0.0.1 itself, not to every address: another loopback address is refused.
        with pytest.raises(urllib.error.URLError):
            scrape(port, host="127.0.0.2")
    finally:
        m.stop()
    m.stop()  # idempotent
    with pytest.raises(urllib.error.URLError):
        scrape(port)


def test_each_run_has_its_own_registry_unless_given_one():
    a, b = RunMetrics("a", "novel"), RunMetrics("b", "novel")  # no duplicate-name clash
    assert a.registry is not b.registry
    shared = CollectorRegistry()
    m = RunMetrics("r1", "novel", registry=shared)
    # The mock web registers its counter in the same registry and shows up on the same page.
    web = Counter("runaway_web_requests", "requests", ["run", "scenario", "route", "status"], registry=shared)
    web.labels("r1", "novel", "page", "200").inc()
    port = m.serve(port=0)
    try:
        got = scrape(port)
    finally:
        m.stop()
    assert "runaway_web_requests_total" in got and "runaway_sandbox_cpu_seconds_total" in got


def test_a_non_record_is_refused():
    with pytest.raises(TypeError, match="not a trace record"):
        RunMetrics("r1", "novel").observe({"type": "sample"})  # type: ignore[arg-type]


def test_a_taken_port_is_a_one_line_user_error():
    a, b = RunMetrics("a", "novel"), RunMetrics("b", "novel")
    port = a.serve(port=0)
    try:
        with pytest.raises(RunawayError, match=rf"--metrics-port: cannot serve metrics on 127.0.0.1:{port}"):
            b.serve(port=port)
    finally:
        a.stop()
