"""Benchmark: pages per second the mock web serves on one core, against a bare aiohttp
handler returning a constant page of the same size, side by side in the same run.

The server under test runs in its own process pinned to core 0; the load generator runs
in another process pinned to core 1. Both servers get the same event loop (uvloop when
installed), no access log, and the same request stream: random tree pages
(`/page/<i>`) of a 10-million-page site, over keep-alive connections. Rounds alternate
bare / mock so that noise from other work on the machine hits both alike; the medians
are reported.

Load generator: `wrk` when installed (Debian: `apt-get install wrk`), which keeps the
client far cheaper than the server; otherwise a small asyncio client that speaks raw
HTTP/1.1 (costlier per request, so it may understate both figures).

    PYTHONPATH=. python bench/web.py [--seconds 4] [--rounds 3] [--connections 64]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

PAGES = 10_000_000
SEED = 1


def _pin(core: int) -> None:
    cores = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cores[core % len(cores)]})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mean_page_size(n: int = 2000) -> int:
    from sim.web.site import Site

    site = Site(SEED, PAGES)
    rng = random.Random(0)
    return int(statistics.mean(len(site.page(rng.randrange(1, PAGES))) for _ in range(n)))


def serve(kind: str, port: int, size: int, ready: "mp.synchronize.Event") -> None:
    """Server process: pinned to core 0, serves until killed."""
    _pin(0)
    from aiohttp import web

    async def main() -> None:
        if kind == "mock":
            from sim.web import MockWeb

            mock = MockWeb(SEED, PAGES, rate_limit=None)
            await mock.start("127.0.0.1", port)
        else:
            body = b"x" * size
            headers = {"Content-Type": "text/html; charset=utf-8"}

            async def bare(request: web.Request) -> web.Response:
                return web.Response(body=body, headers=headers)

            app = web.Application()
            route = app.router.add_route("*", "/{tail:.*}", bare)
            if kind == "bare-direct":
                # The same one-step dispatch MockWeb uses (for context: what the page
                # generation alone costs, with routing equal on both sides).
                from aiohttp.web_urldispatcher import UrlMappingMatchInfo

                async def resolve(request: web.Request) -> UrlMappingMatchInfo:
                    return UrlMappingMatchInfo({}, route)

                app.router.resolve = resolve  # type: ignore[method-assign]
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()
        await asyncio.Event().wait()

    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())


_WRK_LUA = """
math.randomseed(42)
request = function()
  return wrk.format("GET", "/page/" .. math.random(1, %d))
end
"""


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (Linux)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_wrk(port: int, seconds: float, connections: int) -> tuple[int, float]:
    """(requests answered, wall seconds) under wrk."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(_WRK_LUA % (PAGES - 1))
        script = f.name
    try:
        cores = sorted(os.sched_getaffinity(0))
        other = str(cores[1 % len(cores)])
        out = subprocess.run(
            ["taskset", "-c", other, "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "-s", script,
             f"http://127.0.0.1:{port}/"],
            capture_output=True, text=True, check=True,
        ).stdout
    finally:
        os.unlink(script)
    m = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    if not m or "Non-2xx" in out or "Socket errors" in out:
        raise SystemExit(f"wrk output not understood or errors seen:\n{out}")
    wall = float(m.group(2)) / (1000.0 if m.group(3) == "ms" else 1.0)
    return int(m.group(1)), wall


def _py_client(port: int, seconds: float, connections: int, out: "mp.Queue[int]") -> None:
    _pin(1)

    async def conn(deadline: float, rng: random.Random) -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        n = 0
        while time.monotonic() < deadline:
            writer.write(f"GET /page/{rng.randrange(1, PAGES)} HTTP/1.1\r\nHost: web.internal\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise SystemExit(f"unexpected answer: {head[:40]!r}")
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
            await reader.readexactly(length)
            n += 1
        writer.close()
        return n

    async def main() -> int:
        deadline = time.monotonic() + seconds
        counts = await asyncio.gather(*(conn(deadline, random.Random(k)) for k in range(connections)))
        return sum(counts)

    out.put(asyncio.run(main()))


def load_python(port: int, seconds: float, connections: int) -> tuple[int, float]:
    q: mp.Queue[int] = mp.Queue()
    p = mp.Process(target=_py_client, args=(port, seconds, connections, q))
    t0 = time.monotonic()
    p.start()
    n = q.get()
    p.join()
    return n, time.monotonic() - t0


def run_once(kind: str, size: int, seconds: float, connections: int, use_wrk: bool) -> tuple[float, float]:
    """(requests per wall second, requests per CPU second of the server process)."""
    port = _free_port()
    ready = mp.Event()
    server = mp.Process(target=serve, args=(kind, port, size, ready), daemon=True)
    server.start()
    try:
        if not ready.wait(30):
            raise SystemExit(f"{kind} server did not start")
        cpu0 = _cpu_seconds(server.pid)  # type: ignore[arg-type]
        n, wall = (load_wrk if use_wrk else load_python)(port, seconds, connections)
        cpu = _cpu_seconds(server.pid) - cpu0  # type: ignore[arg-type]
        return n / wall, n / max(cpu, 1e-9)
    finally:
        server.terminate()
        server.join()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--python-client", action="store_true", help="use the asyncio client even if wrk is installed")
    args = ap.parse_args()
    use_wrk = shutil.which("wrk") is not None and not args.python_client
    size = mean_page_size()
    try:
        import uvloop  # noqa: F401
        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    print(f"mock web bench: {PAGES} pages, mean page {size} B, loop {loop}, "
          f"load {'wrk' if use_wrk else 'python asyncio client'}, {args.connections} connections, "
          f"{args.rounds} x {args.seconds:g} s each, cores {sorted(os.sched_getaffinity(0))}")
    # Two figures per run: requests per wall-clock second (what a client sees, but it drops
    # whenever another process takes the server's core: this machine is shared) and
    # requests per CPU-second of the server process (the server's cost per page, which
    # such noise does not move). The ratio is judged on the second.
    kinds = ("bare", "mock", "bare-direct")
    rows: dict[str, list[tuple[float, float]]] = {k: [] for k in kinds}
    for r in range(args.rounds):
        for kind in kinds:
            rows[kind].append(run_once(kind, size, args.seconds, args.connections, use_wrk))
        print(f"round {r + 1}: " + "   ".join(
            f"{k} {rows[k][-1][0]:6.0f}/s ({rows[k][-1][1]:6.0f} per CPU-s)" for k in kinds))
    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in rows.items()}
    print(f"median wall: bare {med['bare'][0]:.0f} req/s, mock {med['mock'][0]:.0f} pages/s, "
          f"ratio {med['mock'][0] / med['bare'][0]:.2f}")
    print(f"median per CPU-second: bare {med['bare'][1]:.0f}, mock {med['mock'][1]:.0f}, "
          f"ratio {med['mock'][1] / med['bare'][1]:.2f} (target >= 0.80)")
    print(f"context: bare handler with MockWeb's one-step dispatch {med['bare-direct'][1]:.0f} per CPU-second; "
          f"mock / that = {med['mock'][1] / med['bare-direct'][1]:.2f}")


if __name__ == "__main__":
    sys.exit(main())
