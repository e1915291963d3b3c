"""Deleting a site on SQLite and PostgreSQL, through the API and the CLI: everything that is the
site's goes (rows in every table that refers to it or its scopes), another site's data stays
exactly as it was, its beacons are refused at once, and its tokens stop working."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

import pytest
import sqlalchemy as sa
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app import checks as check_data
from app.config import Settings
from app.db import Database
from app.models import Webhook, WebhookDelivery, table
from app.run_retention import run_dir
from app.server import create_app
from app.site_delete import COUNTED, delete_site, site_contents
from tests.conftest import ADMIN, beacon_headers, make_site, make_token
from tests.integration.field_rows import insert_field
from tests.integration.test_cli import run

Client = AsyncTestClient[Litestar]
HOUR = 3_600_000


async def populate(client: Client, db: Database, name: str) -> dict[str, Any]:
    """A site with a row in every table that can hold its data."""
    origin = f"https://{name}.example"
    site = await make_site(client, name=name, origins=[origin])
    sid = site["id"]
    now = int(time.time() * 1000)
    await insert_field(db, sid, "LCP", [900 + i for i in range(40)], now - 4 * HOUR, now - 3 * HOUR)
    body = {"v": 1, "id": f"pv-{name}", "url": f"{origin}/", "nav": "navigate", "metrics": {"TTFB": 80},
            "errors": [{"msg": f"{name} broke", "src": f"{origin}/app.js", "line": 1, "col": 2}]}  # fmt: skip
    r = await client.post(f"/api/v1/beacon?site={site['key']}", content=json.dumps(body),
                          headers=beacon_headers(origin=origin))  # fmt: skip
    assert r.status_code == 204, r.text
    assert (
        await client.post(f"/api/v1/sites/{sid}/markers", json={"commit": "abc1234", "branch": "main"})
    ).status_code == 201
    async with db.write() as session:
        check = check_data.Check(name=f"{name} home", kind="flow", target=origin, site_id=sid, interval_s=3600,
                                 enabled=False, created_ms=0)  # fmt: skip
        session.add(check)
    assert check.id is not None
    run_row = await check_data.start_run(db=db, check_id=check.id, trigger="manual")
    assert run_row.id is not None
    await check_data.finish_run(
        db=db, run_id=run_row.id, status="passed", result={"status": "passed", "steps": []}
    )
    run_dir(db.settings.data_dir, run_row.id).mkdir(parents=True)
    (run_dir(db.settings.data_dir, run_row.id) / "step-01-home.jpg").write_bytes(b"jpeg")
    for scope in (f"site:{sid}", f"check:{check.id}"):
        verdict = {"budget_id": "b", "name": "b", "status": "pass", "actual": 1.0, "limit": 2.0, "unit": "ms"}
        r = await client.post("/api/v1/budget-status", json={"scope": scope, "verdicts": [verdict]})
        assert r.status_code == 201, r.text
    async with db.write_conn() as conn:
        hook = await conn.execute(sa.insert(table(Webhook)).values(
            name=name, url=f"{origin}/hook", format="json", scope=f"site:{sid}", secret="", enabled=True, created_ms=now
        ).returning(table(Webhook).c.id))  # fmt: skip
        await conn.execute(sa.insert(table(WebhookDelivery)).values(
            webhook_id=hook.scalar_one(), event_key=f"{name}-1", event="failing", scope=f"site:{sid}", budget_id="b",
            status="delivered", attempts=1, payload={}, created_ms=now,
        ))  # fmt: skip
    token = await make_token(client, "read", sid)
    for job in ("rollups", "search-index"):
        assert (await client.post(f"/api/v1/admin/jobs/{job}/run")).status_code == 200
    return {**site, "check_id": check.id, "run_id": run_row.id, "token": token}


async def owned(db: Database, site: dict[str, Any]) -> dict[str, int]:
    counts = await site_contents(db=db, site_id=site["id"])
    async with db.read_engine.connect() as conn:
        for name, where in (("alert_state", f"scope IN ('site:{site['id']}', 'check:{site['check_id']}')"),
                            ("webhook", f"scope = 'site:{site['id']}'"),
                            ("api_token", f"site_id = {site['id']}")):  # fmt: skip
            counts[name] = (
                await conn.execute(sa.text(f"SELECT count(*) FROM {name} WHERE {where}"))
            ).scalar_one()
    return counts


async def test_delete_takes_everything_of_the_site_and_nothing_else(settings: Settings) -> None:
    settings = replace(settings, site_cache_ttl_s=60.0, scheduler=False)
    db = Database(settings)
    async with AsyncTestClient(app=create_app(settings), base_url="http://127.0.0.1:8000") as client:
        client.headers["authorization"] = f"Bearer {ADMIN}"
        shop, blog = await populate(client, db, "shop"), await populate(client, db, "blog")
        before_shop, before_blog = await owned(db, shop), await owned(db, blog)
        assert all(before_shop[name] > 0 for name in COUNTED), before_shop  # every kind is exercised

        denied = await client.delete(
            f"/api/v1/sites/{shop['id']}", headers={"authorization": f"Bearer {shop['token']}"}
        )
        assert denied.status_code in (401, 403)
        r = await client.delete(f"/api/v1/sites/{shop['id']}")
        assert r.status_code == 200, r.text
        gone = r.json()
        assert (gone["name"], gone["key"]) == ("shop", shop["key"])
        assert gone["deleted"] == {name: before_shop[name] for name in COUNTED}

        assert await owned(db, shop) == dict.fromkeys(before_shop, 0)
        assert await owned(db, blog) == before_blog
        assert not run_dir(settings.data_dir, shop["run_id"]).exists()  # its screenshots too, at once
        assert run_dir(settings.data_dir, blog["run_id"]).is_dir()
        assert (await client.get(f"/api/v1/sites/{shop['id']}")).status_code == 404
        assert (await client.get(f"/api/v1/checks/{shop['check_id']}")).status_code == 404
        assert (await client.get(f"/api/v1/checks/{blog['check_id']}")).status_code == 200
        body = json.dumps({"id": "pv-late", "url": "https://shop.example/", "metrics": {"LCP": 1}})
        late = await client.post(f"/api/v1/beacon?site={shop['key']}", content=body,
                                 headers=beacon_headers(origin="https://shop.example"))  # fmt: skip
        assert late.status_code == 403  # this worker's site cache forgot the key at once
        assert (
            await client.get("/api/v1/sites", headers={"authorization": f"Bearer {shop['token']}"})
        ).status_code == 401
        assert (
            await client.get(
                f"/api/v1/sites/{blog['id']}/summary", headers={"authorization": f"Bearer {blog['token']}"}
            )
        ).status_code == 200
        assert (await client.delete(f"/api/v1/sites/{shop['id']}")).status_code == 404
    await db.dispose()


async def test_cli_delete_asks_or_needs_yes(settings: Settings, database_url: str) -> None:
    db = Database(settings)
    async with AsyncTestClient(app=create_app(replace(settings, scheduler=False))) as client:
        client.headers["authorization"] = f"Bearer {ADMIN}"
        shop = await populate(client, db, "shop")
        await make_site(client, name="blog")
    refused = run(database_url, "sites", "delete", "shop")  # stdin is not a terminal here
    assert refused.returncode == 2
    assert "without --yes" in refused.stderr
    assert (await owned(db, shop))["measurement"] == 41  # 40 rows and the beacon's TTFB
    missing = run(database_url, "sites", "delete", "nope", "--yes")
    assert (missing.returncode, "no site 'nope'" in missing.stderr) == (2, True)

    assert run_dir(settings.data_dir, shop["run_id"]).is_dir()
    done = run(
        database_url, "sites", "delete", "shop", "--yes", "--json", FIELDLAB_DATA_DIR=settings.data_dir
    )
    assert done.returncode == 0, done.stderr
    assert not run_dir(settings.data_dir, shop["run_id"]).exists()
    assert json.loads(done.stdout)["deleted"]["measurement"] == 41  # 40 rows and the beacon's TTFB
    assert "FIELDLAB_SITE_CACHE_TTL_S" in done.stderr
    assert all(n == 0 for n in (await owned(db, shop)).values())
    listed = run(database_url, "sites", "list", "--json")
    assert [s["name"] for s in json.loads(listed.stdout)] == ["blog"]
    await db.dispose()


async def test_a_worker_that_missed_the_deletion_refuses_the_sites_beacons(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Another worker deleted the site; this one still has it in its site cache (60 s here).
    Its beacon cannot be stored (the site row is gone): 403 unknown site, not a 503, and the
    cache entry is dropped so the next beacon is refused without trying. Not a database fault:
    no ERROR line and no writer error (the self-alerts watch that count)."""
    settings = replace(settings, site_cache_ttl_s=60.0, scheduler=False)
    db = Database(settings)
    async with AsyncTestClient(app=create_app(settings), base_url="http://127.0.0.1:8000") as client:
        client.headers["authorization"] = f"Bearer {ADMIN}"
        site = await make_site(client, name="shop")
        beacon = f"/api/v1/beacon?site={site['key']}"
        headers = beacon_headers(origin="https://shop.example")

        def body(pv: str) -> str:
            return json.dumps({"id": pv, "url": "https://shop.example/", "metrics": {"LCP": 1200}})

        assert (await client.post(beacon, content=body("pv-1"), headers=headers)).status_code == 204  # cached
        assert await delete_site(db=db, site_id=site["id"]) is not None  # as another worker would
        for pv in ("pv-2", "pv-3"):
            r = await client.post(beacon, content=body(pv), headers=headers)
            assert (r.status_code, r.json()["detail"]) == (403, "unknown site key"), pv
        async with db.read_engine.connect() as conn:
            assert (await conn.execute(sa.text("SELECT count(*) FROM measurement"))).scalar_one() == 0
        metrics = (await client.get("/metrics")).text
        assert "fieldlab_writer_errors_total 0.0" in metrics
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text
    await db.dispose()
