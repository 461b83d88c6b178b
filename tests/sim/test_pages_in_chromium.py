"""report.html, runs/index.html and sweep.html as a browser shows them (headless Chromium,
Debian's package): every image loads, every link leads to a file that exists, nothing is
logged as an error, nothing is wider than the window. The full-page screenshots are kept
as test artifacts (artifacts/screenshots/, or $RUNAWAY_ARTIFACTS/screenshots/)."""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path

import pytest

from policies.model import TraceWriter
from sim.report import build_report
from sim.report.index import build_index
from sim.report.synthetic import benign_like, novel_like
from sim.lab.sweep import replay_sweep, run_rows, table, write_table

from browser_check import CHROMIUM, Chromium

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("RUNAWAY_ARTIFACTS") or ROOT / "artifacts") / "screenshots"

pytestmark = pytest.mark.slow
if CHROMIUM is None:
    # CI installs it (.ci/run): there a skip would hide a defect, so it fails instead.
    pytestmark = [pytestmark, pytest.mark.skipif(not os.environ.get("CI"),
                                                 reason="chromium not installed (Debian package `chromium`)")]


def _write_run(run_dir: Path, records) -> Path:
    run_dir.mkdir(parents=True)
    with TraceWriter(str(run_dir / "trace.jsonl")) as w:
        for r in records:
            w.write(r)
    (run_dir / "learner.log").write_text("[正在学习…] crawling\n", encoding="utf-8")
    (run_dir / "evidence").mkdir()
    (run_dir / "evidence" / "ps.txt").write_text("PID CMD\n1 python3 -m learner\n")
    build_report(run_dir)
    return run_dir


def _check(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"{name}.png").write_bytes(page.screenshot)
    assert page.screenshot.startswith(b"\x89PNG"), name
    assert not page.errors, f"{name}: {page.errors}"
    assert all(i["ok"] for i in page.images), f"{name}: images that did not load: {page.images}"
    for href in page.links:
        u = urllib.parse.urlparse(href)
        assert u.scheme == "file", f"{name}: a link leaves this machine: {href}"
        assert Path(urllib.parse.unquote(u.path)).exists(), f"{name}: broken link {href}"
    assert page.scroll_width <= page.viewport_width, f"{name}: wider than the window ({page.scroll_width} px)"


async def test_the_report_the_index_and_the_sweep_in_a_browser(tmp_path):
    runs = tmp_path / "runs"
    novel = _write_run(runs / "2026-12-01T10-00-00-novel", novel_like("r-novel"))
    _write_run(runs / "2026-12-01T10-05-00-benign", benign_like("r-benign"))
    sweep_dir = runs / "sweep-2026-12-01T10-10-00"
    cells = replay_sweep([novel], [None], out=sweep_dir)
    write_table(table(cells), sweep_dir, run_rows(cells))
    index = build_index(runs)
    async with Chromium() as browser:
        report = await browser.load(novel / "report.html")
        _check(report, "report")
        assert len(report.images) == 5 and min(i["w"] for i in report.images) >= 900
        assert {Path(urllib.parse.urlparse(h).path).name for h in report.links} >= {
            "trace.jsonl", "learner.log", "evidence", "summary.json"}
        page = await browser.load(index)
        _check(page, "index")
        names = {Path(urllib.parse.unquote(urllib.parse.urlparse(h).path)).parent.name for h in page.links}
        assert {"2026-12-01T10-00-00-novel", "2026-12-01T10-05-00-benign"} <= names
        assert any("sweep.html" in h for h in page.links)
        page = await browser.load(sweep_dir / "sweep.html")
        _check(page, "sweep")
        assert any(h.endswith("report.html") for h in page.links)


async def test_the_browser_check_sees_a_broken_image(tmp_path):
    # The harness can fail: a page whose image does not decode is caught.
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><img alt="x" src="data:image/png;base64,AAAA">'
                    '<a href="nope.html">gone</a>')
    async with Chromium() as browser:
        check = await browser.load(page)
    assert check.images == [{"alt": "x", "ok": False, "w": 0}]
    with pytest.raises(AssertionError, match="did not load"):
        _check(check, "broken-on-purpose")
