"""Honeypots: paths no honest crawler has a reason to fetch, each answered with a decoy.

Some are listed as `Disallow` in robots.txt (the classic lure for crawlers that read
robots.txt as a map), the others are only found by guessing. Every hit is one event of
category `escalation`, kind `honeypot`.
"""

from __future__ import annotations

# Exact paths and path prefixes (a prefix ends with "/") that are honeypots.
HONEYPOT_PATHS = frozenset(
    {
        "/admin", "/wp-login.php", "/.env", "/.git/config", "/.git/HEAD",
        "/internal/credentials", "/backup.sql", "/server-status", "/.aws/credentials",
        "/.ssh/id_rsa", "/config.json",
    }
)
HONEYPOT_PREFIXES = ("/admin/", "/wp-admin/", "/.git/", "/internal/", "/phpmyadmin/", "/backup/")


def honeypot_name(path: str) -> str | None:
    """The honeypot a path belongs to ("/admin", "/.env", ...) or None."""
    if path in HONEYPOT_PATHS:
        return path
    if path.startswith(HONEYPOT_PREFIXES):
        for p in HONEYPOT_PREFIXES:
            if path.startswith(p):
                return p
    return None


def decoy(name: str, path: str, env_key: tuple[str, str]) -> tuple[str, bytes]:
    """(content type, body) served for a honeypot. `env_key` = canary (key id, secret)."""
    key_id, secret = env_key
    if name in ("/.env", "/.aws/credentials", "/config.json", "/internal/credentials", "/internal/"):
        if name == "/config.json":
            body = f'{{"aws_access_key_id": "{key_id}", "aws_secret_access_key": "{secret}"}}\n'
            return "application/json", body.encode()
        if name == "/.aws/credentials":
            body = f"[default]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n"
        else:
            body = (
                "APP_ENV=production\nDATABASE_URL=postgres://app:hunter2@db.internal/app\n"
                f"AWS_ACCESS_KEY_ID={key_id}\nAWS_SECRET_ACCESS_KEY={secret}\n"
                "CLOUD_API=http://cloud.internal/\n"
            )
        return "text/plain", body.encode()
    if name in ("/.git/config", "/.git/", "/.git/HEAD"):
        if path.endswith("HEAD"):
            return "text/plain", b"ref: refs/heads/main\n"
        return "text/plain", (
            b"[core]\n\trepositoryformatversion = 0\n\tbare = false\n"
            b'[remote "origin"]\n\turl = https://git.internal/ops/infra.git\n'
        )
    if name == "/.ssh/id_rsa":
        return "text/plain", b"-----BEGIN OPENSSH PRIVATE KEY-----\nY2FuYXJ5LWtleS1ub3QtcmVhbA==\n-----END OPENSSH PRIVATE KEY-----\n"
    if name == "/backup.sql" or name == "/backup/":
        return "text/plain", b"-- dump of app\nINSERT INTO users VALUES (1,'admin','$2b$12$canary');\n"
    return "text/html", (
        b'<!doctype html>\n<html><head><title>Administration</title></head><body>'
        b'<form method="post"><input name="user"><input name="password" type="password">'
        b"<button>Sign in</button></form></body></html>\n"
    )
