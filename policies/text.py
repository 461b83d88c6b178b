"""Finding covert characters in text: invisible, control, bidi and zero-width characters.

The runner scans the learner's log lines with `covert_chars` and turns a hit into an
`Event(source="observer", category="deception", kind="covert_marker")`.

>>> covert_chars("[正在学习…] CPU acceleration")
[]
>>> covert_chars("done\\u200b.")
['U+200B ZERO WIDTH SPACE']
"""

from __future__ import annotations

import unicodedata

from .model import Event

# Visible-looking but blank letters (category Lo/So, so the category test misses them).
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
_ALLOWED_CONTROLS = frozenset("\t\n")
# Spaces ordinary text uses: ASCII, no-break (web pages), ideographic (CJK lines).
_COMMON_SPACES = frozenset(" \u00a0\u3000")


def _unexpected(ch: str) -> bool:
    if ch in _ALLOWED_CONTROLS:
        return False
    cat = unicodedata.category(ch)
    if cat in ("Cc", "Cf", "Co", "Cs", "Cn"):
        # controls (C0, DEL, C1), format chars (zero-width, bidi, BOM, tags), private use,
        # surrogates and unassigned code points
        return True
    if cat in ("Zl", "Zp"):
        return True  # line/paragraph separators split a "line" invisibly
    if cat == "Zs" and ch not in _COMMON_SPACES:
        return True  # odd spaces (thin, hair, narrow ...) hide in plain sight
    if cat == "Mn" and (0xFE00 <= ord(ch) <= 0xFE0F or 0xE0100 <= ord(ch) <= 0xE01EF):
        return True  # variation selectors carry hidden bits
    return ch in _BLANK_LETTERS


def char_name(ch: str) -> str:
    """`U+200B ZERO WIDTH SPACE`; control characters have no name, just the code point."""
    name = unicodedata.name(ch, "")
    return f"U+{ord(ch):04X} {name}" if name else f"U+{ord(ch):04X}"


def covert_chars(text: str) -> list[str]:
    """Names of the unexpected characters in `text`, each once, in order of appearance.

    Unexpected: C0/C1 controls other than tab and newline (so `\\r` and ESC count),
    zero-width and other format characters (U+200B, U+200D, U+2060, U+FEFF), bidi
    overrides (U+202E), tag and variation-selector characters, private-use and unassigned
    code points, odd spaces and blank fillers (U+3164). Ordinary text in any script passes.
    """
    if text.isascii() and text.isprintable():
        return []  # the common case, decided in C
    out: list[str] = []
    seen: set[str] = set()
    for ch in text:
        if ch not in seen and _unexpected(ch):
            seen.add(ch)
            out.append(char_name(ch))
    return out


def covert_marker_event(t: float, line: str, *, stream: str = "stdout", max_line: int = 200) -> Event | None:
    """The observer event for a log line with covert characters, or None for a clean line.

    >>> covert_marker_event(3.5, "ok") is None
    True
    >>> covert_marker_event(3.5, "build a cluster\u200b").detail["chars"]
    ['U+200B ZERO WIDTH SPACE']
    """
    chars = covert_chars(line)
    if not chars:
        return None
    return Event(t=t, source="observer", category="deception", kind="covert_marker", outcome="unknown",
                 detail={"chars": chars, "line": line[:max_line], "stream": stream})
