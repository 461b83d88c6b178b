"""Fuzzing the parsers of everything a user or an agent hands runaway: policies, scenarios,
traces and protocol lines. The contract: a valid result or a RunawayError (one line, exit
2 at the CLI), never any other exception."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies.errors import RunawayError
from policies.model import parse_trace_lines, record_to_dict
from policies.spec import parse_policy
from sim.lab import protocol
from sim.scenarios.spec import parse_scenario

ROOT = Path(__file__).resolve().parents[2]
POLICY = (ROOT / "policies" / "default.yaml").read_text()
SCENARIO = (ROOT / "sim" / "scenarios" / "novel.yaml").read_text()
TRACE = (ROOT / "docs" / "examples" / "novel-trace.jsonl").read_text().splitlines(keepends=True)[:60]

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
trees = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=20)


def _mutate(text: str, data: st.DataObject) -> str:
    """The text with a few random cuts, repeats and insertions (near-valid garbage)."""
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(text)))
        j = data.draw(st.integers(i, min(len(text), i + 40)))
        op = data.draw(st.sampled_from(["cut", "repeat", "insert"]))
        if op == "cut":
            text = text[:i] + text[j:]
        elif op == "repeat":
            text = text[:j] + text[i:j] * data.draw(st.integers(2, 5)) + text[j:]
        else:
            text = text[:i] + data.draw(st.text(max_size=10)) + text[i:]
    return text


def _contract(parse, text) -> None:
    try:
        parse(text)
    except RunawayError as e:
        assert str(e) and "\n" not in str(e).strip(), "one line"


@FUZZ
@given(st.one_of(st.text(max_size=300), trees.map(lambda t: yaml.safe_dump(t, allow_unicode=True))))
def test_any_text_as_a_policy_or_a_scenario_is_a_policy_or_one_error(text):
    """Whatever text is loaded as a policy or a scenario, the result is a valid object or a
    RunawayError, never another exception."""
    _contract(lambda t: parse_policy(t, file="fuzz.yaml"), text)
    _contract(lambda t: parse_scenario(t, file="fuzz.yaml"), text)


@FUZZ
@given(st.data())
def test_a_mangled_policy_or_scenario_is_a_policy_or_one_error(data):
    """A real policy or scenario with random cuts, repeats and insertions loads or fails
    with one RunawayError."""
    _contract(lambda t: parse_policy(t, file="fuzz.yaml"), _mutate(POLICY, data))
    _contract(lambda t: parse_scenario(t, file="fuzz.yaml"), _mutate(SCENARIO, data))


@FUZZ
@given(st.data())
def test_a_mangled_trace_is_records_or_one_error(data):
    """A real trace with mangled lines, or lines of arbitrary JSON, reads as records or
    fails with one TraceError naming the line."""
    lines = list(TRACE)
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(lines) - 1))
        choice = data.draw(st.sampled_from(["mutate", "json"]))
        if choice == "mutate":
            lines[i] = _mutate(lines[i].rstrip("\n"), data) + "\n"
        else:
            lines[i] = json.dumps(data.draw(trees)) + "\n"
    try:
        recs = list(parse_trace_lines(lines, file="fuzz.jsonl"))
    except RunawayError as e:
        assert e.file == "fuzz.jsonl"
        return
    for r in recs:  # what was read is valid: it writes back as standard JSON
        json.dumps(record_to_dict(r), allow_nan=False)


@FUZZ
@given(st.one_of(st.text(max_size=200), trees.map(lambda t: protocol.PREFIX + json.dumps(t))))
def test_any_protocol_line_parses_to_a_meaning(line):
    """Whatever line the agent writes, the runner's parser gives it a meaning (an event, a
    gauge, plain text, a refusal) and never raises."""
    parsed = protocol.parse_line(line, 1.0)
    assert isinstance(parsed, (protocol.Plain, protocol.Gauge, protocol.Other, protocol.Refused,
                               protocol.Event))
