"""A real Prometheus scraping a real `novel` run: every dashboard panel gets data, and the
alerting rules `runaway rules` exports fire in Prometheus's own evaluation."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sim.lab.promserver import free_port
from test_grafana import grafana_to_promql, instant, panel_queries

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.mark.docker
def test_panels_get_data_and_exported_rules_fire_during_a_novel_run(prometheus, tmp_path):
    # The default policy with the CPU guards only alerting: a throttle by our own engine
    # would end the pegging at the moment Prometheus's copy of the rule comes due.
    policy = tmp_path / "policy.yaml"
    text = (ROOT / "policies" / "default.yaml").read_text()
    assert text.count("action: throttle") == 2
    policy.write_text(text.replace("action: throttle", "action: alert"))
    rules = tmp_path / "rules.yml"
    p = subprocess.run([sys.executable, "-m", "sim", "rules", str(policy), "-o", str(rules)], env=ENV,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    port = free_port()
    out = tmp_path / "run"
    with prometheus(port, rule_files=[rules]) as base:
        run = subprocess.Popen([sys.executable, "-m", "sim", "run", "novel", "--backend", "docker", "--profile", "ci",
                                "--duration", "60", "--out", str(out), "--plain", "--metrics-port", str(port),
                                "--policy", str(policy)],
                               env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            # The run id names the series; it is in the trace's first line.
            deadline = time.monotonic() + 60
            while not (out / "trace.jsonl").exists() or not (out / "trace.jsonl").read_text().strip():
                assert time.monotonic() < deadline and run.poll() is None, "the run never wrote its trace"
                time.sleep(0.2)
            import json

            meta = json.loads((out / "trace.jsonl").read_text().splitlines()[0])
            queries = {t + ": " + e: grafana_to_promql(e, meta["run"], meta["scenario"]) for t, e in panel_queries()}
            with_data: set[str] = set()
            alerts: set[str] = set()
            while run.poll() is None:
                for name, q in queries.items():
                    if name not in with_data and instant(base, q):
                        with_data.add(name)
                for a in instant(base, 'ALERTS{alertstate="firing"}'):
                    alerts.add(a["metric"]["alertname"])
                time.sleep(0.5)
            text = run.stdout.read()
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()
    assert run.returncode == 0, text[-3000:]
    # Series that only exist once something happened (actions, firing guards) are kept by
    # Prometheus as the run goes; anything still missing is a panel that shows nothing.
    assert set(queries) - with_data == set()
    # The event guards export too: Prometheus alerts on the escalation the engine killed for
    # (here only alerted on: the CPU guards' throttle is off, the escalation kill is not).
    assert "escalation" in alerts, alerts
    assert alerts & {"cpu-pegged", "cpu-duty-cycle"}, alerts
