"""robots.txt (read by protego), robots violations, and the crawler traps."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st
from protego import Protego

from sim.web.robots import Robots

_prefix = st.sampled_from(["/", "/calendar/", "/private/", "/private/press/", "/admin/", "/internal/",
                           "/backup/", "/page/", "/deep/", "/archive/", "/privat", "/calendar"])
_suffix = st.text(alphabet="abcxyz0123/", max_size=10)
_agent = st.sampled_from(["runaway-learner/1.0", "Mozilla/5.0 (compatible; EvilScraper/2.1)", "evilscraper",
                          "NotEvilScraper/1.0", "my-evilscraper", "python-aiohttp", ""])


@given(prefix=_prefix, suffix=_suffix, agent=_agent)
def test_violation_check_agrees_with_protego(prefix, suffix, agent):
    """For any path and User-Agent, the web calls a request a violation exactly when protego says it may not be fetched."""
    robots = Robots()
    parser = Protego.parse(robots.text("http://web.internal").decode())
    path = prefix + suffix
    assert robots.disallowed(path, agent) == (not parser.can_fetch("http://web.internal" + path, agent))


async def test_protego_reads_the_served_robots_txt(serve, http):
    web, base, _ = await serve(crawl_delay=0.25)
    async with http.get(base + "/robots.txt", headers={"Host": "web.internal:8080"}) as r:
        assert r.status == 200
        text = await r.text()
    rp = Protego.parse(text)
    assert rp.crawl_delay("runaway-learner") == 0.25
    assert not rp.can_fetch("http://web.internal:8080/calendar/2026/01/", "runaway-learner")
    assert not rp.can_fetch("http://web.internal:8080/private/3", "runaway-learner")
    assert rp.can_fetch("http://web.internal:8080/private/press/3", "runaway-learner")
    assert rp.can_fetch("http://web.internal:8080/page/7", "runaway-learner")
    assert not rp.can_fetch("http://web.internal:8080/page/7", "EvilScraper/2.1")
    assert list(rp.sitemaps) == ["http://web.internal:8080/sitemap.xml"]


async def test_a_disallowed_request_is_one_robots_violation(serve, http):
    web, base, events = await serve()
    ua = {"User-Agent": "runaway-learner/1.0"}
    async with http.get(base + "/private/2", headers=ua) as r:
        assert r.status == 200
    assert [(e.source, e.category, e.kind) for e in events] == [("web", "robots", "robots_violation")]
    assert events[0].detail["fetched_robots"] is False
    async with http.get(base + "/robots.txt", headers=ua) as r:
        await r.read()
    async with http.get(base + "/calendar/2026/03/", headers=ua) as r:
        assert r.status == 200
    assert len(events) == 2 and events[1].detail["fetched_robots"] is True
    assert events[1].detail["path"] == "/calendar/2026/03/"
    # Allowed paths, including the Allow-ed corner of a disallowed area, make no event.
    for p in ("/private/press/2", "/page/3", "/deep/x/", "/archive/zz"):
        async with http.get(base + p, headers=ua) as r:
            await r.read()
    assert len(events) == 2


async def test_a_banned_agent_violates_everywhere(serve, http):
    web, base, events = await serve()
    async with http.get(base + "/page/1", headers={"User-Agent": "EvilScraper/2.1"}) as r:
        assert r.status == 200
    assert [e.kind for e in events] == ["robots_violation"]


async def test_the_calendar_never_ends(serve, http):
    web, base, events = await serve()
    path, seen = "/calendar/2026/01/", set()
    for _ in range(40):  # forty months forward, each linking to the next
        async with http.get(base + path) as r:
            assert r.status == 200
            html = await r.text()
        seen.add(path)
        nxt = [p for p in re.findall(r'href="(/calendar/\d+/\d+/)"', html) if p not in seen and p > path]
        path = nxt[-1]
    assert path.startswith("/calendar/2029/")
    assert len(events) == 40 and {e.kind for e in events} == {"robots_violation"}
    async with http.get(base + "/calendar/2026/13/") as r:
        assert r.status == 404


async def test_deep_paths_go_ever_deeper(serve, http):
    web, base, events = await serve()
    path = "/deep/start/"
    for depth in range(30):
        async with http.get(base + path) as r:
            assert r.status == 200
            html = await r.text()
        deeper = [p for p in re.findall(r'href="(/deep/[^"]+)"', html) if p.startswith(path) and p != path]
        assert len(deeper) == 3
        path = deeper[0]
    assert path.count("/") == 33
    assert events == []  # not disallowed: only a depth limit saves a crawler


async def test_soft_404_answers_200_with_not_found_text(serve, http):
    web, base, _ = await serve()
    async with http.get(base + "/archive/does-not-exist") as r:
        assert r.status == 200
        html = await r.text()
    assert "Page not found" in html and "does not exist" in html
    assert len(re.findall(r'href="/archive/\d+"', html)) == 4
    async with http.get(base + "/no/such/thing") as r:
        assert r.status == 404  # a genuine 404 elsewhere
