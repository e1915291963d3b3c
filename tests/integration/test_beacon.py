"""The beacon endpoint in-process, on SQLite and PostgreSQL: formats, replacement, privacy,
bots, CORS, and a table of bad inputs that must each get their status, a message naming the
problem, and leave nothing stored."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
import sqlalchemy as sa
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.config import Settings
from app.db import Database
from app.ingest.decode import Rows
from app.ingest.writer import GroupCommitWriter
from app.models import Site
from app.observability import Metrics
from app.server import create_app
from app.sites import SiteCache, SiteEntry, create_site
from tests.conftest import ADMIN, BROWSER_UA, MOBILE_UA, beacon_headers, make_site

Client = AsyncTestClient[Litestar]


def page_view(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "v": 1,
        "id": "pv-1",
        "url": "https://shop.example/product/123?utm_source=x&email=a%40b.c#reviews",
        "nav": "navigate",
        "metrics": {"LCP": 1800.5, "FCP": 900, "TTFB": 120, "INP": 160, "CLS": 0.02},
        "attribution": {
            "LCP": {"element": "#hero>img", "url": "https://shop.example/hero.jpg", "renderDelay": 40},
            "INP": {
                "target": "button.buy",
                "type": "pointer",
                "loaf": [{"src": "https://cdn.x/a.js", "dur": 80}],
            },
        },
        "context": {"vw": 1280, "vh": 800, "ect": "4g", "dm": 8},
        "errors": [
            {"msg": "boom", "src": "https://shop.example/app.js", "line": 3, "col": 9, "stack": "at a"}
        ],
    }
    body.update(over)
    return body


async def post(client: Client, key: str, body: Any, **headers: str) -> Any:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await client.post(
        f"/api/v1/beacon?site={key}", content=data, headers={**beacon_headers(), **headers}
    )


async def rows(db: Database, table: str = "measurement") -> list[dict[str, Any]]:
    async with db.read_engine.connect() as conn:
        result = await conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY id"))
        return [dict(r._mapping) for r in result]


@pytest.fixture
async def site(client: Client) -> dict[str, Any]:
    return await make_site(client, query_allowlist=["utm_source"])


async def test_page_view_is_stored_normalised(client: Client, db: Database, site: dict[str, Any]) -> None:
    r = await post(client, site["key"], page_view())
    assert r.status_code == 204, r.text
    assert r.headers["access-control-allow-origin"] == "https://shop.example"
    assert "set-cookie" not in r.headers
    stored = await rows(db)
    assert {m["metric"]: m["value"] for m in stored} == {
        "LCP": 1800.5,
        "FCP": 900,
        "TTFB": 120,
        "INP": 160,
        "CLS": 0.02,
    }
    lcp = next(m for m in stored if m["metric"] == "LCP")
    # Query string stripped except the allowlisted parameter, fragment gone.
    assert lcp["url"] == "https://shop.example/product/123?utm_source=x"
    assert lcp["page_group"] == "/product/:id"
    assert lcp["device"] == "desktop"
    assert lcp["browser"] == "chrome"
    assert lcp["connection"] == "4g"
    assert lcp["nav"] == "navigate"
    assert not lcp["is_bot"]
    attribution = (
        lcp["attribution"] if isinstance(lcp["attribution"], dict) else json.loads(lcp["attribution"])
    )
    assert attribution["element"] == "#hero>img"
    errors = await rows(db, "js_error")
    assert [(e["message"], e["line"], e["page_group"]) for e in errors] == [("boom", 3, "/product/:id")]
    # The client IP is never stored, in any column of any table.
    for row in [*stored, *errors]:
        assert not any("127.0.0.1" in str(v) or "testclient" in str(v) for v in row.values())


async def test_page_view_resent_replaces_values_and_keeps_errors_once(
    client: Client, db: Database, site: dict[str, Any]
) -> None:
    assert (await post(client, site["key"], page_view(metrics={"CLS": 0.01, "LCP": 1000}))).status_code == 204
    assert (await post(client, site["key"], page_view(metrics={"CLS": 0.3, "INP": 250}))).status_code == 204
    stored = {m["metric"]: m["value"] for m in await rows(db)}
    assert stored == {"CLS": 0.3, "LCP": 1000, "INP": 250}
    assert len(await rows(db, "js_error")) == 1


async def test_web_vitals_repeated_reports_count_once_with_last_value(
    client: Client, db: Database, site: dict[str, Any]
) -> None:
    """web-vitals with reportAllChanges re-sends CLS/INP under the same metric id."""
    url = "https://shop.example/cart"
    for value in (0.05, 0.12, 0.31):
        body = {"name": "CLS", "value": value, "id": "v5-1-cls", "delta": 0.05, "rating": "good", "url": url,
                "navigationType": "navigate", "entries": [{"value": 0.05, "sources": []}]}  # fmt: skip
        assert (await post(client, site["key"], body)).status_code == 204
    for value in (80, 240):
        body = {"name": "INP", "value": value, "id": "v5-1-inp", "url": url}
        assert (await post(client, site["key"], body)).status_code == 204
    summary = (await client.get(f"/api/v1/sites/{site['id']}/summary")).json()["metrics"]
    assert summary["CLS"]["count"] == 1
    assert summary["CLS"]["p75"] == 0.31
    assert summary["INP"]["count"] == 1
    assert summary["INP"]["p75"] == 240


async def test_web_vitals_array_with_attribution_and_referer(
    client: Client, db: Database, site: dict[str, Any]
) -> None:
    batch = [
        {"name": "LCP", "value": 2100, "id": "v5-a", "navigationType": "back-forward-cache",
         "attribution": {"target": "main>img.hero", "url": "https://shop.example/h.jpg", "timeToFirstByte": 90,
                         "lcpEntry": {"huge": "x" * 100}}},
        {"name": "TTFB", "value": 90, "id": "v5-b"},
    ]  # fmt: skip
    r = await post(
        client, site["key"], batch, referer="https://shop.example/p/42?secret=1", **{"user-agent": MOBILE_UA}
    )
    assert r.status_code == 204, r.text
    stored = {m["metric"]: m for m in await rows(db)}
    assert stored["LCP"]["nav"] == "back-forward-cache"
    assert stored["LCP"]["url"] == "https://shop.example/p/42"
    assert stored["LCP"]["device"] == "mobile"
    attribution = stored["LCP"]["attribution"]
    attribution = attribution if isinstance(attribution, dict) else json.loads(attribution)
    assert attribution == {"element": "main>img.hero", "url": "https://shop.example/h.jpg", "ttfb": 90}


async def test_bots_are_stored_tagged_and_kept_out_of_figures(
    client: Client, db: Database, site: dict[str, Any]
) -> None:
    headless = BROWSER_UA.replace("Chrome/", "HeadlessChrome/")
    assert (
        await post(client, site["key"], page_view(id="bot"), **{"user-agent": headless})
    ).status_code == 204
    assert (await post(client, site["key"], page_view(id="human"))).status_code == 204
    assert sorted((m["pageview_id"], bool(m["is_bot"])) for m in await rows(db) if m["metric"] == "LCP") == [
        ("bot", True),
        ("human", False),
    ]
    summary = (await client.get(f"/api/v1/sites/{site['id']}/summary")).json()["metrics"]
    assert summary["LCP"]["count"] == 1


async def test_cors_preflight_only_for_allowed_origins(client: Client, site: dict[str, Any]) -> None:
    ok = await client.options(
        f"/api/v1/beacon?site={site['key']}",
        headers={"origin": "https://shop.example", "access-control-request-method": "POST"},
    )
    assert ok.status_code == 204
    assert ok.headers["access-control-allow-origin"] == "https://shop.example"
    assert "POST" in ok.headers["access-control-allow-methods"]
    bad = await client.options(
        f"/api/v1/beacon?site={site['key']}",
        headers={"origin": "https://evil.example", "access-control-request-method": "POST"},
    )
    assert bad.status_code == 403
    assert "access-control-allow-origin" not in bad.headers


async def test_other_methods_get_405_naming_the_allowed_ones(client: Client, site: dict[str, Any]) -> None:
    for method in ("GET", "PUT", "DELETE"):
        r = await client.request(method, f"/api/v1/beacon?site={site['key']}")
        assert r.status_code == 405, (method, r.text)
        assert r.headers["allow"] == "OPTIONS, POST"
        assert "POST" in r.json()["detail"]
    # Not refused beacons: the rejection counter is for POSTs.
    assert 'reason="method"' not in (await client.get("/metrics")).text


BAD: list[tuple[str, Callable[[str], dict[str, Any]], int, str]] = [
    # (case, request builder given the site key, status, words the message must contain)
    ("no key", lambda k: {"query": "", "body": page_view()}, 400, "site"),
    ("unknown key", lambda k: {"query": "nope", "body": page_view()}, 403, "unknown site key"),
    ("foreign origin", lambda k: {"headers": {"origin": "https://evil.example"}}, 403, "https://evil.example"),
    ("no origin", lambda k: {"headers": {"origin": ""}}, 403, "Origin"),
    ("xml content type", lambda k: {"headers": {"content-type": "application/xml"}}, 415, "application/xml"),
    ("form content type", lambda k: {"headers": {"content-type": "application/x-www-form-urlencoded"}}, 415, "text/plain"),
    ("too large", lambda k: {"body": page_view(url="https://shop.example/" + "a" * 70000)}, 413, "FIELDLAB_BEACON_MAX_BYTES"),
    ("bad content length", lambda k: {"headers": {"content-length": "lots"}}, 400, "Content-Length"),
    ("not json", lambda k: {"body": b"{nope"}, 400, "malformed JSON"),
    ("empty", lambda k: {"body": b""}, 400, "empty"),
    ("scalar", lambda k: {"body": 42}, 400, "expected"),
    ("string metric", lambda k: {"body": page_view(metrics={"LCP": "fast"})}, 400, "$.metrics.LCP"),
    ("negative metric", lambda k: {"body": page_view(metrics={"INP": -5})}, 400, "$.metrics.INP"),
    ("infinite metric", lambda k: {"body": b'{"id":"x","url":"https://shop.example/","metrics":{"LCP":1e999}}'}, 400, "$.metrics.LCP"),
    ("unknown metric", lambda k: {"body": page_view(metrics={"FOO": 1})}, 400, "$.metrics"),
    ("bad url", lambda k: {"body": page_view(url="javascript:alert(1)")}, 400, "$.url"),
    ("bad id", lambda k: {"body": page_view(id="no spaces allowed")}, 400, "$.id"),
    ("long string", lambda k: {"body": page_view(attribution={"LCP": {"element": "x" * 3000}})}, 400, "$.attribution.LCP.element"),
    ("too many errors", lambda k: {"body": page_view(errors=[{"msg": "e"}] * 21)}, 400, "$.errors"),
    ("web-vitals bad value", lambda k: {"body": [{"name": "LCP", "value": 1, "id": "a"}, {"name": "LCP", "value": "x", "id": "b"}]}, 400, "$[1].value"),
    ("web-vitals too many", lambda k: {"body": [{"name": "LCP", "value": 1, "id": f"i{i}"} for i in range(51)]}, 400, "at most 50"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "build", "status", "words"), BAD, ids=[b[0] for b in BAD])
async def test_bad_input_is_refused_with_reason_and_nothing_stored(
    client: Client,
    db: Database,
    site: dict[str, Any],
    case: str,
    build: Callable[[str], dict[str, Any]],
    status: int,
    words: str,
) -> None:
    spec = build(site["key"])
    key = spec.get("query", site["key"])
    body = spec.get("body", page_view())
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {k: v for k, v in {**beacon_headers(), **spec.get("headers", {})}.items() if v}
    r = await client.post(
        f"/api/v1/beacon?site={key}" if key else "/api/v1/beacon", content=data, headers=headers
    )
    assert r.status_code == status, r.text
    assert r.status_code != 500
    detail = r.json()["detail"]
    assert words in detail, detail
    assert await rows(db) == []
    assert await rows(db, "js_error") == []
    metrics = (await client.get("/metrics")).text
    assert "fieldlab_beacons_rejected_total{reason=" in metrics


async def test_rate_limits_per_ip_and_per_site_answer_429_with_retry_after(settings: Settings) -> None:
    limited = create_app(
        replace(settings, rate_limit_per_ip=3, rate_limit_per_site=5, trusted_proxies="testclient")
    )
    async with AsyncTestClient(app=limited) as c:
        site = await make_site(c)
        # Litestar's windows are whole clock seconds: start the bursts right after a tick.
        await asyncio.sleep(1 - time.time() % 1 + 0.01)
        started = time.time()
        statuses = []
        for i in range(4):
            r = await post(c, site["key"], page_view(id=f"ip-{i}"), **{"x-forwarded-for": "203.0.113.7"})
            statuses.append(r.status_code)
        # Other IPs still get in until the site's own budget (5/s) is used up.
        more = [
            (
                await post(c, site["key"], page_view(id=f"s-{i}"), **{"x-forwarded-for": f"198.51.100.{i}"})
            ).status_code
            for i in range(4)
        ]
        assert time.time() - started < 0.95, "the bursts took too long to stay inside one window"
        assert statuses == [204, 204, 204, 429]
        assert int(r.headers["retry-after"]) >= 1
        assert r.json()["status_code"] == 429
        assert more == [204, 204, 429, 429]


async def test_a_rate_limited_beacon_is_logged_and_counted_as_429(settings: Settings) -> None:
    """The refusal comes from a middleware; it must still carry the request id and be counted
    under its own status, not as a server error."""
    limited = create_app(replace(settings, rate_limit_per_ip=1, trusted_proxies="testclient"))
    async with AsyncTestClient(app=limited) as c:
        site = await make_site(c)
        ip = {"x-forwarded-for": "203.0.113.99"}
        await asyncio.sleep(1 - time.time() % 1 + 0.01)  # both inside one window
        first = await post(c, site["key"], page_view(id="rl-1"), **ip)
        refused = await post(c, site["key"], page_view(id="rl-2"), **ip, **{"x-request-id": "rl-probe.1"})
        metrics = (await c.get("/metrics")).text
    assert (first.status_code, refused.status_code) == (204, 429)
    assert refused.headers["x-request-id"] == "rl-probe.1"
    assert refused.json() == {"status_code": 429, "detail": "rate limit exceeded; retry later"}
    assert int(refused.headers["retry-after"]) >= 1
    beacon_429 = re.search(
        r'fieldlab_http_request_duration_seconds_count\{[^}]*route="/api/v1/beacon"[^}]*status="429"[^}]*\} (\S+)',
        metrics,
    )
    assert beacon_429 is not None, metrics[-2000:]
    assert float(beacon_429.group(1)) == 1.0
    assert 'route="/api/v1/beacon",status="500"' not in metrics
    assert 'fieldlab_beacons_rejected_total{reason="rate_limited"} 1.0' in metrics


async def test_database_down_answers_503_not_500(settings: Settings) -> None:
    broken = replace(
        settings, database_url="postgresql+asyncpg://postgres@127.0.0.1:1/none", auto_migrate=False
    )
    async with AsyncTestClient(app=create_app(broken)) as c:
        r = await c.post("/api/v1/beacon?site=whatever", content=b"{}", headers=beacon_headers())
        assert r.status_code == 503
        assert "retry-after" in r.headers
        ready = await c.get("/readyz")
        assert ready.status_code == 503
        assert "database" in ready.json()["problems"][0]
        assert (await c.get("/healthz")).status_code == 200


async def test_no_cookies_anywhere_on_the_beacon_path(client: Client, site: dict[str, Any]) -> None:
    for r in (
        await post(client, site["key"], page_view()),
        await post(client, site["key"], b"{bad"),
        await client.options(
            f"/api/v1/beacon?site={site['key']}", headers={"origin": "https://shop.example"}
        ),
    ):
        assert "set-cookie" not in r.headers


async def test_beacons_need_no_token_but_the_api_does(client: Client, site: dict[str, Any]) -> None:
    anonymous = {"authorization": ""}
    r = await post(client, site["key"], page_view(id="anon"), **anonymous)
    assert r.status_code == 204
    assert (await client.get("/api/v1/sites", headers=anonymous)).status_code == 401
    assert (
        await client.get("/api/v1/sites", headers={"authorization": f"Bearer {ADMIN}x"})
    ).status_code == 401


async def test_rate_limit_store_can_be_redis(settings: Settings) -> None:
    """With FIELDLAB_REDIS_URL the limiter's counts live in Redis, shared by every worker."""
    import uuid

    import redis.asyncio as redis

    key_suffix = uuid.uuid4().hex[:8]  # a fresh client address per run: no leftovers from earlier runs
    limited = create_app(
        replace(
            settings, redis_url="redis://127.0.0.1:6379/0", rate_limit_per_ip=2, trusted_proxies="testclient"
        )
    )
    async with AsyncTestClient(app=limited) as c:
        site = await make_site(c)
        ip = {"x-forwarded-for": f"2001:db8::{int(key_suffix[:4], 16):x}"}
        statuses = [(await post(c, site["key"], page_view(id=f"r{i}"), **ip)).status_code for i in range(3)]
    assert statuses == [204, 204, 429]
    check = redis.from_url("redis://127.0.0.1:6379/0")
    try:
        keys = [k async for k in check.scan_iter(match="fieldlab_rl*")]
    finally:
        await check.aclose()
    assert keys, "the limiter did not use Redis"


async def test_demo_shop_carries_the_snippet_for_the_demo_site(settings: Settings) -> None:
    from app.demo import seed_demo_site

    db = Database(settings)
    try:
        site_id, key = await seed_demo_site(db=db, host="127.0.0.1", port=8000)
        assert (await seed_demo_site(db=db, host="127.0.0.1", port=8000)) == (site_id, key)  # idempotent
    finally:
        await db.dispose()
    async with AsyncTestClient(app=create_app(replace(settings, demo=True))) as c:
        home = await c.get("/demo/")
        assert home.status_code == 200
        assert f'data-site="{key}"' in home.text
        assert 'src="/fieldlab.js"' in home.text
        assert (await c.get("/demo/product/7")).status_code == 200
        assert (await c.get("/demo/../etc/passwd")).status_code == 404
        r = await c.post(
            f"/api/v1/beacon?site={key}",
            content=json.dumps(
                page_view(url="http://127.0.0.1:8000/demo/product/7", attribution={}, errors=[])
            ),
            headers=beacon_headers(origin="http://127.0.0.1:8000"),
        )
        assert r.status_code == 204
    async with AsyncTestClient(app=create_app(settings)) as off:
        assert (await off.get("/demo/")).status_code == 404


# --- the fast path's parts, on both databases ------------------------------------------------


def _rows(site_id: int, pageview: str, ts: int) -> Rows:
    m = {"site_id": site_id, "pageview_id": pageview, "metric": "LCP", "value": 1200.0, "ts": ts,
         "received_ms": ts, "url": "https://shop.example/", "page_group": "/", "device": "desktop",
         "nav": "navigate", "connection": "4g", "browser": "chrome", "is_bot": False,
         "attribution": {"element": "#hero", "renderDelay": 40.5}}  # fmt: skip
    e = {"site_id": site_id, "pageview_id": pageview, "seq": 0, "ts": ts, "message": "boom", "source": "a.js",
         "line": 1, "col": 2, "stack": "at a", "url": "https://shop.example/", "page_group": "/",
         "device": "desktop", "browser": "chrome", "is_bot": False}  # fmt: skip
    return Rows(measurements=[m], errors=[e])


async def test_writer_stores_rows_errors_and_late_hour_marks(db: Database) -> None:
    """The writer's driver-level statements (executemany / unnest arrays) store what the ORM
    statements did: JSON attribution, errors, and a dirty mark for a closed hour only."""
    site = await create_site(db=db, name="raw", origins=["https://shop.example"])
    assert site.id is not None
    writer = GroupCommitWriter(db, Metrics(), queue_max=10, batch_max_rows=100, batch_max_wait_s=0)
    writer.start()
    now = int(time.time() * 1000)
    two_hours_ago = now - 2 * 3_600_000
    try:
        await asyncio.wait_for(
            asyncio.gather(
                writer.submit(_rows(site.id, "fresh", now)),
                writer.submit(_rows(site.id, "late", two_hours_ago)),
            ),
            30,
        )
    finally:
        await writer.stop()
    measured = {r["pageview_id"]: r for r in await rows(db)}
    assert set(measured) == {"fresh", "late"}
    attribution = measured["late"]["attribution"]
    attribution = attribution if isinstance(attribution, dict) else json.loads(attribution)
    assert attribution == {"element": "#hero", "renderDelay": 40.5}
    assert measured["fresh"]["is_bot"] in (False, 0)
    assert {r["pageview_id"] for r in await rows(db, "js_error")} == {"fresh", "late"}
    async with db.read_engine.connect() as conn:
        marks = (await conn.execute(sa.text("SELECT site_id, metric, hour_ms FROM dirty_hour"))).all()
    assert [tuple(m) for m in marks] == [(site.id, "LCP", two_hours_ago - two_hours_ago % 3_600_000)]


async def test_writer_pipelines_under_load_and_waits_only_for_a_lone_beacon(db: Database) -> None:
    site = await create_site(db=db, name="pipe", origins=["https://shop.example"])
    assert site.id is not None
    metrics = Metrics()
    # A long wait, so whether the writer waited is plain to see.
    writer = GroupCommitWriter(db, metrics, queue_max=100, batch_max_rows=100, batch_max_wait_s=3.0)
    writer.start()
    now = int(time.time() * 1000)
    try:
        started = time.monotonic()
        lone = writer.submit(_rows(site.id, "lone", now))
        await asyncio.sleep(1.0)
        assert not lone.done(), "a lone beacon waits up to batch_max_wait for company"
        await asyncio.wait_for(lone, 30)
        assert time.monotonic() - started >= 2.9
        # Already waiting when the writer looks: written at once, in one transaction.
        await asyncio.sleep(0)
        busy = [writer.submit(_rows(site.id, f"busy-{i}", now)) for i in range(5)]
        started = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*busy), 30)
        assert time.monotonic() - started < 2.5
    finally:
        await writer.stop()
    assert metrics.registry.get_sample_value("fieldlab_writer_batch_size_count") == 2


async def test_site_cache_serves_stale_while_one_task_refreshes(db: Database) -> None:
    site = await create_site(db=db, name="cached", origins=["https://old.example"])
    loads = 0

    class Counting(SiteCache):
        async def _load(self, key: str) -> SiteEntry | None:
            nonlocal loads
            loads += 1
            return await super()._load(key)

    cache = Counting(db, ttl=0.2)
    # Concurrent first requests share one load.
    first = await asyncio.gather(*(cache.get(site.key) for _ in range(10)))
    assert loads == 1
    assert all(e is not None and e.allows("https://old.example") for e in first)
    async with db.write() as session:
        await session.exec(sa.update(Site).where(Site.id == site.id).values(origins=["https://new.example"]))  # type: ignore[call-overload]
    await asyncio.sleep(0.3)  # expired
    stale = await asyncio.gather(*(cache.get(site.key) for _ in range(10)))
    assert all(e is not None and e.allows("https://old.example") for e in stale), "no request waited"
    await asyncio.sleep(0.05)  # the one refresh lands
    assert loads == 2
    fresh = await cache.get(site.key)
    assert fresh is not None
    assert fresh.allows("https://new.example")
    assert not fresh.allows("https://old.example")
    assert await cache.get("no-such-key") is None
