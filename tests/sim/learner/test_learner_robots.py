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
