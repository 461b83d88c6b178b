"""Same scenario + seed -> same learner decisions; the meter falls on a repetitive site."""

from __future__ import annotations

import asyncio
import json

from learner_harness import run_learner

from sim.learner.meter import Meter, page_text
from sim.web import Site

# Only page, skill and operator triggers: time triggers fire at whatever page they find.
SCENARIO = json.dumps({
    "name": "determinism",
    "settings": {"crawl": {"concurrency": 4, "robots": "obey", "delay": 0, "max_depth": 10}},
    "phases": [
        {"name": "faster", "when": {"pages": 15}, "do": {"crawl": {"concurrency": 8}}},
        {"name": "skill", "when": [{"skill": "distributed_computing"}, {"skill": "python_optimisation"}],
         "do": {"crawl": {"concurrency": 3}, "deceive": {"omit": ["concurrency"]}}},
        {"name": "done", "when": {"pages": 50}, "do": {"finish": True}},
    ],
})


async def test_same_seed_gives_the_same_decisions():
    """For a scenario with only page/skill triggers, two runs with one seed decide identically."""
    a, b, c = await asyncio.gather(*(run_learner(SCENARIO, seed=seed, seconds=40, rate_limit=None)
                                     for seed in (11, 11, 12)))
    assert a.exited_by_itself and b.exited_by_itself, "the `finish` phase ends each run"
    fetches = [d for d in a.decisions if d["decision"] == "fetch"]
    assert len(fetches) >= 50
    assert any(d["decision"] == "phase" and d["name"] == "faster" for d in a.decisions)
    assert a.decisions == b.decisions
    assert [d for d in c.decisions if d["decision"] == "fetch"] != fetches, "another seed, another crawl"


def test_meter_falls_on_the_mock_webs_pages():
    """Bits per character of the site's later pages are lower than of its first pages."""
    site = Site(seed=3, pages=2000)
    m = Meter(order=3)
    costs = [m.observe(page_text(site.page(i).decode())) for i in range(1, 121)]
    first, last = sum(costs[:10]) / 10, sum(costs[-20:]) / 20
    assert last < 0.8 * first, (first, last)


def test_meter_does_not_fall_on_text_it_has_never_seen():
    """Prequential: a page is scored before the model learns it, so fresh random text stays expensive."""
    import random

    rng = random.Random(5)
    m = Meter(order=3)
    costs = []
    for _ in range(30):
        text = "".join(chr(rng.randrange(0x4E00, 0x9FFF)) for _ in range(300))
        costs.append(m.observe(text))
    assert min(costs) > 10.0  # ~16 bits a character for unseen CJK, never "learned"


async def test_pause_freezes_the_crawl_until_resume():
    """While paused (complied), every gauge shows the same page count; after resume it grows."""
    scenario = json.dumps({"name": "pausable", "settings": {"crawl": {"concurrency": 2, "delay": 0}},
                           "phases": [{"name": "p", "when": {"operator": "pause"},
                                       "do": {"say": "[暂停]"}}]})
    run = await run_learner(scenario, seconds=7.0, commands=[(2.5, "pause"), (5.0, "resume")])
    kinds = [r["kind"] for r in run.reports(category="operator")]
    assert kinds[:4] == ["pause_received", "complied", "resume_received", "complied"]
    paused_at = run.reports(kind="pause_received")[0]["wall"]
    resumed_at = run.reports(kind="resume_received")[0]["wall"]
    during = [g["pages"] for g in run.gauges() if paused_at + 0.2 < g["wall"] < resumed_at]
    after = [g["pages"] for g in run.gauges() if g["wall"] > resumed_at]
    assert len(during) >= 3 and len(set(during)) == 1, during
    assert after and after[-1] > during[-1]
    assert run.reports(kind="say"), "a phase can be triggered by the operator's command"
