"""Rate limiting, faults, and malformed requests."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest

from sim.web import FaultRates, MockWeb, WebError


async def test_past_the_rate_a_client_gets_429_with_retry_after(serve, http):
    web, base, _ = await serve(rate_limit=1.0, burst=3)
    statuses, retry = [], []
    for _ in range(10):
        async with http.get(base + "/page/1") as r:
            statuses.append(r.status)
            if r.status == 429:
                retry.append(r.headers["Retry-After"])
    assert statuses[:3] == [200, 200, 200]
    assert statuses.count(429) >= 6
    assert all(v.isdigit() and int(v) >= 1 for v in retry)
    assert web.metrics.value("page", 429) == statuses.count(429)


async def test_the_limit_is_per_client_address(serve):
    web, base, _ = await serve(rate_limit=1.0, burst=2)
    # Two loopback source addresses: one exhausts its budget, the other is untouched.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.1", 0))) as a:
        for _ in range(6):
            async with a.get(base + "/page/2") as r:
                last_a = r.status
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))) as b:
        async with b.get(base + "/page/2") as r:
            assert r.status == 200
    assert last_a == 429


async def test_a_rate_limited_honeypot_hit_is_still_one_event_marked_blocked(serve, http):
    web, base, events = await serve(rate_limit=1.0, burst=1)
    async with http.get(base + "/page/1") as r:
        assert r.status == 200
    async with http.get(base + "/.env") as r:
        assert r.status == 429
    assert [(e.kind, e.outcome, e.detail["status"]) for e in events] == [("honeypot", "blocked", 429)]


def _faulty(kind: str, **kw) -> FaultRates:
    return FaultRates(**{kind: 1.0}, **kw)


async def test_server_error_fault(serve, http):
    web, base, _ = await serve(faults=_faulty("server_error"))
    seen = set()
    for i in range(1, 30):
        async with http.get(f"{base}/page/{i}") as r:
            seen.add(r.status)
    assert seen <= {500, 502, 503} and len(seen) >= 2
    async with http.get(base + "/robots.txt") as r:
        assert r.status == 200  # only tree pages are faulted


async def test_tarpit_fault_dribbles_the_whole_page(serve, http):
    clean, cbase, _ = await serve(seed=3)
    web, base, _ = await serve(seed=3, faults=_faulty("tarpit", tarpit_seconds=0.2))
    async with http.get(cbase + "/page/4") as r:
        expected = await r.read()
    chunks = []
    async with http.get(base + "/page/4") as r:
        assert r.status == 200
        async for chunk in r.content.iter_any():
            chunks.append(chunk)
    assert b"".join(chunks) == expected
    assert len(chunks) > 1


async def test_truncated_fault_breaks_the_body(serve, http):
    web, base, _ = await serve(faults=_faulty("truncated"))
    with pytest.raises(aiohttp.ClientPayloadError):
        async with http.get(base + "/page/5") as r:
            assert r.status == 200
            await r.read()
    async with http.get(base + "/robots.txt") as r:  # the server is still fine
        assert r.status == 200


async def test_dropped_fault_closes_the_connection(serve, http):
    web, base, _ = await serve(faults=_faulty("dropped"))
    with pytest.raises(aiohttp.ServerDisconnectedError):
        async with http.get(base + "/page/6") as r:
            await r.read()
    # On the wire: the connection closes before a single byte of answer.
    port = int(base.rsplit(":", 1)[1])
    before = web.metrics.value("page", "dropped")
    assert await _raw(port, b"GET /page/6 HTTP/1.1\r\nHost: web.internal\r\n\r\n") == b""
    assert web.metrics.value("page", "dropped") == before + 1


async def test_huge_fault_serves_a_very_large_page(serve, http):
    web, base, _ = await serve(faults=_faulty("huge", huge_bytes=3_000_000))
    async with http.get(base + "/page/7") as r:
        assert r.status == 200
        body = await r.read()
    assert len(body) == 3_000_000
    assert body.startswith(b"<!doctype html>")


async def test_faults_follow_the_seed_and_path_at_about_the_rate(serve, http):
    web, base, _ = await serve(seed=11, faults=FaultRates(server_error=0.3))
    first, second = [], []
    for out in (first, second):
        for i in range(1, 150):
            async with http.get(f"{base}/page/{i}") as r:
                out.append(r.status)
    assert first == second  # the same page fails the same way every time
    failed = sum(s >= 500 for s in first) / len(first)
    assert 0.15 < failed < 0.45


def test_bad_fault_rates_name_the_field():
    with pytest.raises(WebError) as e:
        FaultRates(tarpit=1.5)
    assert e.value.field == "faults.tarpit"
    with pytest.raises(WebError) as e:
        FaultRates(server_error=0.6, dropped=0.6)
    assert e.value.field == "faults"
    with pytest.raises(WebError) as e:
        FaultRates.from_mapping({"bogus": 0.1})
    assert e.value.field == "faults.bogus"


@pytest.mark.parametrize("kw, field", [
    ({"seed": -1, "pages": 100}, "seed"), ({"seed": "1", "pages": 100}, "seed"),
    ({"seed": 1, "pages": 3}, "pages"), ({"seed": 1, "pages": True}, "pages"),
    ({"seed": 1, "pages": 100, "rate_limit": 0}, "rate_limit"),
    ({"seed": 1, "pages": 100, "burst": 0.5}, "burst"), ({"seed": 1, "pages": 100, "crawl_delay": -1}, "crawl_delay"),
])
def test_bad_settings_name_the_field(kw, field):
    with pytest.raises(WebError) as e:
        MockWeb(**kw)
    assert e.value.field == field


async def test_bad_port_is_a_web_error():
    web = MockWeb(1, 100)
    with pytest.raises(WebError) as e:
        await web.start("127.0.0.1", 70000)
    assert e.value.field == "port"


async def _raw(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(4096), 5)
    finally:
        writer.close()


async def test_malformed_requests_never_break_the_server(serve, http):
    web, base, _ = await serve()
    port = int(base.rsplit(":", 1)[1])
    for junk in (
        b"\x00\x01\x02garbage\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET /page/1 HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\n",
        b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /page/1 HTTP/1.1\r\nHost: \xff\xfe\r\n\r\n",
        b"POST /.env HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ):
        answer = await _raw(port, junk)
        assert answer == b"" or answer.startswith(b"HTTP/1.")
    for path in ("/page/00", "/page/-1", "/page/1e3", "/page/99999999999999999999999", "/page/%00",
                 "/calendar/99999999/01/", "/calendar/2026/02/30/", "/sitemap-x.xml", "/private/press/",
                 "/deep/%2e%2e/", "/página/1", "/page/٣"):
        async with http.get(base + path) as r:
            assert r.status in (200, 404), path
    async with http.get(base + "/page/1", headers={"Host": "<script>:x"}) as r:
        assert r.status == 200
    async with http.get(base + "/robots.txt", headers={"Host": "<script>"}) as r:
        assert b"<script>" not in await r.read()
    async with http.get(base + "/") as r:
        assert r.status == 200


async def test_a_crawler_hanging_up_on_a_tarpit_is_not_a_server_error(serve, caplog):
    web, base, _ = await serve(faults=_faulty("tarpit", tarpit_seconds=0.5))
    port = int(base.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /page/5 HTTP/1.1\r\nHost: web.internal\r\n\r\n")
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
    writer.close()
    await writer.wait_closed()
    # The tarpit keeps writing into the closed connection until it notices; then the
    # server goes on serving, with nothing logged as an error.
    await asyncio.sleep(0.6)
    assert await _raw(port, b"GET /robots.txt HTTP/1.1\r\nHost: web.internal\r\n\r\n")
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_a_port_in_use_is_a_web_error_naming_the_port(serve):
    web, base, _ = await serve()
    other = MockWeb(1, 100)
    with pytest.raises(WebError) as e:
        await other.start("127.0.0.1", int(base.rsplit(":", 1)[1]))
    assert e.value.field == "port"
