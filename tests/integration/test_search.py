"""Log search on both databases: JS errors from real beacons, synthetic failures from stored
check runs, fieldlab's own warnings; full text, filters, pagination, grouping, retention, auth
and bad parameters."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import pytest
import sqlalchemy as sa
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.db import Database, now_ms
from app.search.events import from_js_error
from app.search.store import Indexer, insert_events
from tests.conftest import ADMIN, beacon_headers, make_site

Client = AsyncTestClient[Litestar]
DAY = 86_400_000


def _error(
    msg: str, fn: str = "addToCart", file: str = "https://shop.example/static/app.3f9a2c1b.js"
) -> dict[str, Any]:
    return {"msg": msg, "src": file, "line": 10, "col": 4,
            "stack": f"TypeError: {msg}\n    at {fn} ({file}:10:4)\n    at HTMLButtonElement.onclick (x.js:1:1)"}  # fmt: skip


async def _beacon(client: Client, key: str, pv: str, url: str, errors: list[dict[str, Any]], ua: str | None = None
                  ) -> None:  # fmt: skip
    body = {"v": 1, "id": pv, "url": url, "nav": "navigate", "metrics": {"TTFB": 100}, "errors": errors}
    headers = beacon_headers() if ua is None else beacon_headers(ua=ua)
    r = await client.post(f"/api/v1/beacon?site={key}", content=json.dumps(body).encode(), headers=headers)
    assert r.status_code == 204, r.text


async def _index(client: Client) -> None:
    r = await client.post("/api/v1/admin/jobs/search-index/run")
    assert r.status_code == 200, r.text
    assert r.json()["error"] is None, r.text


async def _get(client: Client, path: str, **params: Any) -> dict[str, Any]:
    r = await client.get(path, params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_js_errors_are_searchable_grouped_filtered_and_paginated(client: Client) -> None:
    shop = await make_site(client)
    other = await make_site(client)
    # One bug seen 5 times with varying numbers, quotes and URLs; one equal message from another
    # function; one unrelated error; one error on another site.
    for i in range(5):
        await _beacon(client, shop["key"], f"pv-{i}", f"https://shop.example/checkout/{i}",
                      [_error(f"Cannot read properties of undefined (reading 'item{i}') at https://api.example/cart/{i}")])  # fmt: skip
    await _beacon(client, shop["key"], "pv-other-fn", "https://shop.example/product/9",
                  [_error("Cannot read properties of undefined (reading 'price')", fn="renderPrice")])  # fmt: skip
    await _beacon(
        client,
        shop["key"],
        "pv-net",
        "https://shop.example/",
        [_error("NetworkError when attempting to fetch resource", fn="load")],
    )
    await _beacon(
        client,
        other["key"],
        "pv-x",
        "https://shop.example/checkout/1",
        [_error("Cannot read properties of null")],
    )
    await _index(client)

    # A word from the message, on one site: the repeats are one group with count 5, the other
    # function's error its own group.
    body = await _get(client, "/api/v1/logs/groups", q="properties", site=shop["id"])
    groups = body["groups"]
    assert [g["count"] for g in groups] == [5, 1]
    top = groups[0]
    assert top["kind"] == "js-error"
    assert top["level"] == "error"
    assert top["site_id"] == shop["id"]
    assert top["top_frame"] == "addToCart@/static/app.<hex>.js"
    assert top["first_seen_ms"] <= top["last_seen_ms"]
    assert top["page_groups"]
    assert sum(p["count"] for p in top["page_groups"]) == 5
    assert top["browsers"] == [{"value": "chrome", "count": 5}]
    assert 1 <= len(top["sample_stacks"]) <= 3
    assert "addToCart" in top["sample_stacks"][0]
    assert groups[1]["top_frame"].startswith("renderPrice@")

    # All sites: the other site's error matches the word too.
    everywhere = await _get(client, "/api/v1/logs/groups", q="properties")
    assert sum(g["count"] for g in everywhere["groups"]) == 7
    # A phrase matches words in order only; a prefix; a word in the stack (top frame function).
    assert (
        sum(g["count"] for g in (await _get(client, "/api/v1/logs/groups", q='"price reading"'))["groups"])
        == 0
    )
    assert (
        sum(g["count"] for g in (await _get(client, "/api/v1/logs/groups", q='"reading price"'))["groups"])
        == 1
    )
    assert (
        sum(g["count"] for g in (await _get(client, "/api/v1/logs/groups", q='"read properties"'))["groups"])
        == 7
    )
    assert sum(g["count"] for g in (await _get(client, "/api/v1/logs/groups", q="netw*"))["groups"]) == 1
    assert (
        sum(g["count"] for g in (await _get(client, "/api/v1/logs/groups", q="renderPrice"))["groups"]) == 1
    )
    # "app.3f9a2c1b.js" is the phrase "app 3f9a2c1b js" on both backends.
    hits = await _get(client, "/api/v1/logs", q="app.3f9a2c1b.js", site=shop["id"], limit=50)
    assert len(hits["events"]) == 7
    assert (await _get(client, "/api/v1/logs", q="nosuchword"))["events"] == []

    # Filters: page group, kind, level, time.
    checkout = await _get(client, "/api/v1/logs", site=shop["id"], group="/checkout/:id")
    product = await _get(client, "/api/v1/logs", site=shop["id"], group="/product/:id")
    assert len(checkout["events"]) + len(product["events"]) <= 7
    assert all(e["page_group"] == "/checkout/:id" for e in checkout["events"])
    assert (await _get(client, "/api/v1/logs", kind="failed-request"))["events"] == []
    assert (await _get(client, "/api/v1/logs", level="warning", kind="js-error"))["events"] == []
    future = await _get(client, "/api/v1/logs", since="2099-01-01T00:00:00Z", until="2099-01-02T00:00:00Z")
    assert future["events"] == []

    # Keyset pages: 3 + 3 + 1, newest first, no event twice.
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        page = await _get(
            client, "/api/v1/logs", site=shop["id"], limit=3, **({"cursor": cursor} if cursor else {})
        )
        seen += [e["id"] for e in page["events"]]
        pages += 1
        cursor = page["next"]
        if cursor is None:
            break
    assert pages == 3
    assert len(seen) == len(set(seen)) == 7
    # Group pages by offset.
    first = await _get(client, "/api/v1/logs/groups", site=shop["id"], limit=2)
    second = await _get(client, "/api/v1/logs/groups", site=shop["id"], limit=2, offset=first["next_offset"])
    assert len(first["groups"]) == 2
    assert len(second["groups"]) == 1
    assert second["next_offset"] is None
    assert {g["fingerprint"] for g in first["groups"]}.isdisjoint(g["fingerprint"] for g in second["groups"])

    # Indexing again stores nothing twice.
    await _index(client)
    assert (
        sum(g["count"] for g in (await _get(client, "/api/v1/logs/groups", site=shop["id"]))["groups"]) == 7
    )


async def test_synthetic_console_errors_and_failed_requests_are_searchable(
    client: Client, db: Database
) -> None:
    shop = await make_site(client)
    started = now_ms() - 5000
    result = {"steps": [
        {"name": "open cart", "console_errors": [
            {"type": "console", "text": "Uncaught ReferenceError: basketTotal is not defined", "url": "http://shop/cart.js"},
            {"type": "pageerror", "text": "Uncaught ReferenceError: basketTotal is not defined", "url": None}],
         "failed_requests": [{"url": "http://shop/api/cart/123", "type": "fetch", "status": 502, "error": None},
                             {"url": "http://shop/img/7.png", "type": "image", "status": 404, "error": None}]},
    ]}  # fmt: skip
    async with db.write_conn() as conn:
        check_id = (await conn.execute(sa.text(
            "INSERT INTO synthetic_check (name, kind, target, site_id, jitter_s, device, throttling, runs, enabled,"
            " created_ms) VALUES ('cart flow', 'flow', 'http://shop/', :site, 0, 'desktop', 'none', 1, true, :now)"
            " RETURNING id"), {"site": shop["id"], "now": started})).scalar_one()  # fmt: skip
        await conn.execute(sa.text(
            "INSERT INTO check_run (check_id, status, \"trigger\", started_ms, finished_ms, duration_ms, result)"
            " VALUES (:c, 'failed', 'manual', :s, :f, 900, :r)"),
            {"c": check_id, "s": started, "f": started + 900, "r": json.dumps(result)})  # fmt: skip
    await _index(client)
    console = await _get(client, "/api/v1/logs/groups", q="basketTotal", kind="console-error")
    # The same text from a console message (with a script URL) and a page error (without): two
    # places, two groups.
    assert sorted(g["count"] for g in console["groups"]) == [1, 1]
    assert all(g["site_id"] == shop["id"] for g in console["groups"])
    failed = await _get(client, "/api/v1/logs", kind="failed-request", q="api/cart")
    assert [(e["level"], e["url"]) for e in failed["events"]] == [("error", "http://shop/api/cart/123")]
    warn = await _get(client, "/api/v1/logs", kind="failed-request", level="warning")
    assert [e["message"] for e in warn["events"]] == ["HTTP 404 http://shop/img/7.png"]
    assert warn["events"][0]["page_group"] == "cart flow"
    await _index(client)  # the run is read again (overlap window) but stored once
    assert len((await _get(client, "/api/v1/logs", site=shop["id"]))["events"]) == 4


async def test_fieldlab_warnings_are_searchable(client: Client) -> None:
    logging.getLogger("fieldlab.testsuite").warning("disk nearly full on volume %s", "/var/lib/zebra42")
    deadline = time.monotonic() + 10
    while True:
        body = await _get(client, "/api/v1/logs", q="zebra42", kind="fieldlab")
        if body["events"] or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    [event] = body["events"]
    assert event["level"] == "warning"
    assert event["site_id"] is None
    assert event["message"] == "disk nearly full on volume /var/lib/zebra42"
    assert "fieldlab.testsuite" in event["detail"]


async def test_retention_prunes_old_log_events(client: Client, db: Database) -> None:
    shop = await make_site(client)
    old = now_ms() - 40 * DAY  # past the default 30 days of raw retention
    rows = [{"id": 900 + i, "site_id": shop["id"], "ts": ts, "message": f"quokka failure {i}", "source": "", "line": 0,
             "stack": "", "url": "https://shop.example/", "page_group": "/", "browser": "chrome"}
            for i, ts in enumerate((old, old + 1, now_ms()))]  # fmt: skip
    async with db.write_conn() as conn:
        await insert_events(conn, [from_js_error(r) for r in rows])
    assert len((await _get(client, "/api/v1/logs", q="quokka", since="2000-01-01T00:00:00Z"))["events"]) == 3
    r = await client.post("/api/v1/admin/jobs/retention/run")
    assert r.status_code == 200
    assert r.json()["error"] is None
    left = await _get(client, "/api/v1/logs", q="quokka", since="2000-01-01T00:00:00Z")
    assert [e["message"] for e in left["events"]] == ["quokka failure 2"]
    async with db.read_engine.connect() as conn:
        assert (await conn.execute(sa.text("SELECT count(*) FROM log_event"))).scalar_one() == 1
        if conn.dialect.name == "sqlite":  # the FTS index forgot the deleted rows too
            n = await conn.execute(
                sa.text("SELECT count(*) FROM log_event_fts WHERE log_event_fts MATCH 'quokka'")
            )
            assert n.scalar_one() == 1


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"), ({"limit": "abc"}, "limit"), ({"limit": "100000"}, "limit"),
        ({"kind": "banana"}, "kind"), ({"level": "loud"}, "level"), ({"since": "yesterday"}, "since"),
        ({"since": "2026-02-01", "until": "2026-01-01"}, "since"), ({"site": "x"}, "site"),
        ({"cursor": "garbage"}, "cursor"), ({"offset": "-1"}, "offset"), ({"offset": "999999"}, "offset"),
        ({"q": "x" * 501}, "q"), ({"sort": "random"}, "sort"), ({"colour": "red"}, "colour"),
    ],
)  # fmt: skip
async def test_bad_parameters_answer_400_naming_the_field(
    client: Client, params: dict[str, str], field: str
) -> None:
    path = "/api/v1/logs/groups" if field in ("offset", "sort") else "/api/v1/logs"
    r = await client.get(path, params=params)
    assert r.status_code == 400, r.text
    assert r.json()["detail"].startswith(f"{field}:")


async def test_read_token_searches_its_site_and_no_token_is_refused(client: Client) -> None:
    shop = await make_site(client)
    other = await make_site(client)
    await _beacon(client, shop["key"], "pv-a", "https://shop.example/a", [_error("wombat exploded")])
    await _beacon(client, other["key"], "pv-b", "https://shop.example/b", [_error("wombat vanished")])
    await _index(client)
    reader = (await client.post("/api/v1/tokens", json={"name": "r", "scope": "read"})).json()
    limited = (
        await client.post("/api/v1/tokens", json={"name": "l", "scope": "read", "site_id": shop["id"]})
    ).json()
    anonymous = await client.get("/api/v1/logs", params={"q": "wombat"}, headers={"authorization": ""})
    assert anonymous.status_code == 401
    r = await client.get(
        "/api/v1/logs", params={"q": "wombat"}, headers={"authorization": f"Bearer {reader['token']}"}
    )
    assert r.status_code == 200
    assert len(r.json()["events"]) == 2
    r = await client.get(
        "/api/v1/logs", params={"q": "wombat"}, headers={"authorization": f"Bearer {limited['token']}"}
    )
    assert r.status_code == 200
    assert [e["site_id"] for e in r.json()["events"]] == [shop["id"]]
    r = await client.get("/api/v1/logs", params={"site": str(other["id"])},
                         headers={"authorization": f"Bearer {limited['token']}"})  # fmt: skip
    assert r.status_code == 403
    assert r.json()["detail"].startswith("site:")
    assert ADMIN


async def test_indexer_picks_up_ids_committed_out_of_order_on_postgres(client: Client, db: Database) -> None:
    """PostgreSQL hands out ids before commit: id 3 may become visible after id 5 was indexed."""
    if db.write_engine.dialect.name != "postgresql":
        pytest.skip("SQLite assigns rowids under its write lock, in commit order")
    shop = await make_site(client)

    async def add(error_id: int) -> None:
        async with db.write_conn() as conn:
            await conn.execute(sa.text(
                "INSERT INTO js_error (id, site_id, pageview_id, seq, ts, message, source, line, col, stack, url,"
                " page_group, device, browser, is_bot) VALUES (:id, :site, :pv, 0, :ts, :msg, '', 0, 0, '', '', '/',"
                " 'desktop', 'chrome', false)"),
                {"id": error_id, "site": shop["id"], "pv": f"pv-{error_id}", "ts": now_ms(), "msg": f"late kiwi {error_id}"},
            )  # fmt: skip

    for error_id in (1, 2, 5):
        await add(error_id)
    await _index(client)
    await add(3)  # "committed late"
    await _index(client)
    found = await _get(client, "/api/v1/logs", q="kiwi")
    assert sorted(int(e["message"].split()[-1]) for e in found["events"]) == [1, 2, 3, 5]

    # The indexer that saw the hole at 4 stops (a restart, a new leader); 4 commits; the next
    # indexer knows nothing of the first one's memory, only what it stored.
    await add(7)
    await Indexer(db).run()  # holes 4 and 6
    await add(4)
    await add(6)
    await Indexer(db).run()
    found = await _get(client, "/api/v1/logs", q="kiwi")
    assert sorted(int(e["message"].split()[-1]) for e in found["events"]) == [1, 2, 3, 4, 5, 6, 7]
