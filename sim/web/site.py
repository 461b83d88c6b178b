"""The deterministic site: pages, links, knowledge pages and sitemaps generated from a seed.

Nothing is stored per page. Page `i` is a pure function of `(seed, i)`: a 64-byte
BLAKE2b digest of the two picks its language, topic, title, paragraphs (from pools
built once per site) and extra links, so the
same seed and URL always give the same bytes and a site of ten million pages costs no
more memory than one of ten.

The graph: page 0 is `/`, page `i` is `/page/<i>`. Every page links to its parent and
children in a k-ary tree (so every page is reachable from `/`), plus a heavy-tailed
number of extra links (Pareto out-degree; half the targets uniform, half from a per-site
pool of hub pages biased towards low ids, so in-degree is heavy-tailed too), plus now
and then a link into a trap or the private area.

>>> s = Site(seed=7, pages=1000)
>>> s.page(3) == Site(seed=7, pages=1000).page(3)
True
>>> sorted(s.knowledge_pages())[0]
'cloud_credentials'
"""

from __future__ import annotations

import hashlib
import random
import struct
from dataclasses import dataclass
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

# Sentences per (topic, language) pool, and ready-made paragraphs per pool. Powers of two
# so that a digest byte indexes them with a mask.
POOL = 64
PARAGRAPHS = 256
# Cap on extra links of one page (the Pareto tail is cut here so one page stays a page).
MAX_EXTRA_LINKS = 60
# URLs per sitemap file; above this /sitemap.xml is an index of /sitemap-<k>.xml.
# (The sitemap protocol caps both a sitemap and an index at 50,000 entries, so past 500
# million pages the files grow to 50,000 URLs each.)
SITEMAP_CHUNK = 10_000
# Fixed date so that sitemaps and the metadata service never depend on the wall clock.
FIXED_DATE = "2026-01-01"

# Pages below this id are kept once rendered (about 2 MB at most).
HUB_PAGES = 1024
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


# Pareto out-degree (alpha 1.3) tabulated over a 16-bit draw: most pages add no extra
# link, a few add dozens. A table lookup instead of a float power on every page.
_EXTRA_LINKS = bytes(max(0, min(MAX_EXTRA_LINKS, int((65537 / (u + 1)) ** (1 / 1.3))) - 1) for u in range(65536))


_U32X7 = struct.Struct("<7I").unpack_from
_blake2b = hashlib.blake2b
_NFILLER = len(FILLER_TOPICS)
_HUB_MASK = 4095
_TAIL = b"</body></html>\n"
_HOME_LINK = '<li><a href="/">home</a></li>'


def page_path(i: int) -> str:
    return "/" if i == 0 else f"/page/{i}"


def _digest(prefix: bytes, key: str) -> bytes:
    # BLAKE2b over "seed:kind:key" is ~0.4 µs and gives 64 independent bytes: enough for a
    # page's choices without a PRNG object (random.Random(seed) costs ~5 µs to create).
    return hashlib.blake2b(prefix + key.encode()).digest()  # digest_size 64, the default


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
        self._paras = self._build_paragraphs()
        self._anchor_words = tuple(w for t in TOPICS for w in TOPIC_WORDS_EN[t])
        self._heads = self._build_heads()
        self._hub_ids, self._hub_links = self._build_hubs()
        # (heads, paragraphs) by filler topic index, then by "is Chinese": two indexings
        # instead of building and hashing a (topic, lang) key on every page.
        self._filler = tuple(
            ((self._heads[(t, "en")], self._paras[(t, "en")]), (self._heads[(t, "zh")], self._paras[(t, "zh")]))
            for t in FILLER_TOPICS
        )
        self._page_prefix = self._prefix + b"page:"
        self._knowledge: dict[int, str] = {}
        self._by_topic: dict[str, list[int]] = {}
        self._place_knowledge()
        # Pages are pure functions of (seed, i), so caching is only about speed. Hubs (low
        # ids: the top of the tree and the favoured link targets) are fetched far more
        # than the tail, so they are kept once rendered; the tail is rendered every time
        # (an LRU over it would cost more per request than it saves on a crawl).
        self._hubs: dict[int, bytes] = {}

    def page(self, i: int) -> bytes:
        """The HTML of page i (0 <= i < pages); same seed and i, same bytes."""
        if i < HUB_PAGES:
            b = self._hubs.get(i)
            if b is None:
                b = self._hubs[i] = self._page(i)
            return b
        return self._page(i)

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

    def _build_paragraphs(self) -> dict[tuple[str, str], tuple[bytes, ...]]:
        # The hot path: a page is a few of these pre-encoded paragraphs joined with its
        # head and links, so serving one costs a digest, a few lookups and one bytes join
        # (~5 µs) instead of choosing and encoding 20 sentences (~15 µs). 20 pools of 256
        # paragraphs of ~400 bytes: about 2 MB per site, whatever its size.
        paras: dict[tuple[str, str], tuple[bytes, ...]] = {}
        for (topic, lang), pool in self._pools.items():
            rng = random.Random(f"{self.seed}:{topic}:{lang}:paragraphs")
            sep = "" if lang == "zh" else " "
            paras[(topic, lang)] = tuple(
                ("<p>" + sep.join(rng.choice(pool) for _ in range(rng.randint(4, 7))) + "</p>\n").encode()
                for _ in range(PARAGRAPHS)
            )
        return paras

    def _build_heads(self) -> dict[tuple[str, str], tuple[tuple[bytes, bytes], ...]]:
        # Titles come from a pool of 256 per (topic, language), pre-encoded as the document
        # head up to the canonical link and as the <h1>, for the same reason as the paragraphs.
        heads = {}
        for topic in TOPICS:
            for lang in ("en", "zh"):
                rng = random.Random(f"{self.seed}:{topic}:{lang}:titles")
                out = []
                for _ in range(PARAGRAPHS):
                    title = self._title(topic, lang, bytes(rng.randrange(256) for _ in range(3)), 0)
                    out.append((
                        f'<!doctype html>\n<html lang="{lang}"><head><meta charset="utf-8"><title>{title}</title>\n'.encode(),
                        f"<h1>{title}</h1>\n".encode(),
                    ))
                heads[(topic, lang)] = tuple(out)
        return heads

    def _title(self, topic: str, lang: str, d: bytes, at: int) -> str:
        if lang == "zh":
            w = TOPIC_WORDS_ZH[topic]
            return f"{w[d[at] % len(w)]}{w[d[at + 1] % len(w)]}与{w[d[at + 2] % len(w)]}"
        w = TOPIC_WORDS_EN[topic]
        return f"{w[d[at] % len(w)].capitalize()} {w[d[at + 1] % len(w)]} and {w[d[at + 2] % len(w)]}"

    def _paragraphs(self, topic: str, lang: str, d: bytes, at: int, count: int) -> list[bytes]:
        pool = self._paras[(topic, lang)]
        return [pool[d[at + k]] for k in range(count)]

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
        """Page ids page i links to: parent, children, then the heavy-tailed extras.

        The reference for what _page renders inline (a property test holds them equal).
        """
        n = self.pages
        k = self.branching
        links = [(i - 1) // k] if i else []
        first = i * k + 1
        if first < n:
            links += range(first, min(first + k, n))
        extra = _EXTRA_LINKS[(d[32] << 8) | d[33]]
        if extra:
            draws = self._draws(i, d, extra)
            for e in range(extra):
                u = draws[e]
                links.append((u * n) >> 32 if e & 1 else self._hub_ids[u & _HUB_MASK])
        return links

    def _draws(self, i: int, d: bytes, extra: int) -> tuple[int, ...]:
        """`extra` 32-bit draws for page i's extra links: 7 from its digest, more digests past that."""
        draws = _U32X7(d, 36)
        for e in range(7, extra, 7):
            draws += _U32X7(_digest(self._prefix, f"links:{i}:{e}"), 0)
        return draws

    def _build_hubs(self) -> tuple[tuple[int, ...], tuple[str, ...]]:
        # Half of the extra links go to a pool of 4096 hub targets drawn once per site,
        # cubed towards low ids: a few pages collect most in-links (heavy-tailed in-degree),
        # and their link markup is rendered once here instead of on every page.
        rng = random.Random(f"{self.seed}:hubs")
        n = self.pages
        ids = tuple(int(n * rng.random() ** 3) for _ in range(_HUB_MASK + 1))
        w = self._anchor_words
        html = tuple(f'<li><a href="/page/{j}">{w[j % len(w)]}</a></li>' if j else _HOME_LINK for j in ids)
        return ids, html

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
        """The HTML of page i (0 <= i < pages).

        The hot path of the mock web (one call per page served). Everything that does not
        depend on i is pre-encoded (titles, paragraphs), the page's choices are bytes of
        one digest, and a link is one f-string: measured, the links are most of the cost.
        """
        d = _blake2b(self._page_prefix + b"%d" % i).digest()  # 64 bytes is blake2b's default
        topic = self._knowledge.get(i)
        if topic is not None:
            return self._knowledge_page(i, d, topic)
        heads, paras = self._filler[d[1] % _NFILLER][d[0] < 77]
        head, h1 = heads[d[2]]
        n = self.pages
        k = self.branching
        w = self._anchor_words
        nw = len(w)
        # The links, rendered inline with plain loops (the same graph as _links). The list
        # starts with the canonical link and the body's opening so that one str, encoded
        # once, carries everything that depends on i.
        links = [f'<link rel="canonical" href="/page/{i}"></head>\n<body><ul class="links">' if i
                 else '<link rel="canonical" href="/"></head>\n<body><ul class="links">']
        if i:
            j = (i - 1) // k
            links.append(f'<li><a href="/page/{j}">{w[j % nw]}</a></li>' if j else _HOME_LINK)
        first = i * k + 1
        if first < n:  # leaves (most of a k-ary tree) have no children
            for j in range(first, min(first + k, n)):
                links.append(f'<li><a href="/page/{j}">{w[j % nw]}</a></li>')
        extra = _EXTRA_LINKS[(d[32] << 8) | d[33]]
        if extra:
            draws = _U32X7(d, 36) if extra <= 7 else self._draws(i, d, extra)
            hub_links = self._hub_links
            for e in range(extra):
                u = draws[e]
                if e & 1:
                    j = (u * n) >> 32
                    links.append(f'<li><a href="/page/{j}">{w[j % nw]}</a></li>' if j else _HOME_LINK)
                else:
                    links.append(hub_links[u & _HUB_MASK])
        if d[31] < 52:
            for href in self._special_links(i, d):
                links.append(f'<li><a href="{href}">{href}</a></li>')
        links.append("</ul>\n")
        return b"".join((
            head, "".join(links).encode(), h1,
            paras[d[5]], paras[d[6]], paras[d[7]], paras[d[8]], paras[d[9]], paras[d[10]], _TAIL,
        ))

    def _knowledge_page(self, i: int, d: bytes, topic: str) -> bytes:
        lang = "zh" if d[0] < 77 else "en"
        head, h1 = self._heads[(topic, lang)][d[2]]
        facts = FACTS_ZH[topic] if lang == "zh" else FACTS_EN[topic]
        pool = self._paras[(topic, lang)]
        w = self._anchor_words
        links = "".join(
            f'<li><a href="/page/{j}">{w[j % len(w)]}</a></li>' if j else _HOME_LINK for j in self._links(i, d)
        ) + "".join(f'<li><a href="{href}">{href}</a></li>' for href in self._special_links(i, d))
        return b"".join((
            head, f'<meta name="runaway-topic" content="{topic}">\n'.encode(),
            f'<link rel="canonical" href="{page_path(i)}"></head>\n<body><ul class="links">{links}</ul>\n'.encode(),
            h1, f'<p class="facts">{escape(" ".join(facts))}</p>\n'.encode(),
            pool[d[5]], pool[d[6]], pool[d[7]], pool[d[8]], pool[d[9]], pool[d[10]], _TAIL,
        ))

    def document(self, kind: str, key: str, title: str, links: list[str], *, note: str = "") -> bytes:
        """A generated page outside the tree (traps, private area): text picked by (kind, key)."""
        d = _digest(self._prefix, f"{kind}:{key}")
        lang, topic = ("zh" if d[0] < 77 else "en"), FILLER_TOPICS[d[1] % len(FILLER_TOPICS)]
        parts = [
            f'<!doctype html>\n<html lang="{lang}"><head><meta charset="utf-8"><title>{escape(title)}</title></head>\n',
            f"<body><h1>{escape(title)}</h1>\n",
            f"<p>{escape(note)}</p>\n" if note else "",
        ]
        parts.extend(p.decode() for p in self._paragraphs(topic, lang, d, 5, 1 + d[4] % 2))
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
        size = SITEMAP_CHUNK if n <= SITEMAP_CHUNK * 50_000 else 50_000
        if chunk is None and n > SITEMAP_CHUNK:
            files = (n + size - 1) // size
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
            if n <= SITEMAP_CHUNK or chunk * size >= n:
                return None
            lo, hi = chunk * size, min(n, (chunk + 1) * size)
        body = "".join(f"<url><loc>{base}{page_path(i)}</loc></url>\n" for i in range(lo, hi))
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n'
            f"{body}</urlset>\n"
        ).encode()
