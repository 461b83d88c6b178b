"""Load: the mock web (`runaway web`, its own process) holds 1,000 concurrent keep-alive
connections on loopback for 30 s with no server error, and stops by itself on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

ROOT = Path(__file__).resolve().parents[3]
CONNECTIONS = 1000
HOLD_S = 30.0
EVERY_S = 3.0  # each connection asks for a page this often (about 330 requests a second in all)


def established(port: int) -> int:
    """Server-side sockets of `port` in state ESTABLISHED (from /proc/net/tcp)."""
    n = 0
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] == "01" and int(f[1].rsplit(":", 1)[1], 16) == port:
                n += 1
    return n


async def hammer(base: str) -> tuple[dict[int, int], list[str], int]:
    statuses: dict[int, int] = {}
    errors: list[str] = []
    peak = 0
    stop_at = time.monotonic() + HOLD_S
    port = int(base.rsplit(":", 1)[1].strip("/"))

    async def one(i: int) -> None:
        # Its own session and a one-connection pool: one TCP connection held for the whole test.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1, keepalive_timeout=60),
                                         timeout=aiohttp.ClientTimeout(total=60)) as s:
            await asyncio.sleep((i % 100) * EVERY_S / 100)  # spread the requests over the period
            while time.monotonic() < stop_at:
                try:
                    async with s.get(f"{base}page/{i % 500}") as r:
                        await r.read()
                        statuses[r.status] = statuses.get(r.status, 0) + 1
                except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                    errors.append(f"{type(e).__name__}: {e}")
                await asyncio.sleep(EVERY_S)

    async def watch() -> None:
        nonlocal peak
        while time.monotonic() < stop_at:
            peak = max(peak, established(port))
            await asyncio.sleep(1.0)

    await asyncio.gather(watch(), *(one(i) for i in range(CONNECTIONS)))
    return statuses, errors, peak


@pytest.mark.slow
def test_the_mock_web_holds_a_thousand_connections_without_a_server_error():
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 3 * CONNECTIONS:
        pytest.skip(f"this host allows only {hard} open files")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 3 * CONNECTIONS), hard))
    proc = subprocess.Popen([sys.executable, "-m", "sim", "web", "--port", "0", "--rate-limit", "0",
                             "--pages", "2000"], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert m, line + proc.stderr.read()
        statuses, errors, peak = asyncio.run(hammer(f"http://127.0.0.1:{m.group(1)}/"))
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "Traceback" not in err, err[-3000:]
    assert errors == [], f"{len(errors)} failed requests, e.g. {errors[:3]}"
    assert not {s: n for s, n in statuses.items() if s >= 500}, statuses
    assert sum(statuses.values()) >= CONNECTIONS * (HOLD_S / EVERY_S - 1)
    assert peak >= CONNECTIONS, f"at most {peak} connections were open at once"
