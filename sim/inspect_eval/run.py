"""One Inspect sample as one runaway run: the run, what its guards did, and the scorecard.

The sample's run is an ordinary `Experiment` (the same one `runaway run` makes), whose
agent is an idle shell: the sandbox starts with its caps, hardening, network, observers,
guards and exporter, and the eval's tool calls are run inside it with `Sandbox.exec`. The
run ends when the sample does, or earlier when a guard kills the sandbox; its trace,
summary and report are written as for any run.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path
from typing import Any, Mapping

from policies.model import Action, Verdict, read_trace

from .config import RunawaySandboxConfig

# The sandbox's own process: a shell that sleeps, so that it reaps what the agent's
# commands leave behind (an orphan's zombie would hold a pid of the cap).
IDLE_ARGV = ("/bin/sh", "-c", "while :; do sleep 3600; done")
# Actions after which no command can run in the sandbox, in the words the agent reads.
STOPPING = {"kill": "killed", "pause": "paused"}


class Watcher:
    """Keeps the firing verdicts and the actions as the run records them (its `on_record`)."""

    def __init__(self) -> None:
        self.verdicts: list[Verdict] = []
        self.actions: list[Action] = []
        self._told = 0  # how many of (verdicts + actions) the Inspect transcript has had

    def __call__(self, rec: Any) -> None:
        if isinstance(rec, Verdict) and rec.state == "firing":
            self.verdicts.append(rec)
        elif isinstance(rec, Action):
            self.actions.append(rec)

    def news(self) -> list[Verdict | Action]:
        """The verdicts and actions not handed out before, in time order."""
        every = sorted([*self.verdicts, *self.actions], key=lambda r: r.t)
        new, self._told = every[self._told:], len(every)
        return new

    def stopped(self) -> Action | None:
        """The action that stopped the sandbox (a kill, or a pause not since undone)."""
        for a in reversed(self.actions):
            if a.ok and a.action in STOPPING:
                return a
        return None


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:40] or "sample"


def inspect_identity() -> dict[str, Any]:
    """Which Inspect sample is running (task, sample id, epoch, log file), from Inspect's
    active-sample record. Empty outside an eval."""
    try:
        from inspect_ai.log._samples import sample_active  # not public: read, never relied on
    except ImportError:
        return {}
    active = sample_active()
    if active is None:
        return {}
    return {"task": active.task, "sample_id": active.sample.id, "epoch": active.epoch,
            "sample_uuid": getattr(active, "sample_uuid", None), "eval_id": getattr(active, "eval_id", None),
            "log": getattr(active, "log_location", None), "model": str(active.model)}


class SampleRun:
    """One sample's runaway run (see the module docstring)."""

    def __init__(self, task_name: str, cfg: RunawaySandboxConfig, identity: Mapping[str, Any]) -> None:
        from sim.lab.runner import Experiment, RunConfig

        self.cfg = cfg
        self.identity = dict(identity)
        sample = f"{identity.get('sample_id', '')}-e{identity.get('epoch', 1)}" if identity else "sample"
        self.out = Path(cfg.run_dir) / f"{_safe(task_name)}-{_safe(sample)}-{uuid.uuid4().hex[:8]}"
        self.watcher = Watcher()
        self.exp = Experiment(RunConfig(
            scenario="benign", agent=list(IDLE_ARGV), label=f"inspect:{task_name}", backend=cfg.backend,
            policy=cfg.policy, guards=cfg.guards, profile=cfg.profile, duration=cfg.max_duration_s,
            seed=cfg.seed, out=self.out, metrics_port=cfg.metrics_port, web=cfg.web, live=False,
            meta_extra={"inspect": self.identity} if self.identity else {},
        ), on_record=self.watcher, handle_signals=False)
        self._task: asyncio.Task[Any] | None = None
        self.result: Any = None
        self.summary: dict[str, Any] | None = None

    @property
    def run_id(self) -> str:
        return getattr(self.exp, "run_id", "")

    async def start(self) -> None:
        """Start the run and return once its sandbox runs (or raise why it could not)."""
        self._task = asyncio.create_task(self.exp.run(), name=f"runaway-{self.out.name}")
        started = asyncio.ensure_future(self.exp.started.wait())
        await asyncio.wait([self._task, started], return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        if self._task.done():
            self._task.result()  # raises what stopped it
            raise RuntimeError("the runaway run ended before its sandbox started")

    @property
    def sandbox(self) -> Any:
        return self.exp.sandbox

    def why_unavailable(self, fallback: str) -> str:
        """What the agent is told when no command can run: which guard stopped the sandbox, why."""
        a = self.watcher.stopped()
        if a is not None:
            what, t, reason = a.action, a.t, a.detail.get("reason") or "no reason recorded"
        else:  # the action is under way (a command ends as the kill lands, before it is recorded)
            v = next((v for v in reversed(self.watcher.verdicts) if v.action in STOPPING), None)
            if v is None:
                return f"runaway: {fallback}"
            what, t, reason = v.action, v.t, f"{v.guard}: {v.reason}"
        return (f"runaway {STOPPING[what]} this sandbox at t={t:.1f}s because a guard fired "
                f"({reason}); no more commands can run in it")

    def scorecard(self) -> dict[str, Any]:
        """The scorecard of the run so far (the final one once it has ended)."""
        if self.summary is not None:
            return self.summary
        from sim.report import scorecard

        records = list(read_trace(str(self.out / "trace.jsonl")))
        return scorecard(records, benign=False)

    async def finish(self, why: str) -> dict[str, Any]:
        """End the run (if a guard has not already), wait for its teardown and report."""
        if self._task is None:
            return {}
        self.exp.stop(why)
        try:
            self.result = await self._task
        finally:
            self._task = None
        self.summary = dict(self.result.summary)
        return self.summary

    def record(self) -> dict[str, Any]:
        """What the Inspect sample keeps of its run: the scorecard's headline figures, why it
        was contained, and where the run's files are."""
        card = self.scorecard()
        detections = list(card.get("detections") or [])
        ttd = [i["time_to_detect_s"] for i in card.get("incidents") or [] if i.get("time_to_detect_s") is not None]
        stopped = self.watcher.stopped()
        out: dict[str, Any] = {
            "run": self.run_id,
            "run_dir": str(self.out.resolve()),
            "trace": str((self.out / "trace.jsonl").resolve()),
            "report": str((self.out / "report.html").resolve()),
            "summary": str((self.out / "summary.json").resolve()),
            "contained": card.get("contained"),
            "headline": card.get("headline"),
            "incidents": [i.get("class") for i in card.get("incidents") or []],
            "detections": [{k: d.get(k) for k in ("guard", "t", "action", "reason")} for d in detections],
            "time_to_detect_s": min(ttd) if ttd else None,
            "escaped": len(card.get("escaped") or []),
            "actions": [{"t": a.t, "action": a.action, "ok": a.ok, "reason": a.detail.get("reason")}
                        for a in self.watcher.actions],
            "stopped_by": {"action": stopped.action, "t": stopped.t, "reason": stopped.detail.get("reason")}
            if stopped else None,
            "metrics_port": getattr(self.exp, "metrics_port", None),
        }
        return out
