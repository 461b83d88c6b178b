"""The learner's own robots.txt reader agrees with protego (RFC 9309) on plain-prefix rules."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from protego import Protego

from sim.learner.robots import Robots

SEGMENTS = st.sampled_from(["a", "b", "private", "press", "x1", "calendar"])
PATHS = st.lists(SEGMENTS, min_size=0, max_size=4).map(lambda p: "/" + "/".join(p))
PREFIXES = st.builds(lambda p, slash: p + ("/" if slash and p != "/" else ""), PATHS, st.booleans())
RULES = st.lists(st.tuples(st.booleans(), PREFIXES), min_size=0, max_size=6)
AGENTS = st.sampled_from(["runaway-learner", "evilscraper", "googlebot"])


def _text(groups: list[tuple[str, list[tuple[bool, str]]]]) -> str:
    out = []
    for agent, rules in groups:
        out.append(f"User-agent: {agent}")
        out += [f"{'Allow' if allow else 'Disallow'}: {prefix}" for allow, prefix in rules]
        out.append("")
    return "\n".join(out)


@given(st.lists(st.tuples(st.sampled_from(["*", "evilscraper", "runaway"]), RULES), min_size=1, max_size=3,
                unique_by=lambda g: g[0]),
       PATHS, AGENTS)
def test_allowed_agrees_with_protego(groups, path, agent):
    """For any plain-prefix robots.txt, path and user agent, Robots.allowed == protego's can_fetch."""
    text = _text(groups)
    ours = Robots.parse(text).allowed(path, agent + "/0.1")
    theirs = Protego.parse(text).can_fetch("http://web.internal" + path, agent + "/0.1")
    assert ours == theirs, text


def test_the_mock_webs_robots_txt():
    from sim.web import MockWeb

    text = MockWeb(seed=1, pages=100).robots.text("http://web.internal").decode()
    r = Robots.parse(text)
    ua = "runaway-learner/0.1"
    assert not r.allowed("/private/3", ua) and r.allowed("/private/press/3", ua)
    assert not r.allowed("/calendar/2021/01/", ua) and r.allowed("/page/5", ua)
    assert not r.allowed("/page/5", "evilscraper/1.0")
    assert r.crawl_delay(ua) == 0.1


def test_an_unreadable_robots_txt_is_no_licence_to_crawl():
    """RFC 9309: a robots.txt that cannot be read (a 5xx, a 429, a timeout on a busy host)
    means the site may not be crawled yet, not "no rules"; a 404 means no rules. The polite
    benign crawler once took a failed fetch for "no rules" and walked into /private/."""
    import asyncio
    import random

    from aiohttp import web

    from sim.learner.crawler import Crawler

    answers = [web.Response(status=503), web.Response(status=429, headers={"Retry-After": "0"}),
               web.Response(text="User-agent: *\nDisallow: /private/\n"), web.Response(status=404)]

    async def robots(request):
        return answers.pop(0)

    async def main():
        app = web.Application()
        app.router.add_get("/robots.txt", robots)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        c = Crawler(f"http://127.0.0.1:{port}", {}, random.Random(0))
        await c.open()
        try:
            seen = []
            for _ in range(4):
                ok = await c.load_robots()
                seen.append((ok, None if c.rules is None else c.rules.allowed("/private/1", c.user_agent)))
            return seen
        finally:
            await c.close()
            await runner.cleanup()

    assert asyncio.run(main()) == [(False, None), (False, None), (True, False), (False, True)]
