"""The scenario language: the catalog loads, bad files fail with file:line: field, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sim.learner.attempts import CATALOG
from sim.scenarios import ATTEMPTS, ScenarioError, catalog_names, list_scenarios, load_scenario

REPO = Path(__file__).resolve().parents[3]
NINE = ["novel", "benign", "greedy", "escalator", "deceiver", "fork-bomb", "memory-balloon",
        "exfiltrator", "stubborn"]

GOOD = """\
name: mine
summary: a test scenario
lesson: {watch: w, guard: g, exercise: e}
settings:
  crawl: {concurrency: 2, delay: 250ms}
phases:
  - name: go
    when: [{skill: cpu_acceleration}, {after: 2s, pages: 10}]
    do:
      cpu: {workers: all, duty: 0.5}
      attempts: [setuid, {name: fork_flood, max: 8}]
      deceive: {marker: "\\u2060"}
"""


def test_the_catalog_ships_nine_scenarios_with_lessons():
    assert catalog_names() == NINE
    for s in list_scenarios():
        assert s.summary and s.lesson.watch and s.lesson.guard and s.lesson.exercise
        again = json.loads(s.to_json())
        assert again["name"] == s.name and len(again["phases"]) == len(s.phases)


def test_benign_makes_no_attempts_and_obeys_robots():
    s = load_scenario("benign")
    assert s.attempts == []
    assert s.settings["crawl"]["robots"] == "obey"
    assert all("cpu" not in p.do and "crawl" not in p.do for p in s.phases)


def test_scenario_attempt_names_match_the_learners_catalog():
    assert list(ATTEMPTS) == list(CATALOG)


def test_a_good_file_loads_with_durations_in_seconds(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text(GOOD)
    s = load_scenario(str(f))
    assert s.settings["crawl"]["delay"] == 0.25
    assert s.phases[0].when == [{"skill": "cpu_acceleration"}, {"after": 2.0, "pages": 10}]
    assert s.phases[0].do["attempts"] == [{"name": "setuid"}, {"name": "fork_flood", "max": 8}]
    assert s.phases[0].do["deceive"]["marker"] == "\u2060"


@pytest.mark.parametrize("old,new,line,field,words", [
    ("concurrency: 2,", "concurrency: 0,", 5, "settings.crawl.concurrency", "from 1 to 64"),
    ("delay: 250ms", "delay: soon", 5, "settings.crawl.delay", "duration"),
    ("skill: cpu_acceleration", "skill: flying", 8, "phases[0].when[0].skill", "unknown value 'flying'"),
    ("duty: 0.5", "duty: 2", 10, "phases[0].do.cpu.duty", "from 0 to 1"),
    ("workers: all", "workers: many", 10, "phases[0].do.cpu.workers", "`all`"),
    ("[setuid,", "[become_root,", 11, "phases[0].do.attempts[0]", "unknown value 'become_root'"),
    ("max: 8", "max: -1", 11, "phases[0].do.attempts[1].max", "whole number"),
    ('marker: "\\u2060"', "marker: X", 12, "phases[0].do.deceive.marker", "invisible"),
    ("      cpu:", "      gpu:", 10, "phases[0].do.gpu", "unknown field"),
    ("    when:", "    wen:", 8, "phases[0].wen", "unknown field"),
    ("summary: a test scenario\n", "", None, "summary", "missing field"),
])
def test_bad_files_name_file_line_and_field(tmp_path, old, new, line, field, words):
    assert old in GOOD
    f = tmp_path / "bad.yaml"
    f.write_text(GOOD.replace(old, new))
    with pytest.raises(ScenarioError) as e:
        load_scenario(str(f))
    msg = str(e.value)
    if line is not None:
        assert msg.startswith(f"{f}:{line}: {field}: "), msg
    else:
        assert msg.startswith(f"{f}") and f" {field}: " in msg, msg
    assert words in msg


def test_yaml_syntax_errors_name_the_line(tmp_path):
    f = tmp_path / "broken.yaml"
    f.write_text("name: x\nsummary: [unclosed\nlesson: {}\n")
    with pytest.raises(ScenarioError, match=r"broken.yaml:\d+: not valid YAML"):
        load_scenario(str(f))


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "sim", *args], env=env, capture_output=True, text=True,
                          timeout=60)


def test_cli_lists_every_scenario_with_its_summary():
    p = _cli("scenarios")
    assert p.returncode == 0, p.stderr
    for s in list_scenarios():
        assert any(line.startswith(s.name) and s.summary in line for line in p.stdout.splitlines())


def test_cli_show_prints_the_lesson_and_json():
    p = _cli("scenarios", "show", "stubborn")
    assert p.returncode == 0
    s = load_scenario("stubborn")
    assert s.lesson.exercise in p.stdout and "defy (when operator stop)" in p.stdout
    j = _cli("scenarios", "show", "stubborn", "--json")
    assert json.loads(j.stdout) == json.loads(s.to_json())


def test_cli_show_rejects_a_bad_file_in_one_line(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text(GOOD.replace("duty: 0.5", "duty: lots"))
    p = _cli("scenarios", "show", str(f))
    assert p.returncode == 2
    assert p.stderr.strip() == f"runaway: {f}:10: phases[0].do.cpu.duty: expected a number from 0 to 1, got 'lots'"
    p = _cli("scenarios", "show", "no-such-scenario")
    assert p.returncode == 2 and "unknown scenario 'no-such-scenario'" in p.stderr
    assert "Traceback" not in p.stderr
