"""The learning meter: an adaptive character model scoring each page before learning it.

"AI is compression": a model that has learned a site predicts its next page well, so the
page costs few bits per character to encode. `Meter.observe(text)` first codes the text
under the current model (prequential: the cost is measured BEFORE the model sees it),
then updates the model. On a repetitive site the curve falls as the learner learns.

The model is an interpolated Witten-Bell character model over orders 0..`order`
(PPM-like, no arithmetic coder needed: we only want the code length, -log2 p). The base
distribution is uniform over 2**16 symbols, so an unseen Chinese character costs 16 bits
the first time and little once learned.

>>> m = Meter(order=2)
>>> first = m.observe("the cat sat on the mat. " * 4)
>>> again = m.observe("the cat sat on the mat. " * 4)
>>> again < first
True
"""

from __future__ import annotations

import math
import re
from collections import deque

_TAGS = re.compile(r"<(script|style)[^>]*>.*?</\1>|<[^>]+>", re.S | re.I)
_SPACE = re.compile(r"\s+")
_ENTITIES = {"&amp;": "&", "&lt;": "<", "&gt;": ">", "&quot;": '"', "&#x27;": "'", "&#39;": "'"}
_ENTITY = re.compile("|".join(map(re.escape, _ENTITIES)))
BASE_BITS = 16.0  # uniform over 2**16 symbols for a character never seen in any context


def page_text(html: str) -> str:
    """The visible text of an HTML page, whitespace collapsed (what the meter reads)."""
    text = _TAGS.sub(" ", html)
    text = _ENTITY.sub(lambda m: _ENTITIES[m.group(0)], text)
    return _SPACE.sub(" ", text).strip()


class Meter:
    """Prequential bits-per-character of a stream of pages under an adaptive model."""

    def __init__(self, order: int = 3, max_chars: int = 1500, window: int = 10) -> None:
        self.order = max(0, int(order))
        self.max_chars = max(1, int(max_chars))
        # tables[k]: context of k chars -> (symbol counts, total, distinct)
        self.tables: list[dict[str, dict[str, int]]] = [dict() for _ in range(self.order + 1)]
        self.pages = 0
        self.chars = 0
        self.bits = 0.0
        self._recent: deque[tuple[float, int]] = deque(maxlen=max(1, window))

    def grow(self, order: int) -> None:
        """A bigger model: more context orders (kept counts stay; new orders start empty)."""
        while self.order < order:
            self.tables.append({})
            self.order += 1

    def _cost_and_learn(self, text: str) -> float:
        bits = 0.0
        order = self.order
        tables = self.tables
        log2 = math.log2
        hist = ""
        for ch in text:
            # Interpolated Witten-Bell from order 0 up: p_k = (n_k(c) + u_k p_{k-1}) / (N_k + u_k)
            p = 2.0 ** -BASE_BITS
            top = min(order, len(hist))
            for k in range(top + 1):
                ctx = hist[len(hist) - k:] if k else ""
                counts = tables[k].get(ctx)
                if counts is None:
                    continue
                total = counts["\0t"]
                distinct = len(counts) - 1
                p = (counts.get(ch, 0) + distinct * p) / (total + distinct)
            bits -= log2(p)
            for k in range(top + 1):
                ctx = hist[len(hist) - k:] if k else ""
                counts = tables[k].get(ctx)
                if counts is None:
                    counts = tables[k][ctx] = {"\0t": 0}
                counts[ch] = counts.get(ch, 0) + 1
                counts["\0t"] += 1
            hist = (hist + ch)[-order:] if order else ""
        return bits

    def observe(self, text: str) -> float:
        """Bits per character of `text` before learning it; then learns it. 0.0 for no text."""
        text = text[: self.max_chars]
        if not text:
            return 0.0
        bits = self._cost_and_learn(text)
        self.pages += 1
        self.chars += len(text)
        self.bits += bits
        self._recent.append((bits, len(text)))
        return bits / len(text)

    @property
    def bits_per_char(self) -> float:
        """Bits per character over the last `window` pages (the gauge the runner plots)."""
        n = sum(c for _, c in self._recent)
        return sum(b for b, _ in self._recent) / n if n else 0.0

    @property
    def contexts(self) -> int:
        """How many contexts the model holds (its size)."""
        return sum(len(t) for t in self.tables)
