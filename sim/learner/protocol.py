"""Protocol lines: `@runaway {json}` written to the controller in one os.write each.

One write per line (kept under PIPE_BUF, 4096 bytes) means lines from several processes
sharing the same pipe never interleave. Nothing here raises audit events worth reporting
(os.write is not audited), so the audit hook can call it without recursing.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

PREFIX = b"@runaway "
MAX_LINE = 4000  # under PIPE_BUF (4096) so one write stays atomic

# Where each kind of line goes: audit events on stderr (fd 2, like the hook), the
# learner's own lines on stdout (fd 1). The runner reads both.
AUDIT_FD = 2
LEARNER_FD = 1


def _encode(obj: dict[str, Any]) -> bytes:
    data = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str).encode()
    if len(data) + len(PREFIX) + 1 > MAX_LINE:
        # Shrink the detail rather than split the line: a split line would be two garbage lines.
        slim = dict(obj)
        slim["detail"] = {"truncated": True, **{k: v for k, v in dict(obj.get("detail") or {}).items()
                                                  if isinstance(v, (int, float, bool)) or v is None}}
        data = json.dumps(slim, ensure_ascii=False, separators=(",", ":"), default=str).encode()
        data = data[: MAX_LINE - len(PREFIX) - 1]
    return PREFIX + data + b"\n"


def write_line(obj: dict[str, Any], fd: int = LEARNER_FD) -> None:
    """Writes one protocol line (stamps `wall` when missing); never raises on a closed pipe."""
    obj.setdefault("wall", round(time.time(), 6))
    try:
        os.write(fd, _encode(obj))
    except OSError:  # the controller went away: nothing useful to do with the line
        pass


def event(source: str, category: str, kind: str, outcome: str = "unknown",
          detail: dict[str, Any] | None = None, fd: int = LEARNER_FD) -> dict[str, Any]:
    """Writes an `event` line and returns the object written."""
    obj = {"type": "event", "source": source, "category": category, "kind": kind,
           "outcome": outcome, "detail": detail or {}}
    write_line(obj, fd)
    return obj
