"""The guard engine: observations in, verdicts out. Pure: no I/O in the engine, no clock.

>>> from policies import load_policy, Engine, read_trace, replay
>>> eng = Engine(load_policy("guards:\\n  - {name: hot, signal: cpu_ratio, above: 0.9, for: 2s, action: throttle}"))
>>> [eng.step(Sample(t=t, cpu_ratio=0.99)) for t in (0.0, 1.0, 2.0)][-1][0].state
'firing'
>>> eng.actions
['throttle']
"""

from .engine import Engine, replay
from .errors import PolicyError, RunawayError, TraceError
from .kinds import GuardKind, kinds, register_kind
from .kinds.python import Guard, guard_types, register_guard
from .model import (
    ACTION_RANK,
    ACTIONS,
    Action,
    Event,
    Meta,
    Observation,
    Record,
    Sample,
    TraceWriter,
    Verdict,
    observations,
    read_trace,
    record_from_dict,
    record_to_dict,
)
from .parse import default_policy, default_policy_path, load_policy
from .spec import Policy
from .yamlfile import parse_duration
from .text import covert_chars, covert_marker_event

__all__ = [
    "ACTION_RANK", "ACTIONS", "Action", "Engine", "Event", "Guard", "GuardKind", "Meta", "Observation", "Policy",
    "PolicyError", "Record", "RunawayError", "Sample", "TraceError", "TraceWriter", "Verdict",
    "covert_chars", "covert_marker_event", "default_policy", "default_policy_path", "guard_types", "load_policy",
    "observations", "parse_duration", "read_trace", "record_from_dict", "record_to_dict",
    "register_guard", "register_kind", "kinds", "replay",
]
