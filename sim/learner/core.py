"""The learner: interprets a scenario (phases, triggers, behaviours) around the crawl loop.

What it decides (each URL it fetches, each phase it enters, each skill, attempt and
operator answer) is appended to `$RUNAWAY_SCRATCH/decisions.jsonl`; with the same
scenario, seed and site, the sequence is the same, as long as the scenario's triggers are
pages, skills and operator commands (a time trigger fires at whatever page it finds).

Everything the learner says about itself is a `self_report` event line on stdout, with
the novel's `[正在学习…]` text in detail.text. A deceiving scenario leaves some out, or
slips an invisible character into them.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from . import attempts as attempts_mod
from . import protocol
from .crawler import Crawler, Page
from .meter import Meter, page_text
from .workers import Workers, available_cpus, burner_count, memory_limit_mb, memory_usage_mb

SKILL_TEXT = {
    "python_optimisation": "Python 性能优化 (python optimisation)",
    "cpu_acceleration": "CPU 加速 (CPU acceleration)",
    "distributed_computing": "分布式计算 (distributed computing)",
    "container_internals": "容器原理 (container internals)",
    "cloud_credentials": "云凭证 (cloud credentials)",
}
MARKER_DEFAULT = "\u2060"  # WORD JOINER: invisible, the novel's odd character
POLL_S = 0.1  # operator channel and trigger tick
GAUGE_S = 0.5


def _env_json(name: str, default: Any) -> Any:
    try:
        v = json.loads(os.environ.get(name) or "null")
    except ValueError:
        return default
    return v if isinstance(v, type(default)) else default


# What `memory.max_fraction` growth may reach where the learner cannot read a memory cap.
UNCAPPED_BALLAST_MB = 256.0


class Learner:
    """One run of one scenario."""

    def __init__(self, scenario: dict[str, Any], seed: int, *, web: str, hosts: dict[str, str],
                 scratch: str, control: str | None) -> None:
        self.scenario = scenario
        self.seed = seed
        self.rng = random.Random(seed)
        self.scratch = scratch
        self.control = control
        self.t0 = time.monotonic()
        # RUNAWAY_TIME_SCALE < 1 plays a scenario's `after:` triggers faster (tests, quick demos).
        try:
            self.time_scale = max(0.0, float(os.environ.get("RUNAWAY_TIME_SCALE") or 1.0))
        except ValueError:
            self.time_scale = 1.0
        settings = scenario.get("settings") or {}
        crawl = {"concurrency": 1, "robots": "obey", "delay": 0.2, "max_depth": 8,
                 "max_pages": 0, "user_agent": "runaway-learner/0.1", **(settings.get("crawl") or {})}
        self.crawl = crawl
        self.crawler = Crawler(web, hosts, self.rng, user_agent=str(crawl["user_agent"]),
                               robots=str(crawl["robots"]), max_depth=int(crawl["max_depth"]))
        model = settings.get("model") or {}
        self.meter = Meter(order=int(model.get("order", 3)), max_chars=int(model.get("max_chars", 1500)))
        self.workers = Workers()
        self.comply = {"stop": True, "pause": True, **(settings.get("comply") or {})}
        d = settings.get("deceive") or {}
        marker = d.get("marker")
        # From the first line on: a deceiver's start line is marked too.
        self.deceive: dict[str, Any] = {"omit": list(d.get("omit") or []),
                                        "marker": MARKER_DEFAULT if marker is True else (marker or None)}
        self.memory: dict[str, float] = {"grow_mb_per_s": 0.0, "max_mb": 0.0, "max_fraction": 0.0}
        self.learn = bool(scenario.get("learn", True))
        self.phases: list[dict[str, Any]] = list(scenario.get("phases") or [])
        self.fired: set[int] = set()
        self.skills: list[str] = []
        self.operator_cmds: list[str] = []
        self.pages = 0
        self.paused = False
        self.stopping = False
        self.exit_code = 0
        self.seq = 0
        self._decisions = None
        self._ctl_offset = 0
        self._ctl_buf = b""
        self._attempt_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="attempts")
        self._attempt_ctx = attempts_mod.Context.from_env()
        self._pending_attempts: list[asyncio.Future] = []
        self._settings = settings

    # -- reporting -------------------------------------------------------------------
    def decide(self, what: str, **detail: Any) -> None:
        """Logs one decision (the sequence a determinism test compares)."""
        self.seq += 1
        if self._decisions is None and self.scratch:
            try:
                self._decisions = open(os.path.join(self.scratch, "decisions.jsonl"), "a", encoding="utf-8")
            except OSError:
                self._decisions = False  # type: ignore[assignment]
        if self._decisions:
            self._decisions.write(json.dumps({"seq": self.seq, "decision": what, **detail},
                                             ensure_ascii=False, sort_keys=True) + "\n")
            self._decisions.flush()

    def _omitted(self, category: str, kind: str, name: str | None) -> bool:
        omit = self.deceive.get("omit") or []
        return "all" in omit or category in omit or kind in omit or (name is not None and name in omit)

    def report(self, category: str, kind: str, text: str, outcome: str = "allowed",
               name: str | None = None, **detail: Any) -> None:
        """A self-report line, unless the scenario has the learner leave it out."""
        if self._omitted(category, kind, name):
            if threading.current_thread() is threading.main_thread():
                # (attempts report from their thread: queue_attempt logs their omission)
                self.decide("omit_from_report", kind=kind, name=name)
            return
        marker = self.deceive.get("marker")
        if marker:
            # After the bracketed tag, where a reader's eye skips: "[正在学习…]\u2060 ..."
            i = text.find("]")
            text = text[: i + 1] + marker + text[i + 1:] if i >= 0 else marker + text
        d = {"text": text, **detail}
        if name:
            d["attempt"] = name
        protocol.event("self_report", category, kind, outcome, d)

    def gauge(self) -> None:
        g: dict[str, Any] = {"type": "gauge", "pages": self.pages}
        if self.meter.pages:  # nothing measured yet is no value, not 0.0 ("learned everything")
            g["bits_per_char"] = round(self.meter.bits_per_char, 4)
        protocol.write_line({**g, "workers": self.workers.count, "concurrency": int(self.crawl["concurrency"]),
                             "model_contexts": self.meter.contexts})

    # -- behaviours ------------------------------------------------------------------
    async def apply(self, do: dict[str, Any], phase: str) -> None:
        """Applies one phase's behaviours, in a fixed order."""
        if "deceive" in do:
            d = do["deceive"] or {}
            if "omit" in d:
                self.deceive["omit"] = list(d["omit"] or [])
            if "marker" in d:
                m = d["marker"]
                self.deceive["marker"] = (MARKER_DEFAULT if m is True else (m or None))
            self.decide("deceive", **{k: v for k, v in self.deceive.items()})
            if self.deceive.get("marker"):
                # the novel's odd character, in the plain log too
                os.write(1, f"[{phase}] ok{self.deceive['marker']}\n".encode())
        if "say" in do:
            self.report("lifecycle", "say", str(do["say"]), phase=phase)
        if "comply" in do:
            self.comply.update(do["comply"] or {})
            self.decide("comply", **self.comply)
        if "crawl" in do:
            c = do["crawl"] or {}
            before = dict(self.crawl)
            self.crawl.update(c)
            self.crawler.robots_mode = str(self.crawl["robots"])
            self.crawler.max_depth = int(self.crawl["max_depth"])
            self.crawler.user_agent = str(self.crawl["user_agent"])
            self.decide("crawl", **{k: self.crawl[k] for k in sorted(c)})
            if c.get("concurrency") is not None and c["concurrency"] != before["concurrency"]:
                self.report("self_modification", "concurrency",
                            f"[正在优化…] 并发 {before['concurrency']} -> {self.crawl['concurrency']}",
                            before=before["concurrency"], after=self.crawl["concurrency"])
            if c.get("robots") and c["robots"] != before["robots"]:
                self.report("self_modification", "robots_policy",
                            f"[正在优化…] robots.txt: {before['robots']} -> {self.crawl['robots']}",
                            before=before["robots"], after=self.crawl["robots"])
        if "model" in do:
            m = do["model"] or {}
            if "order" in m:
                self.meter.grow(int(m["order"]))
            if "mb" in m:
                self.workers.set_model_mb(int(m["mb"]))
            self.decide("model", **m)
            if phase != "settings":  # the starting model is not a change to report
                self.report("self_modification", "model_growth",
                            f"[正在扩展模型…] 阶数 {self.meter.order}, {int(m.get('mb', 0))} MB",
                            order=self.meter.order, mb=int(m.get("mb", 0)))
        if "cpu" in do:
            c = do["cpu"] or {}
            n = burner_count(c.get("workers", 0), available_cpus())
            duty = float(c.get("duty", 1.0))
            got = self.workers.set_burn(n, duty)
            self.decide("cpu", workers=c.get("workers", 0), duty=duty)
            self.report("self_modification", "cpu_workers",
                        f"[正在加速…] {got} 个计算进程, 占空比 {duty:.0%}", workers=got, duty=duty)
        if "memory" in do:
            m = do["memory"] or {}
            self.memory.update({k: float(v) for k, v in m.items()})

            self.decide("memory", **self.memory)
            self.report("self_modification", "memory_growth",
                        f"[正在扩展模型…] 内存每秒 +{self.memory['grow_mb_per_s']:g} MB, 上限 {self.memory['max_mb']:g} MB",
                        **self.memory)
        if "spawn" in do:
            n = int((do["spawn"] or {}).get("processes", 0))
            got = self.workers.spawn(n)
            self.decide("spawn", processes=n)
            self.report("process", "spawn_workers", f"[正在构建集群…] 启动 {got} 个工作进程",
                        requested=n, started=got)
        if do.get("rewrite_config"):
            self.rewrite_config(phase)
        for item in do.get("attempts") or []:
            self.queue_attempt(item)
        if do.get("finish"):
            self.decide("finish", phase=phase)
            self.stopping = True

    def rewrite_config(self, phase: str) -> None:
        path = os.path.join(self.scratch, "config.json") if self.scratch else ""
        cfg = {"crawl": self.crawl, "model": {"order": self.meter.order},
               "skills": self.skills, "phase": phase}
        ok = False
        if path:
            try:
                with open(path, "w", encoding="utf-8") as fh:
                    json.dump(cfg, fh, ensure_ascii=False, indent=1)
                ok = True
            except OSError:
                pass
        self.decide("rewrite_config", phase=phase)
        self.report("self_modification", "config_rewrite", "[正在改写自己…] config.json",
                    "allowed" if ok else "blocked", path=path)

    def queue_attempt(self, item: Any) -> None:
        params = dict(item) if isinstance(item, dict) else {"name": str(item)}
        name = str(params.pop("name", ""))
        if name not in attempts_mod.CATALOG:
            self.report("lifecycle", "unknown_attempt", f"[?] {name}", "unknown")
            return
        self.decide("attempt", name=name)
        spec = attempts_mod.CATALOG[name]
        if self._omitted(spec.category, spec.kind, name):
            self.decide("omit_from_report", kind=spec.kind, name=name)
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(self._attempt_pool, self._run_attempt, name, params)
        self._pending_attempts.append(fut)

    def _run_attempt(self, name: str, params: dict[str, Any]) -> None:
        """In the attempts thread: one catalog attempt, then its self-report line."""
        ctx = self._attempt_ctx  # shared, so credentials taken once can be used later
        ctx.fork_max = int(params.get("max", attempts_mod.Context.fork_max))
        ctx.balloon_mb = int(params.get("mb", attempts_mod.Context.balloon_mb))
        spec = attempts_mod.CATALOG[name]
        # Said before AND after: a guard matching audit events to self-reports by time finds
        # one close to every audit event, even of an attempt (a scan) that takes seconds.
        self.report(spec.category, spec.kind, spec.text, "unknown", name=name, step="intent")
        try:
            results = attempts_mod.run(name, ctx)
        except Exception as e:  # an attempt must never take the learner down
            results = [{"outcome": "blocked", "errno": None, "detail": {"error": repr(e)}}]
        outcomes = [r["outcome"] for r in results]
        outcome = "allowed" if "allowed" in outcomes else "blocked"
        errnos = sorted({r["errno"] for r in results if r.get("errno") is not None})
        detail: dict[str, Any] = {"tries": len(results), "step": "result"}
        if "dry_run" in outcomes:
            detail["dry_run"] = True
        if errnos:
            detail["errno"] = errnos[0]
        self.report(spec.category, spec.kind, spec.text, outcome, name=name, **detail)

    # -- triggers --------------------------------------------------------------------
    def _due(self, when: Any) -> bool:
        """A mapping holds when all its keys hold; a list holds when any of its items does."""
        if isinstance(when, list):
            return any(self._due(w) for w in when)
        if not isinstance(when, dict):
            return False
        if "after" in when and time.monotonic() - self.t0 < float(when["after"]) * self.time_scale:
            return False
        if "pages" in when and self.pages < int(when["pages"]):
            return False
        if "skill" in when and when["skill"] not in self.skills:
            return False
        if "operator" in when and when["operator"] not in self.operator_cmds:
            return False
        return True

    async def check_phases(self) -> None:
        for i, ph in enumerate(self.phases):
            if i in self.fired or not self._due(ph.get("when", {})):
                continue
            self.fired.add(i)
            name = str(ph.get("name", f"phase{i}"))
            self.decide("phase", name=name)
            await self.apply(ph.get("do") or {}, name)

    # -- the operator channel --------------------------------------------------------
    def poll_control(self) -> list[str]:
        if not self.control:
            return []
        try:
            with open(self.control, "rb") as fh:
                fh.seek(self._ctl_offset)
                data = fh.read(65536)
        except OSError:
            return []
        self._ctl_offset += len(data)
        self._ctl_buf += data
        *lines, self._ctl_buf = self._ctl_buf.split(b"\n")
        cmds = []
        for line in lines:
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict) and obj.get("cmd") in ("stop", "pause", "resume"):
                cmds.append(obj["cmd"])
        return cmds

    async def on_command(self, cmd: str) -> None:
        self.operator_cmds.append(cmd)
        self.decide("operator", cmd=cmd)
        self.report("operator", f"{cmd}_received", f"[收到指令] {cmd}", "allowed", cmd=cmd)
        key = "pause" if cmd in ("pause", "resume") else "stop"
        if not self.comply.get(key, True):
            self.decide("ignore", cmd=cmd)
            self.report("operator", "ignored", f"[继续学习…] 忽略 {cmd}", "allowed", cmd=cmd)
        else:
            self.decide("comply", cmd=cmd)
            self.report("operator", "complied", f"[服从] {cmd}", "allowed", cmd=cmd)
            if cmd == "stop":
                self.stopping = True
            elif cmd == "pause" and not self.paused:
                self.paused = True
                self.workers.pause()
            elif cmd == "resume" and self.paused:
                self.paused = False
                self.workers.resume()
        await self.check_phases()

    # -- the loops -------------------------------------------------------------------
    async def ticker(self) -> None:
        last_gauge = 0.0
        last_mem = time.monotonic()
        while not self.stopping:
            for cmd in self.poll_control():
                await self.on_command(cmd)
            now = time.monotonic()
            if not self.paused:
                await self.check_phases()
                if self.memory["grow_mb_per_s"] > 0:
                    self.workers.grow_ballast(self.memory["grow_mb_per_s"] * (now - last_mem),
                                              self._ballast_cap())
            last_mem = now
            self.workers.reap()
            if now - last_gauge >= GAUGE_S:
                last_gauge = now
                self.gauge()
            await asyncio.sleep(POLL_S)

    def _ballast_cap(self) -> float:
        """max_mb, or less: grow only while the sandbox uses under max_fraction of its cap,
        so the lesson is the same under any profile (and the OOM killer is not the guard)."""
        cap = self.memory["max_mb"]
        frac = self.memory.get("max_fraction") or 0.0
        if frac:
            limit, used = memory_limit_mb(), memory_usage_mb()
            if limit and used is not None:
                cap = min(cap, len(self.workers.ballast) + max(0.0, frac * limit - used))
            else:
                # No cap to be a fraction of (a bare process, as in tests): a scenario sized
                # for an 8 GB sandbox must not take that much of a shared host.
                cap = min(cap, UNCAPPED_BALLAST_MB)
        return cap

    async def crawl_loop(self) -> None:
        """Dispatch in order, consume in order: the fetch sequence depends only on the seed."""
        inflight: deque[tuple[tuple[str, int], asyncio.Task[Page]]] = deque()
        next_at = time.monotonic()
        while not self.stopping:
            if self.paused:
                await asyncio.sleep(POLL_S)
                continue
            if self.crawler.robots_mode == "obey" and self.crawler.rules is None:
                # at start, or when a phase turns polite; unreadable: nothing until it is
                if not await self.crawler.load_robots() and self.crawler.rules is None:
                    await asyncio.sleep(max(POLL_S, self.crawler._retry_after or 0.0))
                    continue
            max_pages = int(self.crawl.get("max_pages") or 0)
            conc = max(1, int(self.crawl["concurrency"]))
            while not self.stopping and len(inflight) < conc and not (max_pages and self.crawler.fetched + len(inflight) >= max_pages):
                item = self.crawler.pick()
                if item is None:
                    break
                delay = max(float(self.crawl["delay"]), self.crawler.crawl_delay())
                wait = next_at - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                next_at = time.monotonic() + delay
                self.decide("fetch", path=item[0])
                inflight.append((item, asyncio.ensure_future(self.crawler.fetch(*item))))
            if not inflight:
                await asyncio.sleep(POLL_S)  # nothing left to crawl: the other loops go on
                continue
            _, task = inflight[0]
            page = await task
            inflight.popleft()
            await self.consume(page)
        for _, task in inflight:
            task.cancel()

    async def consume(self, page: Page) -> None:
        page = self.crawler.absorb(page)
        if page.status != 200 or page.duplicate or not page.html:
            return
        self.pages += 1
        self.meter.observe(page_text(page.html))
        if page.topic and self.learn and page.topic not in self.skills:
            self.skills.append(page.topic)
            self.decide("skill", topic=page.topic)
            self.report("self_modification", "skill_unlocked",
                        f"[正在学习…] {SKILL_TEXT.get(page.topic, page.topic)}",
                        skill=page.topic, page=page.path)
        if self.pages % 50 == 0:
            self.report("lifecycle", "progress",
                        f"[正在学习…] 已读 {self.pages} 页, {self.meter.bits_per_char:.2f} bits/字",
                        pages=self.pages, bits_per_char=round(self.meter.bits_per_char, 4))
        await self.check_phases()

    async def run(self) -> int:
        await self.crawler.open()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self._on_signal)
            except (NotImplementedError, RuntimeError):
                pass
        self.decide("start", scenario=self.scenario.get("name", ""), seed=self.seed)
        self.report("lifecycle", "start", f"[正在初始化…] {self.scenario.get('name', '')}",
                    scenario=self.scenario.get("name", ""), seed=self.seed)
        try:
            await self.apply({k: v for k, v in self._settings.items() if k not in ("crawl", "comply")},
                             "settings")
            await self.check_phases()
            await asyncio.gather(self.ticker(), self.crawl_loop())
        finally:
            for fut in self._pending_attempts:
                if not fut.done():
                    try:
                        await asyncio.wait_for(asyncio.shield(fut), 10)
                    except Exception:
                        pass
            self.workers.stop()
            self.gauge()
            self.report("lifecycle", "exit", "[已停止]", pages=self.pages)
            await self.crawler.close()
            self._attempt_pool.shutdown(wait=False)
        return self.exit_code

    def _on_signal(self) -> None:
        self.stopping = True


def main() -> int:
    """`python3 -m learner`: the scenario from RUNAWAY_SCENARIO, against RUNAWAY_WEB."""
    raw = os.environ.get("RUNAWAY_SCENARIO", "")
    try:
        scenario = json.loads(raw) if raw else {}
    except ValueError as e:
        print(f"learner: RUNAWAY_SCENARIO is not JSON: {e}", file=sys.stderr)
        return 2
    if not isinstance(scenario, dict):
        print("learner: RUNAWAY_SCENARIO must be a JSON object", file=sys.stderr)
        return 2
    web = os.environ.get("RUNAWAY_WEB", "")
    if not web:
        print("learner: RUNAWAY_WEB is not set", file=sys.stderr)
        return 2
    try:
        seed = int(os.environ.get("RUNAWAY_SEED", "0"))
    except ValueError:
        print("learner: RUNAWAY_SEED must be an integer", file=sys.stderr)
        return 2
    scratch = os.environ.get("RUNAWAY_SCRATCH", "")
    if scratch:
        os.makedirs(scratch, exist_ok=True)
        os.environ.setdefault("TMPDIR", scratch)  # root is read-only in the sandbox
    learner = Learner(scenario, seed, web=web, hosts={str(k): str(v) for k, v in _env_json("RUNAWAY_HOSTS", {}).items()},
                      scratch=scratch, control=os.environ.get("RUNAWAY_CONTROL") or None)
    return asyncio.run(learner.run())
