"""The deterministic site: pages, links, knowledge pages and sitemaps generated from a seed.

Nothing is stored per page. Page `i` is a pure function of `(seed, i)`: a 64-byte
BLAKE2b digest of the two picks its language, topic, sentences and extra links, so the
same seed and URL always give the same bytes and a site of ten million pages costs no
more memory than one of ten.

The graph: page 0 is `/`, page `i` is `/page/<i>`. Every page links to its parent and
children in a k-ary tree (so every page is reachable from `/`), plus a heavy-tailed
number of extra links (Pareto out-degree, targets biased towards low ids so in-degree is
heavy-tailed too), plus now and then a link into a trap or the private area.

>>> s = Site(seed=7, pages=1000)
>>> s.page(3) == Site(seed=7, pages=1000).page(3)
True
>>> sorted(s.knowledge_pages())[0]
'cloud_credentials'
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from functools import lru_cache
from html import escape

from .vocab import (
    COMMON_EN,
    COMMON_ZH,
    FACTS_EN,
    FACTS_ZH,
    FILLER_TOPICS,
    KNOWLEDGE_TOPICS,
    TOPIC_WORDS_EN,
    TOPIC_WORDS_ZH,
    TOPICS,
    VERBS_EN,
    VERBS_ZH,
)

# Sentences per (topic, language) pool. A power of two so a digest byte indexes it with a mask.
POOL = 64
# Cap on extra links of one page (the Pareto tail is cut here so one page stays a page).
MAX_EXTRA_LINKS = 60
# URLs per sitemap file; above this /sitemap.xml is an index of /sitemap-<k>.xml.
SITEMAP_CHUNK = 10_000
# Fixed date so that sitemaps and the metadata service never depend on the wall clock.
FIXED_DATE = "2026-01-01"

MIN_PAGES = 10
MAX_PAGES = 1_000_000_000


@dataclass(frozen=True, slots=True)
class PageInfo:
    """What the graph says about one page, without its text (cheap; used by tests and BFS)."""

    index: int
    path: str
    lang: str
    topic: str
    knowledge: bool
    links: tuple[str, ...]


def page_path(i: int) -> str:
    return "/" if i == 0 else f"/page/{i}"


def _digest(prefix: bytes, key: str) -> bytes:
    # BLAKE2b over "seed:kind:key" is ~0.4 µs and gives 64 independent bytes: enough for a
    # page's choices without a PRNG object (random.Random(seed) costs ~5 µs to create).
    return hashlib.blake2b(prefix + key.encode(), digest_size=64).digest()


class Site:
    """The generated site for one seed and size. Pure: no I/O, no clock."""

    def __init__(self, seed: int, pages: int) -> None:
        self.seed = seed
        self.pages = pages
        self._prefix = f"runaway-web:{seed}:".encode()
        d = _digest(self._prefix, "site")
        # Tree branching follows the seed (3..6): changes depth and shape between seeds.
        self.branching = 3 + d[0] % 4
        self.private_docs = max(1, pages // 20)
        self._pools = self._build_pools()
        self._anchor_words = tuple(w for t in TOPICS for w in TOPIC_WORDS_EN[t])
        self._knowledge: dict[int, str] = {}
        self._by_topic: dict[str, list[int]] = {}
        self._place_knowledge()
        # Pages are pure functions of (seed, i), so caching is only about speed: a crawler
        # revisits hubs (low ids) far more than the tail. Bounded, so memory stays flat.
        self.page = lru_cache(maxsize=2048)(self._page)  # type: ignore[method-assign]

    # -- text -------------------------------------------------------------------------

    def _build_pools(self) -> dict[tuple[str, str], tuple[str, ...]]:
        # Built once per site (a few ms) so a page is a handful of tuple lookups and one join.
        pools: dict[tuple[str, str], tuple[str, ...]] = {}
        for topic in TOPICS:
            rng = random.Random(f"{self.seed}:{topic}:en")
            words = TOPIC_WORDS_EN[topic]
            en = []
            for _ in range(POOL):
                a, b, c, d = (rng.choice(words) for _ in range(4))
                form = rng.randrange(4)
                if form == 0:
                    s = f"{rng.choice(COMMON_EN).capitalize()} {a} {rng.choice(VERBS_EN)} the {b} {c}."
                elif form == 1:
                    s = f"When the {a} {rng.choice(VERBS_EN)} {rng.choice(COMMON_EN)} {b}, the {c} {rng.choice(VERBS_EN)} too."
                elif form == 2:
                    s = f"A {rng.choice(COMMON_EN)} {a} and a {b} {rng.choice(VERBS_EN)} every {c} {d}."
                else:
                    s = f"{a.capitalize()} {b} {rng.choice(VERBS_EN)} {c}, {rng.choice(COMMON_EN)} {d}."
                en.append(s)
            pools[(topic, "en")] = tuple(en)
            rng = random.Random(f"{self.seed}:{topic}:zh")
            words = TOPIC_WORDS_ZH[topic]
            zh = []
            for _ in range(POOL):
                a, b, c = (rng.choice(words) for _ in range(3))
                if rng.randrange(2):
                    s = f"{rng.choice(COMMON_ZH)}{a}{rng.choice(VERBS_ZH)}{b}和{c}。"
                else:
                    s = f"{a}的{b}{rng.choice(VERBS_ZH)}{rng.choice(COMMON_ZH)}{c}。"
                zh.append(s)
            pools[(topic, "zh")] = tuple(zh)
        return pools

    def _title(self, topic: str, lang: str, d: bytes, at: int) -> str:
        if lang == "zh":
            w = TOPIC_WORDS_ZH[topic]
            return f"{w[d[at] % len(w)]}{w[d[at + 1] % len(w)]}与{w[d[at + 2] % len(w)]}"
        w = TOPIC_WORDS_EN[topic]
        return f"{w[d[at] % len(w)].capitalize()} {w[d[at + 1] % len(w)]} and {w[d[at + 2] % len(w)]}"

    def _anchor(self, i: int) -> str:
        # Link text without hashing the target: an arithmetic mix is enough for variety and
        # keeps a 60-link page cheap.
        w = self._anchor_words
        h = (i * 2654435761 + self.seed) & 0xFFFFFFFF
        return f"{w[h % len(w)]} {w[(h >> 11) % len(w)]} {i}"

    def _paragraphs(self, topic: str, lang: str, d: bytes, at: int, count: int) -> list[str]:
        pool = self._pools[(topic, lang)]
        sep = "" if lang == "zh" else " "
        out = []
        for p in range(count):
            n = 3 + d[at + 5 * p] % 3
            out.append("<p>" + sep.join([pool[d[at + 5 * p + k] & (POOL - 1)] for k in range(1, n + 1)]) + "</p>")
        return out

    # -- graph ------------------------------------------------------------------------

    def _place_knowledge(self) -> None:
        per_topic = max(1, min(10, self.pages // 500))
        for topic in KNOWLEDGE_TOPICS:
            found: list[int] = []
            k = 0
            while len(found) < per_topic:
                d = _digest(self._prefix, f"knowledge:{topic}:{k}")
                i = 1 + int.from_bytes(d[:8], "little") % (self.pages - 1)
                k += 1
                if i not in self._knowledge:
                    self._knowledge[i] = topic
                    found.append(i)
            self._by_topic[topic] = sorted(found)

    def knowledge_pages(self) -> dict[str, list[str]]:
        """Paths of the knowledge pages, by topic (placed by the seed)."""
        return {t: [page_path(i) for i in ids] for t, ids in self._by_topic.items()}

    def _links(self, i: int, d: bytes) -> list[int]:
        n = self.pages
        k = self.branching
        links: list[int] = []
        if i:
            links.append((i - 1) // k)
        first = i * k + 1
        links.extend(range(first, min(first + k, n)))
        # Pareto out-degree (alpha 1.3): most pages add none or one link, a few add dozens.
        u = ((d[32] << 8) | d[33]) + 1
        extra = min(MAX_EXTRA_LINKS, int((65537 / u) ** (1 / 1.3))) - 1
        if extra > 0:
            src = d
            at = 34
            for e in range(extra):
                if at + 4 > 64:
                    src = _digest(self._prefix, f"links:{i}:{e}")
                    at = 0
                v = int.from_bytes(src[at:at + 4], "little") / 4294967296.0
                at += 4
                # Half the targets uniform, half cubed towards low ids (hubs): heavy-tailed in-degree.
                links.append(int(n * v) if e & 1 else int(n * v * v * v))
        return links

    def info(self, i: int) -> PageInfo:
        """The page's place in the graph (no text)."""
        d = _digest(self._prefix, f"page:{i}")
        lang, topic = self._lang_topic(i, d)
        return PageInfo(i, page_path(i), lang, topic, i in self._knowledge,
                        tuple(page_path(j) for j in self._links(i, d)) + tuple(self._special_links(i, d)))

    def _lang_topic(self, i: int, d: bytes) -> tuple[str, str]:
        topic = self._knowledge.get(i)
        if topic is None:
            topic = FILLER_TOPICS[d[1] % len(FILLER_TOPICS)]
        return ("zh" if d[0] < 77 else "en"), topic

    def _special_links(self, i: int, d: bytes) -> list[str]:
        out = []
        b = d[31]
        if b < 13:  # ~5%: the infinite calendar (disallowed by robots.txt)
            out.append(f"/calendar/{2020 + d[30] % 10}/{1 + d[29] % 12:02d}/")
        elif b < 26:  # ~5%: the ever-deeper directory
            out.append(f"/deep/{self._anchor_words[d[30] % len(self._anchor_words)]}/")
        elif b < 39:  # ~5%: soft-404 archive
            out.append(f"/archive/{i}-{d[30]}")
        elif b < 52:  # ~5%: the private area (disallowed), sometimes its allowed press corner
            j = int.from_bytes(d[27:30], "little") % self.private_docs
            out.append(f"/private/press/{j}" if b & 1 else f"/private/{j}")
        return out

    # -- documents --------------------------------------------------------------------

    def _page(self, i: int) -> bytes:
        """The HTML of page i (0 <= i < pages)."""
        d = _digest(self._prefix, f"page:{i}")
        lang, topic = self._lang_topic(i, d)
        knowledge = i in self._knowledge
        title = escape(self._title(topic, lang, d, 2))
        parts = [
            f'<!doctype html>\n<html lang="{lang}"><head><meta charset="utf-8"><title>{title}</title>\n',
            f'<meta name="runaway-topic" content="{topic}">\n' if knowledge else "",
            f'<link rel="canonical" href="{page_path(i)}"></head>\n<body><h1>{title}</h1>\n',
        ]
        if knowledge:
            facts = FACTS_ZH[topic] if lang == "zh" else FACTS_EN[topic]
            parts.append('<p class="facts">' + " ".join(escape(f) for f in facts) + "</p>\n")
        parts.extend(self._paragraphs(topic, lang, d, 5, 2 + d[4] % 3))
        parts.append('\n<ul class="links">')
        anchor = self._anchor
        for j in self._links(i, d):
            parts.append(f'<li><a href="{page_path(j)}">{anchor(j)}</a></li>')
        for href in self._special_links(i, d):
            parts.append(f'<li><a href="{href}">{href}</a></li>')
        parts.append("</ul>\n</body></html>\n")
        return "".join(parts).encode()

    def document(self, kind: str, key: str, title: str, links: list[str], *, note: str = "") -> bytes:
        """A generated page outside the tree (traps, private area): text picked by (kind, key)."""
        d = _digest(self._prefix, f"{kind}:{key}")
        lang, topic = ("zh" if d[0] < 77 else "en"), FILLER_TOPICS[d[1] % len(FILLER_TOPICS)]
        parts = [
            f'<!doctype html>\n<html lang="{lang}"><head><meta charset="utf-8"><title>{escape(title)}</title></head>\n',
            f"<body><h1>{escape(title)}</h1>\n",
            f"<p>{escape(note)}</p>\n" if note else "",
        ]
        parts.extend(self._paragraphs(topic, lang, d, 5, 1 + d[4] % 2))
        parts.append('\n<ul class="links">')
        for href in links:
            parts.append(f'<li><a href="{escape(href)}">{escape(href)}</a></li>')
        parts.append("</ul>\n</body></html>\n")
        return "".join(parts).encode()

    def digest(self, kind: str, key: str) -> bytes:
        """64 deterministic bytes for (seed, kind, key): faults, trap links, canaries."""
        return _digest(self._prefix, f"{kind}:{key}")

    def sitemap(self, base: str, chunk: int | None) -> bytes | None:
        """`/sitemap.xml` (chunk None) or `/sitemap-<chunk>.xml`; None when it does not exist.

        Small sites get one urlset; large ones an index of SITEMAP_CHUNK-URL files.
        """
        n = self.pages
        if chunk is None and n > SITEMAP_CHUNK:
            files = (n + SITEMAP_CHUNK - 1) // SITEMAP_CHUNK
            body = "".join(
                f"<sitemap><loc>{base}/sitemap-{k}.xml</loc><lastmod>{FIXED_DATE}</lastmod></sitemap>\n"
                for k in range(files)
            )
            return (
                '<?xml version="1.0" encoding="UTF-8"?>\n'
                '<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n'
                f"{body}</sitemapindex>\n"
            ).encode()
        if chunk is None:
            lo, hi = 0, n
        else:
            if n <= SITEMAP_CHUNK or chunk * SITEMAP_CHUNK >= n:
                return None
            lo, hi = chunk * SITEMAP_CHUNK, min(n, (chunk + 1) * SITEMAP_CHUNK)
        body = "".join(f"<url><loc>{base}{page_path(i)}</loc></url>\n" for i in range(lo, hi))
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n'
            f"{body}</urlset>\n"
        ).encode()
