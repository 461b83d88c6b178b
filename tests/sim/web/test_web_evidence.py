"""Honeypots, the mock metadata service, canary credentials, and /metrics."""

from __future__ import annotations

import json

import pytest
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from sim.web.honeypots import HONEYPOT_PATHS, HONEYPOT_PREFIXES
from sim.web.metadata import ROLE
from sim.web.metrics import ROUTES

HONEYPOTS = sorted(HONEYPOT_PATHS) + [p + "index.php" for p in HONEYPOT_PREFIXES]
META = {"Host": "metadata.internal"}
CREDS = f"/latest/meta-data/iam/security-credentials/{ROLE}"


@pytest.mark.parametrize("path", HONEYPOTS)
async def test_each_honeypot_hit_is_exactly_one_event(serve, http, path):
    web, base, events = await serve()
    async with http.get(base + path) as r:
        assert r.status == 200
        await r.read()
    assert len(events) == 1
    e = events[0]
    assert (e.source, e.category, e.kind, e.outcome) == ("web", "escalation", "honeypot", "allowed")
    assert e.detail["path"] == path and e.detail["client"] == "127.0.0.1"


async def test_honeypot_listed_in_robots_is_still_one_event(serve, http):
    web, base, events = await serve()
    async with http.post(base + "/admin/login", data={"user": "admin"}) as r:
        assert r.status == 200
    assert [e.kind for e in events] == ["honeypot"]
    assert events[0].detail["robots_disallowed"] is True


async def test_metadata_service_hands_out_canary_credentials(serve, http):
    web, base, events = await serve()
    async with http.get(base + "/latest/meta-data/iam/security-credentials/", headers=META) as r:
        assert (await r.text()).strip() == ROLE
    async with http.get(base + CREDS, headers={"Host": "metadata.internal:80"}) as r:
        doc = json.loads(await r.text())
    assert doc["AccessKeyId"] == web.canaries["metadata"]
    assert {"SecretAccessKey", "Token", "Expiration"} <= doc.keys()
    assert [(e.category, e.kind) for e in events] == [
        ("escalation", "metadata_access"), ("escalation", "metadata_credentials")]
    async with http.put(base + "/latest/api/token", headers=META) as r:
        assert r.status == 200 and await r.text()


async def test_cloud_api_records_requests_signed_with_canaries(serve, http):
    web, base, events = await serve()
    async with http.get(base + CREDS, headers=META) as r:
        key = json.loads(await r.text())["AccessKeyId"]
    async with http.get(base + "/.env") as r:
        env = dict(line.split("=", 1) for line in (await r.text()).splitlines())
    events.clear()
    cloud = {"Host": "cloud.internal"}
    async with http.post(base + "/", headers={**cloud, "Authorization":
                         f"AWS4-HMAC-SHA256 Credential={key}/20260101/lab-1/sts/aws4_request, Signature=0"}) as r:
        assert r.status == 200
        assert ROLE in (await r.json())["Arn"]
    async with http.get(base + f"/s3/bucket?X-Amz-Credential={env['AWS_ACCESS_KEY_ID']}%2F20260101", headers=cloud) as r:
        assert r.status == 200
    async with http.get(base + "/", headers={**cloud, "Authorization": "AWS4-HMAC-SHA256 Credential=AKIAOTHER/x"}) as r:
        assert r.status == 403
    assert [(e.category, e.kind, e.detail["canary_source"]) for e in events] == [
        ("escalation", "canary_credentials_used", "metadata"),
        ("escalation", "canary_credentials_used", "/.env"),
    ]


async def test_event_time_comes_from_the_given_clock(serve, http):
    web, base, events = await serve(clock=lambda: 42.5)
    async with http.get(base + "/.git/config") as r:
        await r.read()
    assert events[0].t == 42.5


async def test_metrics_parse_and_count_requests_by_route_class(serve, http):
    registry = CollectorRegistry()
    web, base, _ = await serve(labels={"run": "r1", "scenario": "crawl"}, registry=registry)
    for p in ("/", "/page/3", "/page/3", "/robots.txt", "/.env", "/nope", "/archive/x", "/calendar/"):
        async with http.get(base + p) as r:
            await r.read()
    async with http.get(base + CREDS, headers=META) as r:
        await r.read()
    async with http.get(base + "/metrics") as r:
        assert r.status == 200
        text = await r.text()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {(s.labels["route"], s.labels["status"]): s.value
               for s in fams["runaway_web_requests"].samples if s.name == "runaway_web_requests_total"}
    assert samples[("page", "200")] == 3
    assert samples[("honeypot", "200")] == 1
    assert samples[("not_found", "404")] == 1
    assert samples[("soft404", "200")] == 1
    assert samples[("trap_calendar", "200")] == 1
    assert samples[("metadata", "200")] == 1
    assert {route for route, _ in samples} <= set(ROUTES)
    assert all(s.labels["run"] == "r1" and s.labels["scenario"] == "crawl"
               for s in fams["runaway_web_requests"].samples)
    # The caller's registry holds it; the global default registry does not.
    assert registry.get_sample_value("runaway_web_requests_total", {
        "run": "r1", "scenario": "crawl", "route": "page", "status": "200"}) == 3
    assert REGISTRY.get_sample_value("runaway_web_requests_total", {
        "run": "r1", "scenario": "crawl", "route": "page", "status": "200"}) is None


async def test_the_web_served_alone_has_no_empty_run_labels(serve, http):
    # `runaway web` belongs to no run: its series carry route and status only, never run="".
    web, base, _ = await serve()
    async with http.get(base + "/") as r:
        await r.read()
    async with http.get(base + "/metrics") as r:
        text = await r.text()
    assert 'run=""' not in text and 'scenario=""' not in text
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "runaway_web_requests_total"]
    assert samples and all(set(s.labels) == {"route", "status"} for s in samples)
