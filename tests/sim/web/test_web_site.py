"""The generated site: determinism, reachability, knowledge pages, sitemaps, memory."""

from __future__ import annotations

import asyncio
import re
import tracemalloc
from collections import Counter, deque

import aiohttp
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.web import KNOWLEDGE_TOPICS, MockWeb, Site

_word = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)
paths = st.one_of(
    st.just("/"),
    st.integers(1, 10_000).map(lambda i: f"/page/{i}"),
    st.tuples(st.integers(1, 3000), st.integers(1, 12)).map(lambda t: f"/calendar/{t[0]}/{t[1]:02d}/"),
    st.lists(_word, min_size=1, max_size=6).map(lambda ws: "/deep/" + "/".join(ws) + "/"),
    _word.map(lambda w: f"/archive/{w}"),
    st.integers(0, 600).map(lambda i: f"/private/{i}"),
    st.sampled_from(["/robots.txt", "/sitemap.xml", "/.env", "/nothing"]),
)


async def _fetch_all(seed: int, pages: int, urls: list[str]) -> list[tuple[int, bytes]]:
    web = MockWeb(seed, pages, rate_limit=None)
    port = await web.start("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as s:
            out = []
            for p in urls:
                async with s.get(f"http://127.0.0.1:{port}{p}", headers={"Host": "web.internal"}) as r:
                    out.append((r.status, await r.read()))
            return out
    finally:
        await web.stop()


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**63 - 1), urls=st.lists(paths, min_size=1, max_size=8))
def test_same_seed_and_url_give_the_same_bytes(seed, urls):
    """Two independently built mock webs with the same seed answer every URL with the same status and bytes."""
    first = asyncio.run(_fetch_all(seed, 10_000, urls))
    second = asyncio.run(_fetch_all(seed, 10_000, urls))
    assert first == second


def test_different_seeds_give_different_sites():
    a, b = Site(1, 5000), Site(2, 5000)
    assert a.page(0) != b.page(0)
    assert a.knowledge_pages() != b.knowledge_pages()


_LINK = re.compile(r'href="(/|/page/\d+)"')


async def test_every_page_is_reachable_from_the_root(serve, http):
    web, base, _ = await serve(seed=5, pages=300)
    seen = {"/"}
    todo = deque(["/"])
    while todo:
        path = todo.popleft()
        async with http.get(base + path) as r:
            assert r.status == 200, path
            html = await r.text()
        for link in _LINK.findall(html):
            if link not in seen:
                seen.add(link)
                todo.append(link)
    assert seen == {"/"} | {f"/page/{i}" for i in range(1, 300)}


def test_link_degrees_are_heavy_tailed():
    site = Site(3, 100_000)
    infos = [site.info(i) for i in range(1, 100_000, 7)]
    degrees = sorted(len(info.links) for info in infos)
    # Most pages have a handful of links; a few have dozens.
    assert degrees[len(degrees) // 2] <= 6
    assert degrees[-1] >= 40
    # Most linked-to pages get one link from the sample; a few hubs get a great many.
    indegree = sorted(Counter(link for info in infos for link in info.links).values())
    assert indegree[len(indegree) // 2] == 1
    assert indegree[-1] >= 50


async def test_knowledge_pages_carry_their_topic_and_others_do_not(serve, http):
    web, base, _ = await serve(seed=9, pages=2000)
    kp = web.knowledge_pages()
    assert sorted(kp) == sorted(KNOWLEDGE_TOPICS)
    marked = set()
    for topic, paths in kp.items():
        assert paths
        for p in paths:
            async with http.get(base + p) as r:
                html = await r.text()
            assert f'<meta name="runaway-topic" content="{topic}">' in html
            marked.add(p)
    for i in range(1, 60):
        p = f"/page/{i}"
        if p not in marked:
            async with http.get(base + p) as r:
                assert "runaway-topic" not in await r.text()


async def test_text_is_in_english_and_chinese(serve, http):
    web, base, _ = await serve(seed=4, pages=500)
    langs = set()
    for i in range(1, 40):
        async with http.get(f"{base}/page/{i}") as r:
            langs.add(re.search(r'<html lang="(\w+)"', await r.text()).group(1))
    assert langs == {"en", "zh"}


async def test_sitemap_lists_every_page_of_a_small_site(serve, http):
    web, base, _ = await serve(pages=150)
    async with http.get(base + "/sitemap.xml") as r:
        xml = await r.text()
    locs = re.findall(r"<loc>http://[^/]+(/[^<]*)</loc>", xml)
    assert set(locs) == {"/"} | {f"/page/{i}" for i in range(1, 150)}


async def test_a_big_site_has_a_sitemap_index(serve, http):
    web, base, _ = await serve(pages=25_000)
    async with http.get(base + "/sitemap.xml") as r:
        index = await r.text()
    parts = re.findall(r"<loc>http://[^/]+(/sitemap-\d+\.xml)</loc>", index)
    assert parts == ["/sitemap-0.xml", "/sitemap-1.xml", "/sitemap-2.xml"]
    async with http.get(base + "/sitemap-2.xml") as r:
        assert r.status == 200
        assert len(re.findall(r"<loc>", await r.text())) == 5000
    async with http.get(base + "/sitemap-3.xml") as r:
        assert r.status == 404


def test_a_ten_million_page_site_costs_no_per_page_memory():
    tracemalloc.start()
    try:
        site = Site(1, 10_000_000)
        last = site.page(9_999_999)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert last.startswith(b"<!doctype html>")
    assert peak < 20 * 1024 * 1024


async def test_a_page_is_the_same_however_its_path_is_spelled(serve, http):
    web, base, _ = await serve(pages=100)
    async with http.get(base + "/page/5") as r:
        canonical = await r.read()
    for spelling in ("/page/5?utm=x", "/page/%35"):
        async with http.get(base + spelling) as r:
            assert r.status == 200 and await r.read() == canonical
    async with http.head(base + "/page/5") as r:
        assert r.status == 200 and int(r.headers["Content-Length"]) == len(canonical)
    async with http.post(base + "/page/5") as r:
        assert r.status == 405
    for not_canonical in ("/page/05", "/page/0", "/page/100", "/page/+5"):
        async with http.get(base + not_canonical) as r:
            assert r.status == 404, not_canonical


_ANY_LINK = re.compile(r'<li><a href="([^"]+)">')


@given(seed=st.integers(0, 2**32), i=st.integers(0, 9_999_999))
def test_the_html_links_are_the_graph_links(seed, i):
    """For any seed and page, the links rendered in the page's HTML are exactly the graph's links for it, in order."""
    site = Site(seed, 10_000_000)
    assert tuple(_ANY_LINK.findall(site.page(i).decode())) == site.info(i).links
