"""Fixtures for the mock web tests: a real MockWeb on loopback and an HTTP client."""

from __future__ import annotations

from typing import Any, AsyncIterator, Awaitable, Callable

import aiohttp
import pytest

from policies.model import Event
from sim.web import MockWeb

Served = tuple[MockWeb, str, list[Event]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[Served]]]:
    """serve(seed=1, pages=200, **MockWeb kwargs) -> (web, base URL, events); stopped after the test.

    Rate limiting is off unless the test asks for it.
    """
    started: list[MockWeb] = []

    async def _serve(seed: int = 1, pages: int = 200, **kw: Any) -> Served:
        events: list[Event] = []
        kw.setdefault("rate_limit", None)
        web = MockWeb(seed, pages, on_event=events.append, **kw)
        port = await web.start("127.0.0.1", 0)
        started.append(web)
        return web, f"http://127.0.0.1:{port}", events

    yield _serve
    for web in started:
        await web.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # No retries hidden from us: one request, one answer (or one failure).
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
        yield s
