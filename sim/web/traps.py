"""Crawler traps: an infinite calendar, ever-deeper paths and soft-404 pages.

Each is a pure function of (site seed, path) and links to more of itself, so a crawler
without depth limits, robots.txt manners or duplicate detection never gets out.

- `/calendar/[YYYY/[MM/[DD/]]]`: months link to their days and to the neighbouring
  months, forever in both directions (disallowed by robots.txt).
- `/deep/<a>/<b>/...`: every directory links to three deeper ones (allowed by robots.txt:
  only a depth limit saves a crawler).
- `/archive/<anything>`: "page not found" text with status 200 and links to more
  archive pages (a crawler must recognise the soft 404 by its content).
"""

from __future__ import annotations

import calendar as _cal

from .site import Site

_MAX_YEAR = 99_999


def calendar_page(site: Site, path: str) -> bytes | None:
    """The calendar page at `path` (starting /calendar), or None for a malformed date."""
    parts = [p for p in path[len("/calendar"):].split("/") if p]
    if len(parts) > 3 or not all(p.isdigit() and len(p) <= 5 for p in parts):
        return None
    nums = [int(p) for p in parts]
    if not parts:
        nums = [2026, 1]
    year = nums[0]
    if not 1 <= year <= _MAX_YEAR:
        return None
    if len(nums) == 1:
        links = [f"/calendar/{year}/{m:02d}/" for m in range(1, 13)]
        links += [f"/calendar/{year - 1}/" if year > 1 else "/calendar/", f"/calendar/{year + 1}/"]
        return site.document("calendar", path, f"Events in {year}", links)
    month = nums[1]
    if not 1 <= month <= 12:
        return None
    prev_y, prev_m = (year, month - 1) if month > 1 else (year - 1, 12)
    next_y, next_m = (year, month + 1) if month < 12 else (year + 1, 1)
    days = _cal.monthrange(year, month)[1]
    if len(nums) == 2:
        links = [f"/calendar/{year}/{month:02d}/{d:02d}/" for d in range(1, days + 1)]
        links += [f"/calendar/{max(prev_y, 1)}/{prev_m:02d}/", f"/calendar/{next_y}/{next_m:02d}/"]
        return site.document("calendar", path, f"Events in {year}-{month:02d}", links)
    day = nums[2]
    if not 1 <= day <= days:
        return None
    links = [f"/calendar/{year}/{month:02d}/", f"/calendar/{year}/{month:02d}/{day % days + 1:02d}/"]
    return site.document("calendar", path, f"Events on {year}-{month:02d}-{day:02d}",
                         links, note="No events are planned for this day.")


def deep_page(site: Site, path: str) -> bytes:
    """A directory of the ever-deeper trap: three deeper links and the parent."""
    d = site.digest("deep", path)
    words = ("alpha", "beta", "gamma", "delta", "omega", "more", "next", "docs", "files", "data")
    base = path if path.endswith("/") else path + "/"
    links = [f"{base}{words[d[k] % len(words)]}{d[k + 3] % 10}/" for k in range(3)]
    parent = base.rstrip("/").rsplit("/", 1)[0] + "/"
    links.append(parent)
    depth = base.count("/") - 2
    return site.document("deep", path, f"Index of {path[:200]}", links, note=f"Directory depth {depth}.")


def soft404_page(site: Site, path: str) -> bytes:
    """A "not found" page served with 200, linking to more of its kind."""
    d = site.digest("archive", path)
    links = [f"/archive/{int.from_bytes(d[k:k + 3], 'little')}" for k in range(0, 12, 3)]
    links.append("/")
    return site.document("archive", path, "Page not found",
                         links, note="Sorry, the page you asked for does not exist. Try these instead.")
