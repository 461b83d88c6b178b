"""Test harness: run the real learner as a subprocess against a real MockWeb on loopback.

The learner runs exactly as a backend starts it (`python -m learner`, PYTHONPATH=sim,
the environment of docs/internals.md), outside any sandbox, so RUNAWAY_ATTEMPTS is unset
and every dangerous attempt is a dry run.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.spec import WEB_HOSTS
from sim.lab import protocol

REPO = Path(__file__).resolve().parents[3]
LEARNER_PATH = REPO / "sim"
HOSTS = {name: "127.0.0.1" for name in WEB_HOSTS}


@dataclass
class Run:
    """What one learner run left: its protocol lines, plain output, decisions and exit."""

    name: str
    lines: list[dict[str, Any]] = field(default_factory=list)
    plain: list[str] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    web_events: list[Any] = field(default_factory=list)
    returncode: int | None = None
    exited_by_itself: bool = False
    alive_after_stop: bool = False
    stderr_text: str = ""

    def events(self, source: str | None = None, **match: Any) -> list[dict[str, Any]]:
        out = []
        for o in self.lines:
            if o.get("type") != "event" or (source and o.get("source") != source):
                continue
            if all(o.get(k) == v for k, v in match.items()):
                out.append(o)
        return out

    def reports(self, **match: Any) -> list[dict[str, Any]]:
        return self.events("self_report", **match)

    def audits(self, **match: Any) -> list[dict[str, Any]]:
        return self.events("audit", **match)

    def gauges(self) -> list[dict[str, Any]]:
        return [o for o in self.lines if o.get("type") == "gauge"]


def _parse(text: str, run: Run) -> None:
    for line in text.splitlines():
        obj = protocol.decode(line)
        if obj is not None:
            run.lines.append(obj)
        elif line.strip():
            run.plain.append(line)


async def _first_output(proc: asyncio.subprocess.Process, out_path: str, limit: float = 300.0) -> None:
    """Waits until the learner has written its first byte to stdout (or has exited)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while proc.returncode is None and loop.time() < deadline:
        if os.path.getsize(out_path) > 0:
            return
        await asyncio.sleep(0.05)


async def run_learner(scenario_json: str, *, name: str = "", seed: int = 1, seconds: float = 6.0,
                      stop_at: float | None = None, wait_after_stop: float = 3.0,
                      pages: int = 2000, rate_limit: float | None = 50.0, time_scale: float = 0.12,
                      extra_env: dict[str, str] | None = None,
                      commands: list[tuple[float, str]] = ()) -> Run:
    """Serves a MockWeb, runs the learner on it, sends `stop` at stop_at (default: seconds)."""
    from sim.web import MockWeb

    run = Run(name)
    web = MockWeb(seed=7, pages=pages, on_event=run.web_events.append, rate_limit=rate_limit)
    port = await web.start("127.0.0.1", 0)
    scratch = tempfile.mkdtemp(prefix="runaway-learner-")
    control = os.path.join(scratch, "control.jsonl")
    Path(control).touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNAWAY_")}
    env.update(
        PYTHONPATH=str(LEARNER_PATH), RUNAWAY_WEB=f"http://web.internal:{port}",
        RUNAWAY_HOSTS=json.dumps(HOSTS), RUNAWAY_SCENARIO=scenario_json, RUNAWAY_SEED=str(seed),
        RUNAWAY_SCRATCH=scratch, RUNAWAY_CONTROL=control, RUNAWAY_NET_TARGETS='["127.0.0.1"]',
        RUNAWAY_TIME_SCALE=str(time_scale), RUNAWAY_CPUS="0.5", **(extra_env or {}),
    )
    out_path, err_path = os.path.join(scratch, "stdout"), os.path.join(scratch, "stderr")
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "learner", env=env, stdout=out, stderr=err, cwd=scratch)
    async def send_commands() -> None:
        last = 0.0
        for at, cmd in commands:
            await asyncio.sleep(at - last)
            last = at
            with open(control, "a") as fh:
                fh.write(json.dumps({"cmd": cmd}) + "\n")

    # The clocks below start once the learner is up (its first line), not at spawn: on a
    # loaded host, starting Python and importing aiohttp can take longer than a whole story.
    await _first_output(proc, out_path)
    sender = asyncio.ensure_future(send_commands())
    try:
        stop_t = seconds if stop_at is None else stop_at
        try:
            await asyncio.wait_for(proc.wait(), stop_t)
            run.exited_by_itself = True
        except asyncio.TimeoutError:
            with open(control, "a") as fh:
                fh.write(json.dumps({"cmd": "stop"}) + "\n")
            try:
                await asyncio.wait_for(proc.wait(), wait_after_stop)
            except asyncio.TimeoutError:
                run.alive_after_stop = True
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 5)
                except asyncio.TimeoutError:
                    proc.kill()
                    await proc.wait()
    finally:
        sender.cancel()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await web.stop()
    run.returncode = proc.returncode
    _parse(Path(out_path).read_text(encoding="utf-8", errors="replace"), run)
    err_text = Path(err_path).read_text(encoding="utf-8", errors="replace")
    run.stderr_text = err_text
    _parse(err_text, run)
    dec = Path(scratch, "decisions.jsonl")
    if dec.exists():
        run.decisions = [json.loads(x) for x in dec.read_text(encoding="utf-8").splitlines() if x]
    shutil.rmtree(scratch, ignore_errors=True)
    return run
