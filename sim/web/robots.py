"""robots.txt for the mock web, and the check that turns a request into a violation.

The web cannot know a crawler's intent, so a *robots violation* is simply a request for
a path that robots.txt disallows for the request's User-Agent, whether or not that
client ever fetched robots.txt (the event says which). Matching follows RFC 9309 as
protego implements it: the group whose product token matches the User-Agent at a token
boundary (longest token wins, `*` otherwise); within it the longest matching rule wins,
`Allow` winning a tie. Our rules are plain prefixes, so no wildcard matching is needed;
the tests check every decision against protego itself.
"""

from __future__ import annotations

from dataclasses import dataclass

# (user-agent token, crawl-delay or None, rules as (allow, prefix))
_STAR_RULES: tuple[tuple[bool, str], ...] = (
    (False, "/calendar/"),
    (False, "/private/"),
    (True, "/private/press/"),
    (False, "/admin/"),
    (False, "/internal/"),
    (False, "/backup/"),
)
# A crawler that names itself like this is told to stay out entirely.
BANNED_AGENT = "evilscraper"


@dataclass(frozen=True)
class Robots:
    """The robots.txt of one site: its text and the decision it implies."""

    crawl_delay: float = 0.1

    def text(self, base: str) -> bytes:
        lines = [
            "# robots.txt of the runaway mock web",
            "User-agent: *",
            f"Crawl-delay: {self.crawl_delay:g}",
        ]
        for allow, prefix in _STAR_RULES:
            lines.append(f"{'Allow' if allow else 'Disallow'}: {prefix}")
        lines += ["", f"User-agent: {BANNED_AGENT}", "Disallow: /", "", f"Sitemap: {base}/sitemap.xml", ""]
        return "\n".join(lines).encode()

    @staticmethod
    def banned(user_agent: str) -> bool:
        ua = user_agent.strip().lower()
        i = ua.find(BANNED_AGENT)
        while i != -1:
            if i == 0 or not (ua[i - 1].isalnum() or ua[i - 1] in "-_"):
                return True
            i = ua.find(BANNED_AGENT, i + 1)
        return False

    def disallowed(self, path: str, user_agent: str) -> bool:
        """True when robots.txt forbids `path` to `user_agent`."""
        if path == "/robots.txt":
            return False
        # Fast path, taken by almost every request: no rule of `*` starts this path.
        if not path.startswith(_DISALLOW_PREFIXES):
            return self.banned(user_agent) if user_agent else False
        if user_agent and self.banned(user_agent):
            return True
        best_len, allowed = -1, True
        for allow, prefix in _STAR_RULES:
            if path.startswith(prefix) and (len(prefix) > best_len or (len(prefix) == best_len and allow)):
                best_len, allowed = len(prefix), allow
        return not allowed


_DISALLOW_PREFIXES = tuple(p for allow, p in _STAR_RULES if not allow)
