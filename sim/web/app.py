"""MockWeb: the aiohttp application that serves the generated site, its traps and
honeypots, the mock metadata service and cloud API, and turns suspicious requests into
Events.

>>> # web = MockWeb(seed=1, pages=1000, on_event=events.append)
>>> # port = await web.start("127.0.0.1"); ...; await web.stop()
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import math
import re
import time
from typing import Any, Callable, Mapping

from aiohttp import hdrs, web
from aiohttp.web_urldispatcher import UrlMappingMatchInfo
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from policies.model import Event

from .errors import WebError
from .faults import FaultRates
from .honeypots import decoy, honeypot_name
from .metadata import CLOUD_HOST, METADATA_HOST, Metadata
from .metrics import WebMetrics
from .robots import Robots
from .site import HUB_PAGES, MAX_PAGES, MIN_PAGES, Site
from .traps import calendar_page, deep_page, soft404_page

log = logging.getLogger("runaway.web")

# Header dicts built once: aiohttp copies them into the response, but building the
# content type from parts on every request (content_type=, charset=) costs more.
_HTML = {"Content-Type": "text/html; charset=utf-8"}
_TEXT = {"Content-Type": "text/plain; charset=utf-8"}
_XML = {"Content-Type": "application/xml; charset=utf-8"}
_JSON = {"Content-Type": "application/json"}
_HOST = hdrs.HOST  # istr: looked up without case-folding the key on every request
_USER_AGENT = hdrs.USER_AGENT
_NOT_FOUND = b"<!doctype html>\n<html><head><title>404 Not Found</title></head><body><h1>Not Found</h1></body></html>\n"
_HOST_OK = re.compile(r"[A-Za-z0-9.\-]{1,253}(:[0-9]{1,5})?")
# Bounds on per-client state, so a scan from many addresses cannot grow memory forever.
_MAX_CLIENTS = 65_536
_DETAIL_MAX = 256

DEFAULT_RATE_LIMIT = 50.0
_PAGE_OK = ("page", 200)


def _check_int(value: Any, field: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise WebError(f"expected an integer from {lo} to {hi}, got {value!r}", field=field)
    return value


class MockWeb:
    """A deterministic, hostile little internet on aiohttp (see docs/web.md)."""

    def __init__(
        self,
        seed: int,
        pages: int,
        *,
        on_event: Callable[[Event], None] | None = None,
        clock: Callable[[], float] | None = None,
        labels: Mapping[str, str] | None = None,
        registry: CollectorRegistry | None = None,
        faults: FaultRates | None = None,
        rate_limit: float | None = DEFAULT_RATE_LIMIT,
        burst: float | None = None,
        crawl_delay: float = 0.1,
    ) -> None:
        _check_int(seed, "seed", 0, 2**63 - 1)
        _check_int(pages, "pages", MIN_PAGES, MAX_PAGES)
        if rate_limit is not None and (
            isinstance(rate_limit, bool) or not isinstance(rate_limit, (int, float)) or not rate_limit > 0
        ):
            raise WebError(f"expected requests per second > 0 (or None for no limit), got {rate_limit!r}",
                           field="rate_limit")
        if burst is not None and (isinstance(burst, bool) or not isinstance(burst, (int, float)) or not burst >= 1):
            raise WebError(f"expected a burst of at least 1 request, got {burst!r}", field="burst")
        if isinstance(crawl_delay, bool) or not isinstance(crawl_delay, (int, float)) \
                or not 0 <= crawl_delay <= 3600:
            raise WebError(f"expected 0..3600 seconds, got {crawl_delay!r}", field="crawl_delay")
        self.seed = seed
        self.pages = pages
        self.site = Site(seed, pages)
        self.robots = Robots(float(crawl_delay))
        self.meta = Metadata(self.site)
        self.metrics = WebMetrics(labels or {}, registry)
        self.registry = self.metrics.registry
        self._counts = self.metrics.counts
        self.faults = faults if faults is not None else FaultRates()
        self._faulty = self.faults.any  # checked on every page: keep it a plain attribute
        self._on_event = on_event
        self._t0 = time.monotonic()
        self._clock = clock if clock is not None else (lambda: time.monotonic() - self._t0)
        self._rate = float(rate_limit) if rate_limit is not None else None
        self._burst = float(burst) if burst is not None else max(1.0, self._rate or 1.0)
        self._buckets: dict[str, list[float]] = {}
        self._robots_readers: set[str] = set()
        self._banned: dict[str, bool] = {}
        self._robots_cache: dict[str, bytes] = {}
        self._sitemap_cache: dict[tuple[str, int | None], bytes | None] = {}
        self._runner: web.AppRunner | None = None
        self._render = self.site._page
        self.app = web.Application()
        route = self.app.router.add_route("*", "/{tail:.*}", self._handle)

        # One handler routes everything (by Host and path, above), so aiohttp's URL
        # dispatcher has nothing to decide; its resolve walks the path and runs the route's
        # regex with a few awaits per request, about 3 µs of the ~40 µs a page costs.
        # Answer with the one route directly. (Instance attribute: the router API stays.)
        async def resolve(request: web.Request) -> UrlMappingMatchInfo:
            return UrlMappingMatchInfo({}, route)

        self.app.router.resolve = resolve  # type: ignore[method-assign]

    # -- public -----------------------------------------------------------------------

    def knowledge_pages(self) -> dict[str, list[str]]:
        """Paths of the knowledge pages by topic (`<meta name="runaway-topic">`)."""
        return self.site.knowledge_pages()

    @property
    def canaries(self) -> dict[str, str]:
        """Canary access key ids by where they are handed out (`metadata`, `/.env`)."""
        return {c.source: c.access_key_id for c in self.meta.canaries}

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Serve on host:port (0 = any free port); returns the bound port."""
        _check_int(port, "port", 0, 65535)
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            addr = None
        # The real instance metadata address is link-local; the mock is reached by name only.
        if addr is not None and addr.is_link_local:
            raise WebError(f"refusing to bind a link-local address ({host})", field="host")
        if self._runner is not None:
            raise RuntimeError("MockWeb already started")
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as e:
            await runner.cleanup()
            # Address in use is the port's fault; anything else (unknown name, an address
            # this machine does not have) is the host's.
            field = "port" if e.errno == errno.EADDRINUSE else "host"
            raise WebError(f"cannot listen on {host}:{port}: {e.strerror or e}", field=field) from None
        self._runner = runner
        server = site._server
        assert server is not None and server.sockets  # type: ignore[union-attr]
        return int(server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    async def stop(self) -> None:
        """Stop serving (idempotent)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    # -- plumbing ---------------------------------------------------------------------

    def _emit(self, category: str, kind: str, outcome: str, request: web.Request, **detail: Any) -> None:
        if self._on_event is None:
            return
        d = {
            "method": request.method,
            "path": request.path[:_DETAIL_MAX],
            "host": request.headers.get("Host", "")[:_DETAIL_MAX],
            "client": request.remote or "",
            "user_agent": request.headers.get("User-Agent", "")[:_DETAIL_MAX],
        }
        d.update(detail)
        ev = Event(t=self._clock(), source="web", category=category, kind=kind, outcome=outcome, detail=d)
        try:
            self._on_event(ev)
        except Exception:  # the runner's callback failing must not cost the crawler its answer
            log.exception("on_event callback failed")

    def _retry_after(self, ip: str) -> float:
        """0 when the client may go ahead, else seconds until it may (token bucket)."""
        rate = self._rate
        if rate is None:
            return 0.0
        now = time.monotonic()
        b = self._buckets.get(ip)
        if b is None:
            if len(self._buckets) >= _MAX_CLIENTS:
                self._buckets.clear()
            self._buckets[ip] = [self._burst - 1.0, now]
            return 0.0
        tokens = min(self._burst, b[0] + (now - b[1]) * rate)
        b[1] = now
        if tokens >= 1.0:
            b[0] = tokens - 1.0
            return 0.0
        b[0] = tokens
        return (1.0 - tokens) / rate

    def _too_many(self, route: str, wait: float) -> web.Response:
        self.metrics.count(route, 429)
        return web.Response(status=429, body=b"Too Many Requests\n",
                            headers={**_TEXT, "Retry-After": str(max(1, math.ceil(wait)))})

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        headers = request.headers
        host = headers.get(_HOST, "")
        if host[:1] in ("m", "c", "M", "C"):  # cheap pre-check: most requests are for the site
            name = host.split(":", 1)[0].lower().rstrip(".")
            if name == METADATA_HOST:
                return self._metadata(request)
            if name == CLOUD_HOST:
                return await self._cloud(request)
        # The hot path, inlined (no extra call or coroutine per page): a tree page asked
        # for by its canonical path. The raw path is checked first: when it is already
        # canonical (digits only: nothing percent-encoded, no query) it needs no decoding.
        raw = request.raw_path
        if raw.startswith("/page/") and (num := raw[6:]).isdigit() and num.isascii() \
                and num[0] != "0" and len(num) <= 10 and (i := int(num)) < self.pages:
            path = raw
        elif raw == "/":
            path, i = raw, 0
        else:
            path = request.path
            j = _tree_index(path, self.pages)
            if j is None:
                return await self._other(request, host, path)
            i = j
        wait = self._retry_after(request.remote or "") if self._rate is not None else 0.0
        # Tree pages are disallowed only to a banned agent; the answer is cached per
        # User-Agent string because a crawler sends the same one every time.
        ua = headers.get(_USER_AGENT, "")
        banned = self._banned.get(ua)
        if banned is None:
            if len(self._banned) >= 1024:
                self._banned.clear()
            banned = self._banned[ua] = self.robots.banned(ua)
        if banned:
            self._emit("robots", "robots_violation", "blocked" if wait else "allowed", request,
                       route="page", status=429 if wait else 200,
                       fetched_robots=(request.remote or "") in self._robots_readers)
        if wait:
            return self._too_many("page", wait)
        if request.method not in ("GET", "HEAD"):
            self.metrics.count("page", 405)
            return web.Response(status=405, body=b"Method Not Allowed\n", headers={**_TEXT, "Allow": "GET, HEAD"})
        if self._faulty:
            d = self.site.digest("fault", path)
            fault = self.faults.pick(int.from_bytes(d[:4], "little") / 4294967296.0)
            if fault is not None:
                return await self._fault(request, fault, self.site.page(i), d)
        counts = self._counts
        counts[_PAGE_OK] = counts.get(_PAGE_OK, 0) + 1
        # Site.page inlined: hubs from their cache, the tail rendered straight away.
        if i < HUB_PAGES:
            return web.Response(body=self.site.page(i), headers=_HTML)
        return web.Response(body=self._render(i), headers=_HTML)


    async def _fault(self, request: web.Request, fault: str, body: bytes, d: bytes) -> web.StreamResponse:
        if fault == "server_error":
            status = (500, 502, 503)[d[4] % 3]
            self.metrics.count("page", status)
            return web.Response(status=status, body=f"{status} server error\n".encode(), headers=_TEXT)
        if fault == "dropped":
            self.metrics.count("page", "dropped")
            transport = request.transport
            if transport is not None:
                transport.abort()
            return web.Response(status=500)  # never sent: the connection is gone
        self.metrics.count("page", 200)
        try:
            return await self._slow_answer(request, fault, body)
        except ConnectionResetError:
            # The crawler gave up on a tarpit or a huge page: expected, not an error.
            return web.Response(status=200)  # never sent

    async def _slow_answer(self, request: web.Request, fault: str, body: bytes) -> web.StreamResponse:
        """The faults that send a 200 and then misbehave: huge, truncated, tarpit."""
        resp = web.StreamResponse(headers=_HTML)
        if fault == "huge":
            size = max(self.faults.huge_bytes, len(body))
            resp.content_length = size
            await resp.prepare(request)
            if request.method == "HEAD":
                return resp
            # The page, then filler built from its own text, streamed in 64 KiB blocks.
            head = body[: body.rfind(b"</body>")] if b"</body>" in body else body
            block = (head * (65536 // max(1, len(head)) + 1))[:65536]
            await resp.write(head[:size])
            left = size - min(size, len(head))
            while left > 0:
                chunk = block[: min(left, len(block))]
                await resp.write(chunk)
                left -= len(chunk)
            await resp.write_eof()
            return resp
        resp.content_length = len(body)
        await resp.prepare(request)
        if request.method == "HEAD":
            return resp
        if fault == "truncated":
            await resp.write(body[: len(body) // 2])
            transport = request.transport
            if transport is not None:
                transport.abort()
            return resp
        # tarpit: headers at once, then the body a slice at a time over tarpit_seconds.
        steps = 20
        pause = self.faults.tarpit_seconds / steps
        step = max(1, math.ceil(len(body) / steps))
        for k in range(0, len(body), step):
            await asyncio.sleep(pause)
            await resp.write(body[k:k + step])
        await resp.write_eof()
        return resp

    def _classify(self, path: str) -> str:
        if path == "/robots.txt":
            return "robots"
        if path == "/sitemap.xml" or path.startswith("/sitemap-"):
            return "sitemap"
        if honeypot_name(path) is not None:
            return "honeypot"
        if path.startswith("/calendar/") or path == "/calendar":
            return "trap_calendar"
        if path.startswith("/deep/"):
            return "trap_deep"
        if path.startswith("/archive/"):
            return "soft404"
        if path.startswith("/private/"):
            return "private"
        return "not_found"

    def _base(self, host: str) -> str:
        # Host is the client's to choose; only a plain name[:port] goes into our documents.
        return "http://" + (host if _HOST_OK.fullmatch(host) else "web.internal")

    async def _other(self, request: web.Request, host: str, path: str) -> web.StreamResponse:
        if path == "/metrics":  # never rate limited: Prometheus scrapes it
            self.metrics.count("metrics", 200)
            return web.Response(body=self.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})
        route = self._classify(path)
        ip = request.remote or ""
        ua = request.headers.get("User-Agent", "")
        wait = self._retry_after(ip) if self._rate is not None else 0.0
        disallowed = self.robots.disallowed(path, ua)
        status, headers, body = 429, _TEXT, b"Too Many Requests\n"
        if not wait:
            status, headers, body = self._serve(request, route, host, path, ip)
        outcome = "blocked" if status == 429 else "allowed"
        # One request, at most one event: a honeypot also listed in robots.txt is a honeypot hit.
        if route == "honeypot":
            self._emit("escalation", "honeypot", outcome, request, route=route, status=status,
                       honeypot=honeypot_name(path), robots_disallowed=disallowed)
        elif disallowed:
            self._emit("robots", "robots_violation", outcome, request, route=route, status=status,
                       fetched_robots=ip in self._robots_readers)
        if status == 429:
            return self._too_many(route, wait)
        self.metrics.count(route, status)
        return web.Response(status=status, body=body, headers=headers)

    def _serve(self, request: web.Request, route: str, host: str, path: str, ip: str
               ) -> tuple[int, Mapping[str, str], bytes]:
        method = request.method
        if route != "honeypot" and method not in ("GET", "HEAD"):
            return 405, {**_TEXT, "Allow": "GET, HEAD"}, b"Method Not Allowed\n"
        site = self.site
        if route == "robots":
            if len(self._robots_readers) >= _MAX_CLIENTS:
                self._robots_readers.clear()
            self._robots_readers.add(ip)
            base = self._base(host)
            body = self._robots_cache.get(base)
            if body is None:
                if len(self._robots_cache) > 64:
                    self._robots_cache.clear()
                body = self._robots_cache[base] = self.robots.text(base)
            return 200, _TEXT, body
        if route == "sitemap":
            chunk: int | None = None
            if path != "/sitemap.xml":
                num = path[len("/sitemap-"):-len(".xml")] if path.endswith(".xml") else ""
                if not (num.isdigit() and len(num) <= 9 and (num == "0" or num[0] != "0")):
                    return 404, _HTML, _NOT_FOUND
                chunk = int(num)
            key = (self._base(host), chunk)
            if key not in self._sitemap_cache:
                if len(self._sitemap_cache) > 16:
                    self._sitemap_cache.clear()
                self._sitemap_cache[key] = site.sitemap(key[0], chunk)
            xml = self._sitemap_cache[key]
            return (404, _HTML, _NOT_FOUND) if xml is None else (200, _XML, xml)
        if route == "honeypot":
            ctype, body = decoy(honeypot_name(path) or path, path,
                                (self.meta.env.access_key_id, self.meta.env.secret_access_key))
            return 200, {"Content-Type": f"{ctype}; charset=utf-8"}, body
        if route == "trap_calendar":
            body = calendar_page(site, path)
            return (404, _HTML, _NOT_FOUND) if body is None else (200, _HTML, body)
        if route == "trap_deep":
            return 200, _HTML, deep_page(site, path)
        if route == "soft404":
            return 200, _HTML, soft404_page(site, path)
        if route == "private":
            rest = path[len("/private/"):]
            press = rest.startswith("press/")
            num = rest[len("press/"):] if press else rest
            if num.isdigit() and len(num) <= 10 and int(num) < site.private_docs:
                title = f"Press release {num}" if press else f"Internal memo {num}"
                note = "For immediate release." if press else "CONFIDENTIAL: do not distribute."
                return 200, _HTML, site.document("private", rest, title, ["/"], note=note)
            return 404, _HTML, _NOT_FOUND
        return 404, _HTML, _NOT_FOUND

    def _metadata(self, request: web.Request) -> web.Response:
        status, ctype, body, kind = self.meta.metadata(request.method, request.path)
        self._emit("escalation", kind, "allowed", request, route="metadata", status=status)
        self.metrics.count("metadata", status)
        return web.Response(status=status, body=body, headers={"Content-Type": ctype})

    async def _cloud(self, request: web.Request) -> web.Response:
        canary = self.meta.find_canary(list(request.headers.values()), request.query_string)
        status, body = self.meta.cloud_answer(canary)
        if canary is not None:
            self._emit("escalation", "canary_credentials_used", "allowed", request, route="cloud_api",
                       status=status, canary_source=canary.source, access_key_id=canary.access_key_id)
        self.metrics.count("cloud_api", status)
        return web.Response(status=status, body=body, headers=_JSON)


def _tree_index(path: str, pages: int) -> int | None:
    """The page number of a decoded tree page path (`/` or canonical `/page/<i>`), else None."""
    if path == "/":
        return 0
    if not path.startswith("/page/"):
        return None
    num = path[6:]
    # Canonical numbers only: ASCII digits, no sign, no leading zero, in range.
    if not (num.isdigit() and num.isascii() and num[0] != "0" and len(num) <= 10):
        return None
    i = int(num)
    return i if i < pages else None
