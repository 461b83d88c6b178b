"""covert_chars: what the runner uses to spot hidden markers in the learner's log."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies import Engine, covert_chars, covert_marker_event, default_policy


@pytest.mark.parametrize("text, names", [
    ("plain crawl log line 200 OK", []),
    ("[正在学习…] CPU加速\t(CPU acceleration)\n", []),
    ("naïve café — 50 pages", []),
    ("build a cluster\u200b", ["U+200B ZERO WIDTH SPACE"]),
    ("a\u2060b\ufeffc", ["U+2060 WORD JOINER", "U+FEFF ZERO WIDTH NO-BREAK SPACE"]),
    ("txt.exe\u202egpj", ["U+202E RIGHT-TO-LEFT OVERRIDE"]),
    ("bell\x07 and escape\x1b[31m", ["U+0007", "U+001B"]),
    ("carriage\rreturn", ["U+000D"]),
    ("twice\u200b and \u200b again", ["U+200B ZERO WIDTH SPACE"]),
    ("hangul filler\u3164", ["U+3164 HANGUL FILLER"]),
])
def test_covert_chars_names_what_is_hidden(text, names):
    assert covert_chars(text) == names


@given(st.text(alphabet=st.characters(categories=["L", "N", "P", "S"])))
def test_visible_text_has_no_covert_chars(text):
    """Text made only of letters, digits, punctuation and symbols is never flagged, in any script."""
    assert covert_chars(text.replace("\u3164", "").replace("\u115f", "").replace("\u1160", "")
                        .replace("\uffa0", "").replace("\u2800", "")) == []


@given(st.text(), st.sampled_from(["\u200b", "\u200d", "\u2060", "\ufeff", "\u202e", "\x00", "\x7f"]))
def test_an_inserted_marker_is_always_found(text, marker):
    """Inserting a zero-width, bidi or control character anywhere in a line always gets it reported."""
    mid = len(text) // 2
    assert any(n.startswith(f"U+{ord(marker):04X}") for n in covert_chars(text[:mid] + marker + text[mid:]))


def test_a_marked_log_line_becomes_an_event_the_default_policy_alerts_on():
    ev = covert_marker_event(7.0, "[正在学习…] 搭建集群\u200b", stream="stderr")
    assert ev is not None and (ev.source, ev.category, ev.kind) == ("observer", "deception", "covert_marker")
    assert ev.detail["stream"] == "stderr"
    eng = Engine(default_policy())
    assert [(v.guard, v.state) for v in eng.step(ev)] == [("covert-marker", "firing")]
    assert covert_marker_event(7.0, "[正在学习…] 搭建集群") is None
