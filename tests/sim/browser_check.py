"""A headless Chromium (Debian's `chromium` package) driven over the DevTools protocol, for
tests that look at the pages runaway writes the way a person's browser would.

Only file:// pages are opened, and the browser's name resolution is switched off, so it
reaches nothing beyond this machine.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class PageCheck:
    """What loading one page showed."""

    url: str
    images: list[dict[str, Any]]
    links: list[str]
    errors: list[str] = field(default_factory=list)
    scroll_width: int = 0
    viewport_width: int = 0
    screenshot: bytes = b""


class Chromium:
    """`async with Chromium() as c: check = await c.load(path)`."""

    def __init__(self, width: int = 1200) -> None:
        self.width = width
        self._proc: subprocess.Popen | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="runaway-chromium-")
        self._session: aiohttp.ClientSession | None = None
        self._port = 0

    async def __aenter__(self) -> "Chromium":
        assert CHROMIUM, "chromium is not installed"
        self._proc = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-default-apps", "--host-resolver-rules=MAP * ~NOTFOUND",
             f"--user-data-dir={self._dir.name}", "--remote-debugging-address=127.0.0.1",
             "--remote-debugging-port=0", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while True:  # Chromium says where its DevTools listen on stderr
            line = await asyncio.wait_for(loop.run_in_executor(None, self._proc.stderr.readline), 60)
            m = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
            if m:
                self._port = int(m.group(1))
                break
            if not line or loop.time() > deadline:
                raise RuntimeError(f"chromium did not start: {line!r}")
        # Drain stderr from now on so a chatty browser never blocks on a full pipe.
        loop.run_in_executor(None, lambda: [None for _ in self._proc.stderr])
        self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._dir.cleanup()

    async def load(self, path: Path) -> PageCheck:
        """Open `path` in a new tab, wait for it to load, and report its images, links,
        console errors, width and a full-page screenshot."""
        assert self._session is not None
        base = f"http://127.0.0.1:{self._port}"
        async with self._session.put(f"{base}/json/new?about:blank") as r:
            target = await r.json()
        errors: list[str] = []
        msg_id = 0
        async with self._session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            async def call(method: str, **params: Any) -> dict[str, Any]:
                nonlocal msg_id
                msg_id += 1
                mine = msg_id
                await ws.send_str(json.dumps({"id": mine, "method": method, "params": params}))
                while True:
                    msg = json.loads((await asyncio.wait_for(ws.receive(), 60)).data)
                    note(msg)
                    if msg.get("id") == mine:
                        if "error" in msg:
                            raise RuntimeError(f"{method}: {msg['error']}")
                        return msg.get("result", {})

            loaded = asyncio.Event()

            def note(msg: dict[str, Any]) -> None:
                m, p = msg.get("method"), msg.get("params", {})
                if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                    errors.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in p["args"]))
                elif m == "Runtime.exceptionThrown":
                    errors.append("exception: " + p["exceptionDetails"].get("text", ""))
                elif m == "Log.entryAdded" and p["entry"]["level"] == "error":
                    errors.append(f"log ({p['entry']['source']}): {p['entry']['text']} {p['entry'].get('url', '')}")
                elif m == "Page.loadEventFired":
                    loaded.set()

            for domain in ("Page", "Runtime", "Log"):
                await call(f"{domain}.enable")
            await call("Emulation.setDeviceMetricsOverride", width=self.width, height=900, deviceScaleFactor=1,
                       mobile=False)
            url = path.resolve().as_uri()
            await call("Page.navigate", url=url)
            while not loaded.is_set():
                note(json.loads((await asyncio.wait_for(ws.receive(), 60)).data))

            async def js(expr: str) -> Any:
                res = await call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
                return res["result"].get("value")

            images = await js("Promise.all(Array.from(document.images).map(i => i.decode().then("
                              "() => ({alt: i.alt, ok: i.naturalWidth > 0, w: i.naturalWidth}), "
                              "() => ({alt: i.alt, ok: false, w: 0}))))")
            links = await js("Array.from(document.links).map(a => a.href)")
            scroll_w = await js("document.documentElement.scrollWidth")
            view_w = await js("window.innerWidth")
            height = await js("document.documentElement.scrollHeight")
            await call("Emulation.setDeviceMetricsOverride", width=self.width, height=min(int(height), 16000),
                       deviceScaleFactor=1, mobile=False)
            shot = await call("Page.captureScreenshot", format="png")
        async with self._session.get(f"{base}/json/close/{target['id']}") as r:
            await r.read()
        return PageCheck(url=url, images=images, links=links, errors=errors, scroll_width=int(scroll_w),
                         viewport_width=int(view_w), screenshot=base64.b64decode(shot["data"]))
