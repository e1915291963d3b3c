"""The logs and slow-queries pages through the test client, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from dataclasses import replace
from html import unescape
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.config import Settings
from app.db import Database, now_ms
from app.search.events import from_js_error
from app.search.store import insert_events
from app.server import create_app
from app.sites import create_token
from tests.conftest import ADMIN, make_site
from tests.integration.ui_data import sign_in

Client = AsyncTestClient[Litestar]


def _row(i: int, site_id: int, message: str, fn: str = "pay") -> dict[str, Any]:
    return {"id": 5000 + i, "site_id": site_id, "ts": now_ms() - 1000 * i, "message": message, "source": "",
            "line": 0, "stack": f"Error: x\n    at {fn} (https://s.example/app.js:1:1)", "url": "https://s.example/",
            "page_group": "/checkout", "browser": "firefox"}  # fmt: skip


async def _seed(client: Client, db: Database) -> tuple[dict[str, Any], dict[str, Any]]:
    shop, other = await make_site(client, name="shop"), await make_site(client, name="other")
    rows = [_row(i, shop["id"], f"Payment declined for order {i}") for i in range(4)]
    rows.append(_row(10, other["id"], "Payment widget <b>missing</b>", fn="widget"))
    async with db.write_conn() as conn:
        await insert_events(conn, [from_js_error(r) for r in rows])
    client.headers.pop("authorization")
    client.follow_redirects = False
    return shop, other


def _text(html: str) -> str:
    return unescape(re.sub(r"<[^>]+>", " ", html))


async def test_logs_page_groups_pages_and_filters(client: Client, db: Database) -> None:
    shop, other = await _seed(client, db)
    assert (await client.get("/ui/logs")).status_code == 303  # not signed in
    assert (await sign_in(client, ADMIN)).status_code == 303
    r = await client.get("/ui/logs", params={"q": "payment"})
    assert r.status_code == 200
    rows = re.findall(r'<tr data-fingerprint="[0-9a-f]+">(.*?)</tr>', r.text, re.S)
    assert len(rows) == 2
    first = _text(rows[0])
    assert first.split()[0] == "4"
    assert "Payment declined for order" in first
    assert "pay@/app.js" in first
    assert "<b>missing</b>" not in r.text
    assert "&lt;b&gt;missing&lt;/b&gt;" in r.text
    assert 'href="/ui/logs"' in r.text
    assert 'href="/ui/slow-queries"' in r.text

    # Events, two per page: the "More" link carries the cursor and the filters.
    r = await client.get("/ui/logs", params={"view": "events", "site": str(shop["id"]), "limit": "2"})
    assert r.text.count("Payment declined") == 2
    more = unescape(re.search(r'<a rel="next" href="([^"]+)"', r.text).group(1))  # type: ignore[union-attr]
    assert "cursor=" in more
    assert f"site={shop['id']}" in more
    r2 = await client.get(more)
    assert r2.text.count("Payment declined") == 2
    assert 'rel="next"' not in r2.text
    assert set(re.findall(r"order \d", r.text)).isdisjoint(re.findall(r"order \d", r2.text))

    bad = await client.get("/ui/logs", params={"kind": "nope"})
    assert bad.status_code == 400
    assert "kind:" in _text(bad.text)
    assert (await client.get("/ui/logs", params={"view": "table"})).status_code == 400
    assert other  # used by the read-only test below


async def test_a_site_limited_sign_in_sees_its_site_only(client: Client, db: Database) -> None:
    shop, other = await _seed(client, db)
    _, token = await create_token(db=db, scope="read", name="r", site_id=shop["id"])
    await sign_in(client, token)
    r = await client.get("/ui/logs", params={"q": "payment", "view": "events"})
    assert r.status_code == 200
    assert "Payment declined" in r.text
    assert "widget" not in r.text
    assert 'href="/ui/slow-queries"' not in r.text
    assert (await client.get("/ui/logs", params={"site": str(other["id"])})).status_code == 403
    assert (await client.get("/ui/slow-queries")).status_code == 403


async def test_slow_queries_page_shows_statements_and_plans(settings: Settings) -> None:
    app = create_app(replace(settings, slow_query_ms=0.001))  # every read is "slow"
    async with AsyncTestClient(app=app, base_url="http://127.0.0.1:8000") as client:
        client.follow_redirects = False
        await make_site(client, name="shop")
        await client.get("/api/v1/sites", headers={"authorization": f"Bearer {ADMIN}"})
        await sign_in(client, ADMIN)
        r = await client.get("/ui/slow-queries")
    assert r.status_code == 200
    assert "SELECT" in r.text
    assert "FROM site" in r.text
    plans = re.findall(r'<pre class="plan">(.*?)</pre>', r.text, re.S)
    # SQLite's EXPLAIN QUERY PLAN says SCAN/SEARCH; PostgreSQL's EXPLAIN names its scan nodes.
    assert plans
    assert any(re.search(r"SCAN|SEARCH|Scan|Result", p) for p in plans)
