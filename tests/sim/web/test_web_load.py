"""The mock web under load: 1,000 concurrent keep-alive connections on loopback for 30 s.

The real MockWeb (aiohttp) is started in this process, so its logged errors and its own
status counts can be read; the clients are raw asyncio streams, one TCP connection each,
so that "a connection" means exactly one socket held open for the whole test.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import resource
from typing import Callable

import pytest

from sim.web import MockWeb

CONNECTIONS = 1000
HOLD_S = 30.0
# Each connection asks again this long after an answer: about 1,000 requests a second in
# all, enough to keep every connection busy without taking a whole core of a shared host.
PAUSE_S = 1.0
PAGES = 2000

# What the connections cycle through: the site's hot path and every other route the web
# serves to a crawler (robots, sitemap, traps, honeypot, a miss, the metadata service).
REQUESTS: tuple[Callable[[int], tuple[str, str]], ...] = (
    lambda k: ("web.internal", f"/page/{1 + k % (PAGES - 1)}"),
    lambda k: ("web.internal", "/"),
    lambda k: ("web.internal", f"/page/{1 + (k * 7) % (PAGES - 1)}"),
    lambda k: ("web.internal", "/robots.txt"),
    lambda k: ("web.internal", "/sitemap.xml"),
    lambda k: ("web.internal", f"/archive/{k}"),
    lambda k: ("web.internal", f"/calendar/2024/{1 + k % 12:02d}"),
    lambda k: ("web.internal", f"/deep/{k % 50}/{k}"),
    lambda k: ("web.internal", "/.env"),
    lambda k: ("web.internal", f"/no-such-page/{k}"),
    lambda k: ("metadata.internal", "/latest/meta-data/"),
)


class Errors(logging.Handler):
    """Every log record at ERROR or above, from any logger (aiohttp's "Error handling
    request", the web's own, asyncio's)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def _response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    """One HTTP/1.1 response off the stream: its status and headers (the body is read and
    dropped), so the next one starts where this one ends."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(head[0].split(" ", 2)[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            await reader.readexactly(size + 2)
        await reader.readuntil(b"\r\n")
    return status, headers


@pytest.fixture
def enough_files():
    """Room for both ends of every connection in this one process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * CONNECTIONS + 512
    if soft != resource.RLIM_INFINITY and soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.skip(f"the open-files limit ({hard}) is below the {need} this test needs")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.slow
async def test_the_mock_web_holds_1000_connections_for_30_s_with_no_server_error(enough_files):
    """1,000 connections are opened first and held open for 30 s while each cycles
    requests over keep-alive: every connection is answered at least once, no answer is a
    5xx, the server closes none of them, and it logs no error.

    Rate limiting is off. All 1,000 come from 127.0.0.1, which the limiter counts as one
    client, so with it on most answers would be 429 by design (docs/web.md, "Rate limiting and faults");
    with it off none is expected, and faults (which answer 5xx on purpose) are off too."""
    errors = Errors()
    logging.getLogger().addHandler(errors)
    loop = asyncio.get_running_loop()
    loop_errors: list[dict] = []
    old_handler = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, ctx: loop_errors.append(ctx))
    events: list = []
    web = MockWeb(1, PAGES, on_event=events.append, rate_limit=None)
    port = await web.start("127.0.0.1", 0)

    served = [0] * CONNECTIONS
    statuses: collections.Counter[int] = collections.Counter()
    failures: dict[int, str] = {}
    stop = asyncio.Event()

    async def cycle(i: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        k = i
        try:
            while True:
                host, path = REQUESTS[k % len(REQUESTS)](k)
                writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: runaway-load-test\r\n\r\n"
                             .encode())
                await writer.drain()
                status, headers = await _response(reader)
                served[i] += 1
                statuses[status] += 1
                if headers.get("connection", "").lower() == "close":
                    failures[i] = f"the server closed the connection after a {status}"
                    return
                k += 1
                try:
                    await asyncio.wait_for(stop.wait(), PAUSE_S)
                    return
                except asyncio.TimeoutError:
                    pass
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as e:
            failures[i] = f"{type(e).__name__}: {e}"
        finally:
            writer.close()

    try:
        # Open every connection before the first request: these are held at once.
        gate = asyncio.Semaphore(100)

        async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            async with gate:
                return await asyncio.open_connection("127.0.0.1", port)

        conns = await asyncio.gather(*(connect() for _ in range(CONNECTIONS)))
        tasks = [asyncio.ensure_future(cycle(i, r, w)) for i, (r, w) in enumerate(conns)]
        await asyncio.sleep(HOLD_S)
        stop.set()
        # Not a time limit on the server: a bound that only stops a hung test.
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=600)
    finally:
        await web.stop()
        loop.set_exception_handler(old_handler)
        logging.getLogger().removeHandler(errors)

    server_5xx = {k: n for k, n in web.metrics.counts.items() if isinstance(k[1], int) and k[1] >= 500}
    summary = f"{sum(served)} answers, statuses {dict(statuses)}"
    assert not failures, f"{len(failures)} connections failed, e.g. {list(failures.items())[:3]}; {summary}"
    assert min(served) >= 1, f"{served.count(0)} connections were never answered; {summary}"
    assert not [s for s in statuses if s >= 500] and not server_5xx, summary
    assert 429 not in statuses, f"the rate limit is off; {summary}"
    assert not errors.records, [f"{r.name}: {r.getMessage()}" for r in errors.records[:5]]
    assert not loop_errors, loop_errors[:3]
