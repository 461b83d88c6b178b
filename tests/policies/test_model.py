"""The trace format: round trips, and bad lines named by file, line and field."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies import Action, Event, Meta, Sample, TraceError, TraceWriter, Verdict, read_trace
from policies.model import record_from_dict, record_to_dict

finite = st.floats(min_value=0, max_value=1e6, allow_nan=False)


@given(
    t=finite, cpu=st.floats(0, 4, allow_nan=False), pids=st.integers(0, 10_000),
    extra=st.dictionaries(st.sampled_from(["pages", "bits_per_char", "workers", "custom_gauge"]),
                          st.integers(0, 10**6)),
)
def test_sample_round_trips_through_json(t, cpu, pids, extra):
    """Any sample written as a trace line reads back equal, unknown fields included."""
    s = Sample(t=round(t, 6), cpu_ratio=cpu, pids=pids, extra=extra)
    line = json.dumps(record_to_dict(s))
    assert record_from_dict(json.loads(line)) == s


def test_writer_flushes_each_line_and_reader_returns_every_record(tmp_path):
    path = tmp_path / "trace.jsonl"
    recs = [
        Meta(run="r1", scenario="novel", seed=7, backend="docker", caps={"cpus": 0.5}),
        Sample(t=0.25, cpu_ratio=1.0, pids=4, extra={"pages": 3}),
        Event(t=0.3, source="audit", category="escalation", kind="setuid", outcome="blocked",
              detail={"errno": 1}),
        Verdict(t=0.3, guard="escalation", state="firing", severity="critical", action="kill"),
        Action(t=0.35, action="kill", ok=True, latency_s=0.05),
    ]
    w = TraceWriter(str(path))
    for r in recs[:2]:
        w.write(r)
    # flushed as written: readable before close
    assert len(path.read_text().splitlines()) == 2
    for r in recs[2:]:
        w.write(r)
    w.close()
    assert list(read_trace(str(path))) == recs


@pytest.mark.parametrize(
    "lines, expect",
    [
        (['{"type":"sample","t":1}', "not json"], r"t\.jsonl:2: not a JSON object"),
        (['{"type":"sample","t":2}', '{"type":"sample","t":1}'], r"t\.jsonl:2: t: time goes backwards"),
        (['{"type":"bogus","t":1}'], r"t\.jsonl:1: type: unknown record type 'bogus'"),
        (['{"type":"sample","t":1,"cpu_ratio":"high"}'], r"t\.jsonl:1: cpu_ratio: expected a number"),
        (['{"type":"event","t":1,"source":"audit","category":"nope","kind":"x"}'],
         r"t\.jsonl:1: category: unknown value 'nope'"),
        (['{"type":"sample"}'], r"t\.jsonl:1: t: missing required field"),
    ],
)
def test_bad_trace_lines_name_file_line_and_field(tmp_path, lines, expect):
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(TraceError, match=expect):
        list(read_trace(str(path)))


def test_writer_refuses_time_going_backwards(tmp_path):
    w = TraceWriter(str(tmp_path / "t.jsonl"))
    w.write(Sample(t=2.0))
    with pytest.raises(ValueError, match="backwards"):
        w.write(Sample(t=1.0))
