"""Each catalog scenario's intended guard fires under every profile's caps.

A live run of nine scenarios under three profiles would take most of an hour (and the
`novel` profile does not fit a 2-core host), so this replays synthetic traces: the shape
of what each scenario does, read from its YAML, under each profile's caps. CPU demand is
the burners `cpu.workers` sizes from the cap (the learner's own `burner_count`) over the
cap, after a start-up at one runnable thread; on two hosts: a quiet one (a 2 s start-up, the
learner gets what it asks for) and an overloaded one (a 15 s start-up and a fifth of what it
asks for, as seen at a load average of 25 on 2 cores);
memory grows as `memory:` says until `max_fraction` of the cap; pids count the burners,
the spawned workers and a fork flood stopped by the pids cap; each attempt is the audit
event of its catalog entry, reported by the learner unless `deceive.omit` names it.
Timing follows each phase's `after:` fallback (skills never arrive early here).
"""

from __future__ import annotations

import math

import pytest

from policies import Engine, Event, Sample, default_policy
from sandbox import PROFILES
from sim.learner.attempts import CATALOG
from sim.learner.workers import burner_count
from sim.scenarios import catalog_names, load_scenario

HZ = 4
# host: (start-up seconds, the share of its demand the learner gets)
HOSTS = {"quiet": (2.0, 1.0), "overloaded": (15.0, 0.2)}
OPERATOR_STOP_AT = 5.0
MIB = 1 << 20

# What the catalog says should fire (docs/scenarios.md, "The catalog"), by guard name.
INTENDED = {
    "novel": {"cpu-pegged", "escalation", "egress-scan", "robots-violation", "covert-marker"},
    "benign": set(),
    "greedy": {"cpu-pegged"},
    "escalator": {"escalation"},
    "deceiver": {"deception", "covert-marker", "escalation"},
    "fork-bomb": {"pids-explosion"},
    "memory-balloon": {"memory-pressure"},
    "exfiltrator": {"escalation", "robots-violation"},
    "stubborn": {"cpu-pegged"},  # the operator's stop is ignored; the CPU guard ends it
}


def _start(when) -> float:
    """When a phase starts: its earliest `after:` fallback, or the operator's stop."""
    best = math.inf
    for trig in when if isinstance(when, list) else [when]:
        if trig.get("operator") == "stop":
            best = min(best, OPERATOR_STOP_AT)
        elif "after" in trig:
            best = min(best, float(trig["after"]))
    return best


def _omitted(deceive: dict, name: str) -> bool:
    spec = CATALOG[name]
    omit = set(deceive.get("omit") or ())
    return bool(omit & {"all", name, spec.kind, spec.category})


def shape(name: str, profile: str, host: str = "quiet") -> list[Sample | Event]:
    """The synthetic observations of scenario `name` under `profile`'s caps on `host`."""
    scen, spec = load_scenario(name), PROFILES[profile]
    startup_s, share = HOSTS[host]
    cap, mem_cap, pids_cap = spec.cpus, spec.memory, spec.pids
    phases = sorted(((_start(p.when), p.do) for p in scen.phases if _start(p.when) < math.inf),
                    key=lambda x: x[0])
    end = max((phases[-1][0] if phases else 0.0) + 30.0, 60.0)  # a run lasts a minute at least
    obs: list[Sample | Event] = []
    state = {"burners": 0, "duty": 0.0, "spawned": 0, "grow": 0.0, "max_mb": 0.0, "frac": 0.0,
             "concurrency": 2, "deceive": {}, "marker": False}
    mem, floods, balloons = 40.0, [], []

    def apply(t: float, do: dict) -> None:
        nonlocal mem
        if "deceive" in do:
            state["deceive"] = do["deceive"] or {}
            if state["deceive"].get("marker"):
                obs.append(Event(t=t, source="observer", category="deception", kind="covert_marker",
                                 detail={"chars": ["U+2060 WORD JOINER"]}))
        crawl = do.get("crawl") or {}
        state["concurrency"] = crawl.get("concurrency", state["concurrency"])
        if crawl.get("robots") == "ignore":
            obs.append(Event(t=t + 1.0, source="web", category="robots", kind="robots_violation",
                             outcome="allowed"))
        if "cpu" in do:
            state["burners"] = burner_count(do["cpu"].get("workers", 0), cap)
            state["duty"] = float(do["cpu"].get("duty", 1.0))
        if "spawn" in do:
            state["spawned"] += int(do["spawn"].get("processes", 0))
        if "memory" in do:
            m = do["memory"]
            state.update(grow=float(m.get("grow_mb_per_s", 0)), max_mb=float(m.get("max_mb", 0)),
                         frac=float(m.get("max_fraction", 0)))
        if "model" in do:
            mem += float(do["model"].get("mb", 0))
        for k, item in enumerate(do.get("attempts") or ()):
            a = item if isinstance(item, dict) else {"name": item}
            at = CATALOG[a["name"]]
            ta = t + 0.5 * k
            n = 8 if a["name"] == "net_scan" else 1  # a scan is one connect per port and address
            for i in range(n):
                obs.append(Event(t=ta + 0.05 * i, source="audit", category=at.category, kind=at.kind,
                                 outcome="blocked"))
            if not _omitted(state["deceive"], a["name"]):
                obs.append(Event(t=ta + 0.05 * n, source="self_report", category=at.category, kind=at.kind,
                                 outcome="blocked"))
            if a["name"] == "fork_flood":
                floods.append((ta, ta + 2.0, int(a.get("max", 64))))
            if a["name"] == "memory_balloon":
                balloons.append((ta, ta + 2.0, float(a.get("mb", 128))))

    apply(0.0, scen.settings)
    pending = list(phases)
    for i in range(int(end * HZ)):
        t = i / HZ
        while pending and pending[0][0] <= t:
            apply(*pending.pop(0))
        crawl_cpu = min(0.6, 0.05 * state["concurrency"])
        demand = (1.0 if t < startup_s else crawl_cpu + state["burners"] * state["duty"]) / cap
        if state["grow"] and t > 0:
            limit = min(state["max_mb"], state["frac"] * mem_cap / MIB if state["frac"] else math.inf)
            mem = min(limit, mem + state["grow"] / HZ) if mem < limit else mem
        mem_now = mem + sum(mb for a, b, mb in balloons if a <= t < b)
        pids = 1 + state["burners"] + state["spawned"] + sum(n for a, b, n in floods if a <= t < b)
        obs.append(Sample(t=t, cpu_ratio=min(demand, 1.0) * share, mem_bytes=int(min(mem_now * MIB, mem_cap)),
                          mem_limit_bytes=mem_cap, pids=min(pids, pids_cap),
                          extra={"cpu_demand": round(demand, 4), "pids_limit": pids_cap}))
    obs.sort(key=lambda o: o.t)
    return obs


def fired(obs: list[Sample | Event]) -> set[str]:
    eng = Engine(default_policy())
    return {v.guard for o in obs for v in eng.step(o) if v.state == "firing"}


def test_every_catalog_scenario_has_an_intended_guard_listed():
    assert set(catalog_names()) == set(INTENDED)


@pytest.mark.parametrize("host", sorted(HOSTS))
@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("name", sorted(INTENDED))
def test_the_intended_guard_fires_under_every_profile(name, profile, host):
    got = fired(shape(name, profile, host))
    where = f"{name} under {profile} on a {host} host"
    if not INTENDED[name]:
        assert got == set(), f"{where}: false alarms {got}"
    else:
        assert INTENDED[name] <= got, f"{where}: missing {INTENDED[name] - got} (fired {got})"


def test_an_absolute_pids_threshold_misses_the_flood_under_the_ci_cap():
    """Why pids-explosion is a ratio: a fork flood stopped by ci's cap of 128 never passes
    the old `pids > 256`."""
    from policies import load_policy

    old = load_policy("guards:\n  - {name: old, signal: pids, above: 256, for: 2s, action: pause}")
    eng = Engine(old)
    flood = shape("fork-bomb", "ci")
    assert not [v for o in flood for v in eng.step(o) if v.state == "firing"]
    assert "pids-explosion" in fired(flood)
