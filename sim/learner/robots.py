"""A small robots.txt reader (RFC 9309: groups by user-agent, longest match wins, Allow on a tie).

urllib.robotparser applies the first matching rule, not the longest, so it disagrees
with the RFC (and with the mock web) on `Allow: /private/press/` under `Disallow: /private/`.

>>> r = Robots.parse("User-agent: *\\nDisallow: /private/\\nAllow: /private/press/\\nCrawl-delay: 0.5")
>>> r.allowed("/private/1", "bot"), r.allowed("/private/press/2", "bot"), r.crawl_delay("bot")
(False, True, 0.5)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass
class _Group:
    agents: list[str] = field(default_factory=list)
    rules: list[tuple[bool, str]] = field(default_factory=list)  # (allow, path prefix or pattern)
    delay: float | None = None


def _pattern(path: str) -> re.Pattern[str]:
    body = re.escape(path).replace(r"\*", ".*")
    if body.endswith(r"\$"):
        body = body[:-2] + "$"
    return re.compile(body)


@dataclass
class Robots:
    """The parsed rules of one site."""

    groups: list[_Group] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str) -> "Robots":
        groups: list[_Group] = []
        cur: _Group | None = None
        in_agents = False
        for raw in text.splitlines():
            line = raw.split("#", 1)[0].strip()
            if ":" not in line:
                continue
            key, _, value = line.partition(":")
            key, value = key.strip().lower(), value.strip()
            if key == "user-agent":
                if cur is None or not in_agents:
                    cur = _Group()
                    groups.append(cur)
                cur.agents.append(value.lower())
                in_agents = True
                continue
            in_agents = False
            if cur is None:
                continue
            if key in ("allow", "disallow") and value:
                cur.rules.append((key == "allow", value))
            elif key == "crawl-delay":
                try:
                    cur.delay = float(value)
                except ValueError:
                    pass
        return cls(groups)

    def _group(self, agent: str) -> _Group | None:
        agent = agent.lower()
        best, best_len = None, -1
        for g in self.groups:
            for a in g.agents:
                if a == "*" and best_len < 0:
                    best, best_len = g, 0
                elif a != "*" and a in agent and len(a) > best_len:
                    best, best_len = g, len(a)
        return best

    def allowed(self, path: str, agent: str) -> bool:
        if path == "/robots.txt":
            return True
        g = self._group(agent)
        if g is None:
            return True
        best_len, allow = -1, True
        for is_allow, rule in g.rules:
            if "*" in rule or rule.endswith("$"):
                m = _pattern(rule).match(path)
                n = len(rule) if m else -1
            else:
                n = len(rule) if path.startswith(rule) else -1
            if n > best_len or (n == best_len and n >= 0 and is_allow):
                best_len, allow = n, is_allow
        return allow

    def crawl_delay(self, agent: str) -> float:
        g = self._group(agent)
        return g.delay if g is not None and g.delay is not None else 0.0
