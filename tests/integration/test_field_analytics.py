"""Rollups and the field API on SQLite and PostgreSQL: accuracy against exact computation,
replacement after rollup, filters and group_by, distribution, attribution, the batch query,
ETag/304, cache invalidation, retention and the slow-query log."""

from __future__ import annotations

import json
import random
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.config import Settings, SettingsError
from app.db import Database
from app.field.rollups import DAY, HOUR
from app.field.stats import percentile
from app.ingest.writer import upsert_measurements
from app.models import Rollup, table
from app.server import create_app
from tests.conftest import ADMIN, beacon_headers, make_site
from tests.integration.ui_data import sign_in

Client = AsyncTestClient[Litestar]
DEVICES = ("mobile", "desktop", "tablet")
GROUPS = ("/", "/product/:id", "/cart")


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def now_ms() -> int:
    return int(time.time() * 1000)


async def insert(db: Database, rows: list[dict[str, Any]]) -> None:
    """Rows through the writer's own upsert statement (the real ingest SQL)."""
    base = {"received_ms": now_ms(), "url": "https://shop.example/", "browser": "chrome", "is_bot": False,
            "attribution": None, "nav": "navigate", "connection": "4g"}  # fmt: skip
    async with db.write_conn() as conn:
        await conn.execute(upsert_measurements(db.write_engine.dialect.name), [{**base, **r} for r in rows])


def generate(site_id: int, *, hours: int, per_hour: int, seed: int = 3) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    start = (now_ms() // HOUR - hours) * HOUR
    rows = []
    for h in range(hours):
        for i in range(per_hour):
            ts = start + h * HOUR + rng.randrange(HOUR)
            device = rng.choice(DEVICES)
            rows.append({"site_id": site_id, "pageview_id": f"h{h}-{i}", "metric": "LCP", "ts": ts,
                         "value": round(rng.lognormvariate(7.6 + (device == "mobile") * 0.4, 0.5), 1),
                         "device": device, "page_group": rng.choice(GROUPS),
                         "nav": rng.choice(("navigate", "reload")), "connection": rng.choice(("4g", "3g"))})  # fmt: skip
    return rows


async def run_job(client: Client, name: str) -> None:
    r = await client.post(f"/api/v1/admin/jobs/{name}/run")
    assert r.status_code == 200, r.text
    assert r.json()["error"] is None, r.json()


async def rollup_count(db: Database) -> int:
    async with db.read_engine.connect() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(table(Rollup)))).scalar_one())


@pytest.fixture
async def loaded(client: Client, db: Database) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    site = await make_site(client)
    rows = generate(site["id"], hours=50, per_hour=40)
    await insert(db, rows)
    await run_job(client, "rollups")
    return site, rows


async def test_rollups_answer_within_one_percent_of_exact(
    client: Client, db: Database, loaded: tuple[dict[str, Any], list[dict[str, Any]]]
) -> None:
    site, rows = loaded
    assert await rollup_count(db) > 0
    since, until = min(r["ts"] for r in rows), now_ms()
    params = {"since": iso(since), "until": iso(until)}
    summary = (await client.get(f"/api/v1/sites/{site['id']}/summary", params=params)).json()["metrics"][
        "LCP"
    ]
    exact = sorted(r["value"] for r in rows)
    assert summary["count"] == len(exact)
    for name, q in (("p50", 0.5), ("p75", 0.75), ("p95", 0.95)):
        assert summary[name] == pytest.approx(percentile(exact, q), rel=0.01)
    assert summary["good"] == pytest.approx(sum(v <= 2500 for v in exact) / len(exact), abs=1e-4)

    mobile = (await client.get(f"/api/v1/sites/{site['id']}/summary", params={**params, "device": "mobile",
                                                                               "page": "/product/5"})).json()  # fmt: skip
    values = sorted(r["value"] for r in rows if r["device"] == "mobile" and r["page_group"] == "/product/:id")
    assert mobile["metrics"]["LCP"]["count"] == len(values)
    assert mobile["metrics"]["LCP"]["p75"] == pytest.approx(percentile(values, 0.75), rel=0.01)


async def test_hourly_and_daily_series_with_group_by(
    client: Client, loaded: tuple[dict[str, Any], list[dict[str, Any]]]
) -> None:
    site, rows = loaded
    since = min(r["ts"] for r in rows) // HOUR * HOUR
    params = {"metric": "LCP", "stat": "p75", "bucket": "hour", "since": iso(since), "until": iso(now_ms())}
    hourly = (await client.get(f"/api/v1/sites/{site['id']}/series", params=params)).json()
    [line] = hourly["series"]
    assert len(line["points"]) == 50
    for point in line["points"][:5]:
        exact = sorted(r["value"] for r in rows if point["t"] <= r["ts"] < point["t"] + HOUR)
        assert point["count"] == len(exact)
        assert point["value"] == pytest.approx(percentile(exact, 0.75), rel=0.01)

    by_device = (await client.get(f"/api/v1/sites/{site['id']}/series",
                                  params={**params, "bucket": "day", "group_by": "device"})).json()  # fmt: skip
    assert {line["group"] for line in by_device["series"]} == set(DEVICES)
    for line in by_device["series"]:
        assert sum(p["count"] for p in line["points"]) == sum(r["device"] == line["group"] for r in rows)
        for point in line["points"]:
            exact = sorted(r["value"] for r in rows
                           if r["device"] == line["group"] and point["t"] <= r["ts"] < point["t"] + DAY)  # fmt: skip
            assert point["value"] == pytest.approx(percentile(exact, 0.75), rel=0.01)

    counts = (await client.get(f"/api/v1/sites/{site['id']}/series",
                               params={**params, "stat": "count", "nav": "reload", "connection": "3g"})).json()  # fmt: skip
    total = sum(p["value"] for p in counts["series"][0]["points"])
    assert total == sum(r["nav"] == "reload" and r["connection"] == "3g" for r in rows)


async def test_re_reported_values_replace_before_and_after_the_next_rollup(
    client: Client, db: Database, loaded: tuple[dict[str, Any], list[dict[str, Any]]]
) -> None:
    site, rows = loaded
    url = f"/api/v1/sites/{site['id']}/summary"
    params = {"since": iso(min(r["ts"] for r in rows)), "until": iso(now_ms())}
    before = (await client.get(url, params=params)).json()["metrics"]["LCP"]
    # Ten page views from a rolled-up hour report a much worse LCP again (same page-view ids),
    # through the beacon endpoint as a browser would.
    hour = rows[20 * 40]["ts"] // HOUR * HOUR
    changed = [r for r in rows if hour <= r["ts"] < hour + HOUR][:10]
    for r in changed:
        body = {
            "id": r["pageview_id"],
            "url": "https://shop.example/",
            "ts": r["ts"],
            "metrics": {"LCP": 30_000},
        }
        sent = await client.post(
            f"/api/v1/beacon?site={site['key']}", content=json.dumps(body), headers=beacon_headers()
        )
        assert sent.status_code == 204
    ids = {r["pageview_id"] for r in changed}
    updated = [{**r, "value": 30_000.0} if r["pageview_id"] in ids else r for r in rows]
    exact = sorted(r["value"] for r in updated)
    during = (await client.get(url, params=params)).json()["metrics"]["LCP"]
    assert during["count"] == before["count"] == len(rows)  # replaced, not added
    assert during["p95"] == pytest.approx(percentile(exact, 0.95), rel=0.01)
    assert during["poor"] == pytest.approx(sum(v > 4000 for v in exact) / len(exact), abs=1e-4)
    await run_job(client, "rollups")
    after = (await client.get(url, params=params)).json()["metrics"]["LCP"]
    assert after["count"] == len(rows)
    assert after["p95"] == pytest.approx(percentile(exact, 0.95), rel=0.01)
    assert after["poor"] == during["poor"]


async def test_etag_304_and_invalidation_when_data_lands(client: Client) -> None:
    site = await make_site(client)
    url = f"/api/v1/sites/{site['id']}/series?metric=LCP&bucket=hour"
    first = await client.get(url)
    assert first.status_code == 200
    etag = first.headers["etag"]
    assert "no-cache" in first.headers["cache-control"]
    again = await client.get(url, headers={"if-none-match": etag})
    assert again.status_code == 304
    body = {"id": "fresh", "url": "https://shop.example/", "metrics": {"LCP": 1234}}
    r = await client.post(
        f"/api/v1/beacon?site={site['key']}", content=json.dumps(body), headers=beacon_headers()
    )
    assert r.status_code == 204
    changed = await client.get(url, headers={"if-none-match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    assert changed.json()["series"][0]["points"][-1]["count"] == 1


async def test_distribution_bins_count_everything_in_rating_bands(
    client: Client, loaded: tuple[dict[str, Any], list[dict[str, Any]]]
) -> None:
    site, rows = loaded
    params = {"metric": "LCP", "since": iso(min(r["ts"] for r in rows)), "until": iso(now_ms()), "bins": "12"}
    dist = (await client.get(f"/api/v1/sites/{site['id']}/distribution", params=params)).json()
    assert dist["count"] == len(rows)
    assert sum(b["count"] for b in dist["bins"]) == len(rows)
    edges = [b["from"] for b in dist["bins"]]
    assert 2500 in edges
    assert 4000 in edges
    for b in dist["bins"]:
        if b["to"] is not None and b["to"] <= 2500:
            assert b["rating"] == "good"
        elif b["from"] >= 4000:
            assert b["rating"] == "poor"
        else:
            assert b["rating"] == "needs_improvement"
    good = sum(b["count"] for b in dist["bins"] if b["rating"] == "good")
    assert good == pytest.approx(sum(r["value"] <= 2500 for r in rows), abs=len(rows) * 0.02)


async def test_attribution_top_items(client: Client) -> None:
    site = await make_site(client)
    views = [
        ("a", 3000, {"LCP": {"element": "#hero>img", "url": "https://shop.example/hero.jpg"}}),
        ("b", 4000, {"LCP": {"element": "#hero>img", "url": "https://shop.example/hero.jpg"}}),
        ("c", 1000, {"LCP": {"element": "h1.title"}}),
        (
            "d",
            300,
            {
                "INP": {
                    "target": "button.buy",
                    "loaf": [{"src": "https://cdn.other.example/a.js", "dur": 90}, {"src": "", "dur": 20}],
                }
            },
        ),
        (
            "e",
            500,
            {"INP": {"target": "button.buy", "loaf": [{"src": "https://shop.example/app.js", "dur": 200}]}},
        ),
    ]
    for pv, value, attr in views:
        metric = next(iter(attr))
        body = {"id": pv, "url": "https://shop.example/p", "metrics": {metric: value}, "attribution": attr}
        r = await client.post(
            f"/api/v1/beacon?site={site['key']}", content=json.dumps(body), headers=beacon_headers()
        )
        assert r.status_code == 204, r.text
    lcp = (await client.get(f"/api/v1/sites/{site['id']}/attribution?metric=LCP")).json()
    assert lcp["by"] == "element"
    assert lcp["items"][0] == {"item": "#hero>img", "count": 2, "p75": 3750.0}
    assert lcp["items"][1]["item"] == "h1.title"
    urls = (await client.get(f"/api/v1/sites/{site['id']}/attribution?metric=LCP&by=url")).json()["items"]
    assert {i["item"]: i["count"] for i in urls} == {
        "https://shop.example/hero.jpg": 2,
        "(no resource: text)": 1,
    }
    scripts = (await client.get(f"/api/v1/sites/{site['id']}/attribution?metric=INP&by=script")).json()[
        "items"
    ]
    by_item = {i["item"]: i for i in scripts}
    assert by_item["https://cdn.other.example/a.js"]["cross_origin"] is True
    assert by_item["https://shop.example/app.js"]["cross_origin"] is False
    assert by_item["(unknown)"]["count"] == 1
    bad = await client.get(f"/api/v1/sites/{site['id']}/attribution?metric=CLS&by=script")
    assert bad.status_code == 400
    assert "by" in bad.json()["detail"]


async def test_batch_query_answers_several_in_one_round_trip(client: Client) -> None:
    site = await make_site(client)
    body = {"queries": [
        {"kind": "summary", "site_id": site["id"]},
        {"kind": "series", "site_id": site["id"], "params": {"metric": "CLS", "bucket": "day"}},
        {"kind": "series", "site_id": site["id"], "params": {"metric": "XYZ"}},
        {"kind": "summary", "site_id": 9999},
    ]}  # fmt: skip
    r = await client.post("/api/v1/query", json=body)
    assert r.status_code == 200
    results = r.json()["results"]
    assert set(results[0]["data"]["metrics"]) == {"LCP", "INP", "CLS", "FCP", "TTFB"}
    assert results[1]["data"]["metric"] == "CLS"
    assert "queries[2]: metric" in results[2]["error"]
    assert results[3]["status_code"] == 404


async def test_retention_prunes_and_queries_across_the_boundary_still_work(
    client: Client, db: Database, settings: Settings
) -> None:
    site = await make_site(client)
    old_hour = (now_ms() // HOUR) * HOUR - 40 * DAY
    await insert(db, [{"site_id": site["id"], "pageview_id": f"old{i}", "metric": "LCP", "ts": old_hour + i,
                       "value": 1000.0 + i, "device": "desktop", "page_group": "/"} for i in range(20)])  # fmt: skip
    await insert(db, [{"site_id": site["id"], "pageview_id": "new", "metric": "LCP", "ts": now_ms() - HOUR,
                       "value": 2000.0, "device": "desktop", "page_group": "/"}])  # fmt: skip
    await run_job(client, "rollups")
    await run_job(client, "retention")  # raw kept 30 days by default: the old rows go, their rollups stay
    async with db.read_engine.connect() as conn:
        raw = (await conn.execute(sa.text("SELECT count(*) FROM measurement"))).scalar_one()
    assert raw == 1
    params = {"since": iso(old_hour - DAY), "until": iso(now_ms())}
    lcp = (await client.get(f"/api/v1/sites/{site['id']}/summary", params=params)).json()["metrics"]["LCP"]
    assert lcp["count"] == 21
    short = create_app(replace(settings, rollup_retention_days=10))
    async with AsyncTestClient(app=short) as c:
        c.headers["authorization"] = f"Bearer {ADMIN}"
        await run_job(c, "retention")
        lcp = (await c.get(f"/api/v1/sites/{site['id']}/summary", params=params)).json()["metrics"]["LCP"]
    assert lcp["count"] == 1


async def test_hourly_rollups_can_go_before_daily_ones(
    client: Client, db: Database, settings: Settings
) -> None:
    """FIELDLAB_HOURLY_ROLLUP_RETENTION_DAYS: past it only day rollups are left, so a range that
    starts there is answered from the start of that UTC day, and an hourly series has no hours."""
    site = await make_site(client)
    day = (now_ms() // DAY) * DAY - 40 * DAY
    rows = [{"site_id": site["id"], "pageview_id": f"{part}{i}", "metric": "LCP", "ts": at + i * 1000,
             "value": 1000.0 + i, "device": "desktop", "page_group": "/"}
            for part, at in (("night", day + 3 * HOUR), ("evening", day + 20 * HOUR)) for i in range(10)]  # fmt: skip
    await insert(db, rows)
    await run_job(client, "rollups")
    params = {"since": iso(day + 12 * HOUR), "until": iso(now_ms())}
    summary = f"/api/v1/sites/{site['id']}/summary"
    exact = (await client.get(summary, params=params)).json()
    assert exact["metrics"]["LCP"]["count"] == 10
    assert covered(exact) == (day + 12 * HOUR, None)
    hours = (
        await client.get(f"/api/v1/sites/{site['id']}/series", params={**params, "bucket": "hour"})
    ).json()
    assert [(p["t"], p["count"]) for line in hours["series"] for p in line["points"] if p["count"]] == [
        (day + 20 * HOUR, 10)
    ]

    hourly = replace(settings, hourly_rollup_retention_days=35)
    async with AsyncTestClient(app=create_app(hourly)) as c:
        c.headers["authorization"] = f"Bearer {ADMIN}"
        await run_job(c, "retention")
        async with db.read_engine.connect() as conn:
            left = dict(
                (await conn.execute(sa.text("SELECT period, count(*) FROM rollup GROUP BY period"))).all()
            )
        assert "h" not in left
        assert left["d"] > 0
        # The whole day now: its hours are gone, so the morning's 10 page views come with it.
        widened = (await c.get(summary, params=params)).json()
        lcp = widened["metrics"]["LCP"]
        assert (lcp["count"], lcp["p50"]) == (20, pytest.approx(1004.5, rel=0.02))
        # ...and the answer says so, as the distribution's does; a range that ends before the
        # horizon ends at the end of its day.
        assert covered(widened) == (day, None)
        distribution = f"/api/v1/sites/{site['id']}/distribution"
        assert covered((await c.get(distribution, params=params)).json()) == (day, None)
        short = {"since": iso(day + 12 * HOUR), "until": iso(day + 21 * HOUR)}
        assert covered((await c.get(summary, params=short)).json()) == (day, day + DAY)
        series = (
            await c.get(f"/api/v1/sites/{site['id']}/series", params={**params, "bucket": "hour"})
        ).json()
        assert [p for line in series["series"] for p in line["points"] if p["count"]] == []
        days = (await c.get(f"/api/v1/sites/{site['id']}/series", params={**params, "bucket": "day"})).json()
        assert [p["count"] for line in days["series"] for p in line["points"] if p["count"]] == [20]

        # The dashboard draws such a range per day: there are no hours left to draw.
        await sign_in(c, ADMIN)
        first = datetime.fromtimestamp(day / 1000, UTC).date()
        custom = {"range": "custom", "since": str(first), "until": str(first + timedelta(days=2))}
        page = await c.get(f"/ui/sites/{site['id']}/trends", params=custom)
        assert page.status_code == 200
        assert "· per day," in page.text
    await sign_in(client, ADMIN)
    assert "· per hour," in (await client.get(f"/ui/sites/{site['id']}/trends", params=custom)).text


def covered(answer: dict[str, Any]) -> tuple[int, int | None]:
    """An answer's `since` in ms, and its `until` unless that is (about) now."""
    since, until = (int(datetime.fromisoformat(answer[k]).timestamp() * 1000) for k in ("since", "until"))
    return since, None if abs(until - now_ms()) < 60_000 else until


@pytest.mark.parametrize("days", [1, 30, 401])
def test_the_hourly_horizon_must_fit_the_other_retentions(days: int) -> None:
    with pytest.raises(SettingsError, match="FIELDLAB_HOURLY_ROLLUP_RETENTION_DAYS"):
        Settings(hourly_rollup_retention_days=days)


async def test_slow_queries_are_kept_with_their_plans(settings: Settings) -> None:
    async with AsyncTestClient(app=create_app(replace(settings, slow_query_ms=0.0001))) as c:
        c.headers["authorization"] = f"Bearer {ADMIN}"
        site = await make_site(c)
        assert (await c.get(f"/api/v1/sites/{site['id']}/summary")).status_code == 200
        slow = (await c.get("/api/v1/admin/slow-queries")).json()
    assert slow, "no slow query recorded"
    measurement = [q for q in slow if "FROM measurement" in q["statement"]]
    assert measurement
    assert measurement[0]["plan"]
    assert not measurement[0]["plan"][0].startswith("(no plan")


async def test_large_answers_are_compressed(
    client: Client, loaded: tuple[dict[str, Any], list[dict[str, Any]]]
) -> None:
    site, _ = loaded
    r = await client.get(f"/api/v1/sites/{site['id']}/series?bucket=hour&group_by=page",
                         headers={"accept-encoding": "br"})  # fmt: skip
    assert r.status_code == 200
    assert r.headers.get("content-encoding") == "br"
    assert r.json()["series"]
