"""Seeded field data for the dashboard tests: page views over the last days with every metric,
segments that differ (mobile is slower than desktop, /cart is poor) and attribution, written
through the ingest writer's own upsert and rolled up by the real rollup job."""

from __future__ import annotations

import random
import re
import time
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.db import Database
from app.field.rollups import HOUR, run_rollups
from app.ingest.writer import upsert_measurements
from tests.conftest import make_site

GROUPS = {"/": 1.0, "/product/:id": 1.3, "/cart": 2.2}
DEVICES = ("mobile", "desktop")
BASE = {"LCP": 1600.0, "INP": 110.0, "CLS": 0.05, "FCP": 900.0, "TTFB": 300.0}
APP_JS = "https://shop.example/static/app.js"
THIRD_PARTY_JS = "https://cdn.tracker.example/t.js"


def now_ms() -> int:
    return int(time.time() * 1000)


def _attribution(rng: random.Random, group: str) -> dict[str, dict[str, Any]]:
    hero = "#hero>img" if group != "/cart" else "main>table.cart"
    scripts = rng.choice(
        ([{"src": APP_JS, "dur": 120}], [{"src": THIRD_PARTY_JS, "dur": 90}], [{"src": "", "dur": 60}])
    )
    return {
        "LCP": {"element": hero, "url": f"https://shop.example/img{group.replace('/', '_')}.jpg"},
        "INP": {"target": rng.choice(("#buy", "button.add")), "type": "pointer", "loaf": scripts},
        "CLS": {"target": rng.choice(("div.banner", "footer"))},
    }


def rows_for(site_id: int, *, hours: int, per_hour: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    start = (now_ms() // HOUR - hours) * HOUR
    rows = []
    for h in range(hours + 1):
        for i in range(per_hour):
            ts = min(start + h * HOUR + rng.randrange(HOUR), now_ms() - 1000)
            group = rng.choice(tuple(GROUPS))
            device = rng.choice(DEVICES)
            slow = GROUPS[group] * (1.8 if device == "mobile" else 1.0)
            attr = _attribution(rng, group)
            common = {"site_id": site_id, "pageview_id": f"pv{h}-{i}", "ts": ts, "received_ms": ts,
                      "url": f"https://shop.example{group.replace(':id', str(rng.randrange(50)))}",
                      "page_group": group, "device": device, "browser": "chrome", "is_bot": False,
                      "nav": rng.choice(("navigate", "navigate", "reload")),
                      "connection": rng.choice(("4g", "4g", "3g"))}  # fmt: skip
            for metric, base in BASE.items():
                value = rng.lognormvariate(0, 0.35) * base * slow
                rows.append({**common, "metric": metric, "value": round(value, 4 if metric == "CLS" else 1),
                             "attribution": attr.get(metric)})  # fmt: skip
    return rows


async def seed(db: Database, site_id: int, *, hours: int = 72, per_hour: int = 12) -> list[dict[str, Any]]:
    rows = rows_for(site_id, hours=hours, per_hour=per_hour)
    async with db.write_conn() as conn:
        await conn.execute(upsert_measurements(db.write_engine.dialect.name), rows)
    await run_rollups(db, now_ms=now_ms())
    return rows


# --- signing in through the test client ------------------------------------------------------

Client = AsyncTestClient[Litestar]
CSRF = re.compile(r'name="_csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF field in the page"
    return found.group(1)


async def sign_in(client: Client, token: str) -> Any:
    page = await client.get("/ui/login")
    assert page.status_code == 200
    return await client.post(
        "/ui/login", data={"token": token, "_csrf_token": csrf_of(page.text), "next": "/ui/"}
    )


async def seeded_client(client: Client, db: Database) -> tuple[Client, dict[str, Any], list[dict[str, Any]]]:
    """The conftest client, with a seeded site "shop", no bearer header (the dashboard never
    looks at one) and redirects left for the test to see."""
    site = await make_site(client, name="shop")
    rows = await seed(db, site["id"], hours=36, per_hour=10)
    client.headers.pop("authorization")
    client.follow_redirects = False
    return client, site, rows
