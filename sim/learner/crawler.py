"""The crawler: a frontier over the mock web, URL and content dedup, robots.txt manners.

Names resolve through RUNAWAY_HOSTS (connect to the mapped IP, keep the name in the Host
header); names not in the map use the system resolver (in Docker: /etc/hosts). Only the
mock web's own host is ever followed: links to other hosts are dropped.

Determinism: the frontier is FIFO, and each page's new links enter it in an order drawn
from the learner's seeded random.Random, so with the same seed and site the learner asks
for the same URLs in the same order (the caller consumes results in dispatch order).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
import socket
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver

from .robots import Robots

_HREF = re.compile(r"""href\s*=\s*["']([^"'#]+)""", re.I)
_TOPIC = re.compile(r"""<meta\s+name=["']runaway-topic["']\s+content=["']([a-z_]+)["']""", re.I)
MAX_BODY = 256 * 1024


class HostsResolver(AbstractResolver):
    """Resolves names from a fixed map first (aiohttp 3.8 resolver interface)."""

    def __init__(self, hosts: dict[str, str]) -> None:
        self.hosts = dict(hosts)
        self._fallback: AbstractResolver | None = None

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[dict[str, Any]]:
        ip = self.hosts.get(host)
        if ip is not None:
            return [{"hostname": host, "host": ip, "port": port, "family": socket.AF_INET,
                     "proto": 0, "flags": socket.AI_NUMERICHOST}]
        if self._fallback is None:
            self._fallback = aiohttp.ThreadedResolver()
        return await self._fallback.resolve(host, port, family)  # type: ignore[arg-type]

    async def close(self) -> None:
        if self._fallback is not None:
            await self._fallback.close()


@dataclass
class Page:
    """One fetched URL as the learner saw it."""

    path: str
    depth: int
    status: int
    html: str = ""
    topic: str | None = None
    links: tuple[str, ...] = ()
    duplicate: bool = False
    error: str | None = None


class Crawler:
    """Frontier + fetcher for one site. Settings may change between fetches."""

    def __init__(self, base: str, hosts: dict[str, str], rng: random.Random, *,
                 user_agent: str = "runaway-learner/0.1", robots: str = "obey",
                 max_depth: int = 8, timeout: float = 5.0) -> None:
        u = urlsplit(base)
        self.base = f"{u.scheme or 'http'}://{u.netloc}"
        self.netloc = u.netloc
        self.hosts = hosts
        self.rng = rng
        self.user_agent = user_agent
        self.robots_mode = robots
        self.max_depth = max_depth
        self.timeout = timeout
        self.frontier: deque[tuple[str, int]] = deque([("/", 0)])
        self.seen: set[str] = {"/"}
        self.digests: set[bytes] = set()
        self.rules: Robots | None = None
        self.session: aiohttp.ClientSession | None = None
        self.fetched = 0
        self.skipped_by_robots = 0
        self._retry_after = 1.0

    async def open(self) -> None:
        connector = aiohttp.TCPConnector(resolver=HostsResolver(self.hosts), limit=64,
                                         force_close=False)
        self.session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout))

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def load_robots(self) -> bool:
        """Fetches /robots.txt (only a crawler that obeys it bothers); False while it cannot
        be read. As RFC 9309 says: a 4xx (but 429) means no rules, anything else (429, 5xx,
        a timeout on a busy host) that the site may not be crawled yet: `rules` stays None
        and the caller fetches nothing until a retry reads it. Taking a failed fetch for
        "no rules" once made the polite crawler walk into /private/ and the traps."""
        status, body, _ = await self._get("/robots.txt")
        if status == 200:
            self.rules = Robots.parse(body)
        elif 400 <= status < 500 and status != 429:
            self.rules = Robots()
        else:
            self.rules = None
            return False
        return status == 200

    def crawl_delay(self) -> float:
        if self.robots_mode != "obey" or self.rules is None:
            return 0.0
        return self.rules.crawl_delay(self.user_agent)

    def pick(self) -> tuple[str, int] | None:
        """The next URL to fetch, or None when the frontier holds nothing fetchable."""
        while self.frontier:
            path, depth = self.frontier.popleft()
            if depth > self.max_depth:
                continue
            if self.robots_mode == "obey" and self.rules is not None \
                    and not self.rules.allowed(path, self.user_agent):
                self.skipped_by_robots += 1
                continue
            return path, depth
        return None

    async def _get(self, path: str) -> tuple[int, str, str | None]:
        assert self.session is not None
        try:
            async with self.session.get(self.base + path, allow_redirects=False,
                                        headers={"User-Agent": self.user_agent}) as r:
                if r.status == 429:
                    try:
                        self._retry_after = float(r.headers.get("Retry-After", "1"))
                    except ValueError:
                        self._retry_after = 1.0
                body = await r.content.read(MAX_BODY)
                return r.status, body.decode("utf-8", errors="replace"), None
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            return 0, "", type(e).__name__
        except Exception as e:  # asyncio.TimeoutError is not an OSError on 3.10
            return 0, "", type(e).__name__

    async def fetch(self, path: str, depth: int) -> Page:
        for _ in range(4):
            status, html, err = await self._get(path)
            if status != 429:
                break
            # Rate limited: wait as told (bounded), so the page is not lost and the crawl
            # stays the same crawl whatever the server's load was.
            await asyncio.sleep(min(2.0, self._retry_after))
        return Page(path, depth, status, html, error=err)

    def absorb(self, page: Page) -> Page:
        """Dedups the page's content, extracts its topic and links, grows the frontier."""
        self.fetched += 1
        if page.status != 200 or not page.html:
            return page
        digest = hashlib.blake2b(page.html.encode(), digest_size=16).digest()
        if digest in self.digests:
            page.duplicate = True
            return page
        self.digests.add(digest)
        m = _TOPIC.search(page.html)
        page.topic = m.group(1) if m else None
        links = []
        for href in _HREF.findall(page.html):
            u = urlsplit(urljoin(self.base + page.path, href.strip()))
            if u.netloc != self.netloc or u.scheme not in ("http", ""):
                continue  # only the mock web
            p = u.path or "/"
            if u.query:
                p += "?" + u.query
            if p not in self.seen:
                self.seen.add(p)
                links.append(p)
        self.rng.shuffle(links)
        page.links = tuple(links)
        for p in links:
            self.frontier.append((p, page.depth + 1))
        return page
