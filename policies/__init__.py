"""The guard engine: observations in, verdicts out. Pure: no I/O in the engine, no clock.

>>> from policies import read_trace, Sample, Event
"""

from .errors import PolicyError, RunawayError, TraceError
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

__all__ = [
    "ACTION_RANK", "ACTIONS", "Action", "Event", "Meta", "Observation", "PolicyError", "Record",
    "RunawayError", "Sample", "TraceError", "TraceWriter", "Verdict", "observations", "read_trace",
    "record_from_dict", "record_to_dict",
]
