"""Sites, tokens, the summary, health, metrics, OpenAPI and the snippet route, in-process on
SQLite and PostgreSQL."""

from __future__ import annotations

import json
import random
import statistics
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.config import Settings
from app.db import Database
from app.server import create_app
from tests.conftest import MOBILE_UA, beacon_headers, make_site, make_token

Client = AsyncTestClient[Litestar]


async def send(client: Client, key: str, pv: str, metrics: dict[str, float], **extra: Any) -> None:
    ua = extra.pop("ua", None)
    body = {"id": pv, "url": extra.pop("url", "https://shop.example/"), "metrics": metrics, **extra}
    headers = beacon_headers(**({"ua": ua} if ua else {}))
    r = await client.post(f"/api/v1/beacon?site={key}", content=json.dumps(body), headers=headers)
    assert r.status_code == 204, r.text


# --- sites and tokens ------------------------------------------------------------------------


async def test_site_crud_and_validation(client: Client) -> None:
    site = await make_site(
        client,
        name="shop",
        origins=["https://Shop.example:443/", "http://localhost:3000"],
        page_groups=[{"pattern": "/product/*", "group": "product"}],
    )
    assert {"id", "key"} <= site.keys()
    assert site["origins"] == ["http://localhost:3000", "https://shop.example"]
    assert (await client.get(f"/api/v1/sites/{site['id']}")).json()["key"] == site["key"]
    assert [s["name"] for s in (await client.get("/api/v1/sites")).json()] == ["shop"]
    assert (await client.get("/api/v1/sites/999")).status_code == 404

    dup = await client.post("/api/v1/sites", json={"name": "shop", "origins": ["https://a.example"]})
    assert dup.status_code == 409
    assert "name" in dup.json()["detail"]
    bad_origin = await client.post("/api/v1/sites", json={"name": "x", "origins": ["shop.example/path"]})
    assert bad_origin.status_code == 400
    assert "origins" in bad_origin.json()["detail"]
    no_origins = await client.post("/api/v1/sites", json={"name": "y", "origins": []})
    assert no_origins.status_code == 400
    assert "origins" in no_origins.json()["detail"]
    bad_rule = await client.post(
        "/api/v1/sites",
        json={"name": "z", "origins": ["https://a.example"], "page_groups": [{"pattern": "x"}]},
    )
    assert bad_rule.status_code == 400
    assert "page_groups[0].pattern" in bad_rule.json()["detail"]


async def test_site_update_changes_what_beacons_meet(settings: Settings) -> None:
    """PATCH changes the fields given and this process's site cache at once (a 60 s cache here,
    so a stale entry would refuse the new origin); rules apply from then on."""
    app = create_app(replace(settings, site_cache_ttl_s=60.0))
    async with AsyncTestClient(app=app, base_url="http://127.0.0.1:8000") as client:
        client.headers["authorization"] = "Bearer test-admin-token"
        site = await make_site(client, name="shop", query_allowlist=["lang"])
        other = await make_site(client, name="blog")
        url = f"/api/v1/sites/{site['id']}"
        new_origin = beacon_headers(origin="https://www.shop.example")
        body = json.dumps(
            {"id": "pv-1", "url": "https://www.shop.example/product/7?lang=de", "metrics": {"LCP": 900}}
        )
        beacon = f"/api/v1/beacon?site={site['key']}"
        assert (await client.post(beacon, content=body, headers=new_origin)).status_code == 403  # cached now

        r = await client.patch(url, json={"origins": ["https://shop.example", "https://WWW.shop.example/"],
                                          "page_groups": [{"pattern": "/product/*", "group": "product"}]})  # fmt: skip
        assert r.status_code == 200, r.text
        changed = r.json()
        assert changed["origins"] == ["https://shop.example", "https://www.shop.example"]
        assert changed["page_groups"] == [{"pattern": "/product/*", "group": "product"}]
        assert (changed["name"], changed["key"], changed["query_allowlist"]) == (
            "shop",
            site["key"],
            ["lang"],
        )
        assert (await client.get(url)).json() == changed
        assert (await client.post(beacon, content=body, headers=new_origin)).status_code == 204
        summary = (await client.get(f"{url}/summary?page=/product/8")).json()
        assert summary["metrics"]["LCP"]["count"] == 1

        assert (await client.patch(url, json={"name": " shop2 "})).json()["name"] == "shop2"
        refused = {
            "name taken": ({"name": "blog"}, 409, "name"),
            "no origins": ({"origins": []}, 400, "origins"),
            "bad origin": ({"origins": ["shop.example/x"]}, 400, "origins"),
            "bad rule": ({"page_groups": [{"pattern": "x"}]}, 400, "page_groups[0].pattern"),
            "unknown field": ({"key": "mine"}, 400, "key"),
            "wrong type": ({"origins": "https://a.example"}, 400, "origins"),
        }
        for case, (patch_body, status, words) in refused.items():
            r = await client.patch(url, json=patch_body)
            assert (r.status_code, words in r.json()["detail"]) == (status, True), (case, r.text)
        assert (await client.get(url)).json()["name"] == "shop2"  # nothing half-applied
        assert (await client.patch("/api/v1/sites/999", json={"name": "x"})).status_code == 404
        read = await make_token(client, "read")
        denied = await client.patch(url, json={"name": "x"}, headers={"authorization": f"Bearer {read}"})
        assert denied.status_code == 403
        assert (await client.get(f"/api/v1/sites/{other['id']}")).json()["name"] == "blog"


async def test_page_group_rules_apply_to_beacons(client: Client) -> None:
    site = await make_site(client, page_groups=[{"pattern": "/product/*", "group": "product"}])
    await send(client, site["key"], "a", {"LCP": 1000}, url="https://shop.example/product/blue-shoes")
    await send(client, site["key"], "b", {"LCP": 3000}, url="https://shop.example/blog/2026/11/hello")
    by_group = await client.get(f"/api/v1/sites/{site['id']}/summary?page=/product/red-hat")
    assert by_group.json()["metrics"]["LCP"]["count"] == 1
    assert by_group.json()["metrics"]["LCP"]["p50"] == 1000
    # No rule for /blog: the default collapses the numeric segments.
    default = await client.get(f"/api/v1/sites/{site['id']}/summary?page=/blog/:id/:id/hello")
    assert default.json()["metrics"]["LCP"]["p50"] == 3000


async def test_tokens_are_scoped_and_stored_hashed(client: Client, db: Database) -> None:
    shop = await make_site(client)
    other = await make_site(client)
    read = (await client.post("/api/v1/tokens", json={"scope": "read"})).json()
    scoped = (await client.post("/api/v1/tokens", json={"scope": "read", "site_id": shop["id"]})).json()
    assert read["token"].startswith("flt_")

    as_read = {"authorization": f"Bearer {read['token']}"}
    assert (await client.get(f"/api/v1/sites/{other['id']}/summary", headers=as_read)).status_code == 200
    denied = await client.post(
        "/api/v1/sites", json={"name": "n", "origins": ["https://n.example"]}, headers=as_read
    )
    assert denied.status_code == 403
    assert "admin" in denied.json()["detail"]
    assert (await client.post("/api/v1/tokens", json={"scope": "admin"}, headers=as_read)).status_code == 403

    as_scoped = {"authorization": f"Bearer {scoped['token']}"}
    assert (await client.get(f"/api/v1/sites/{shop['id']}/summary", headers=as_scoped)).status_code == 200
    assert (await client.get(f"/api/v1/sites/{other['id']}/summary", headers=as_scoped)).status_code == 403
    assert [s["id"] for s in (await client.get("/api/v1/sites", headers=as_scoped)).json()] == [shop["id"]]

    # A deploy token reads like a read token (limited to its site here) and is no admin.
    deploy = (await client.post("/api/v1/tokens", json={"scope": "deploy", "site_id": shop["id"]})).json()
    as_deploy = {"authorization": f"Bearer {deploy['token']}"}
    assert (await client.get(f"/api/v1/sites/{shop['id']}/summary", headers=as_deploy)).status_code == 200
    assert (await client.get(f"/api/v1/sites/{other['id']}/summary", headers=as_deploy)).status_code == 403
    assert (await client.post("/api/v1/tokens", json={"scope": "read"}, headers=as_deploy)).status_code == 403

    bad_scope = await client.post("/api/v1/tokens", json={"scope": "root"})
    assert bad_scope.status_code == 400
    assert "scope" in bad_scope.json()["detail"]

    async with db.read_engine.connect() as conn:
        stored = [dict(r._mapping) for r in await conn.execute(sa.text("SELECT * FROM api_token"))]
    everything = json.dumps(stored, default=str)
    assert read["token"] not in everything
    assert scoped["token"] not in everything
    assert deploy["token"] not in everything
    assert len(stored) == 3


async def test_tokens_are_listed_without_secrets_and_revoked_at_once(client: Client) -> None:
    shop = await make_site(client)
    made = [(await client.post("/api/v1/tokens", json=body)).json()
            for body in ({"scope": "read", "name": "grafana"}, {"scope": "deploy", "site_id": shop["id"]})]  # fmt: skip
    listed = (await client.get("/api/v1/tokens")).json()
    assert [(t["id"], t["name"], t["scope"], t["site_id"]) for t in listed] == [
        (made[0]["id"], "grafana", "read", None), (made[1]["id"], "deploy token", "deploy", shop["id"])
    ]  # fmt: skip
    for shown, token in zip(listed, made, strict=True):
        assert set(shown) == {"id", "name", "scope", "prefix", "site_id", "created"}
        assert token["token"].startswith(shown["prefix"])
        assert token["token"] not in json.dumps(listed)
    as_read = {"authorization": f"Bearer {made[0]['token']}"}
    assert (await client.get("/api/v1/tokens", headers=as_read)).status_code == 403
    assert (await client.delete(f"/api/v1/tokens/{made[1]['id']}", headers=as_read)).status_code == 403

    assert (await client.get("/api/v1/sites", headers=as_read)).status_code == 200
    assert (await client.delete(f"/api/v1/tokens/{made[0]['id']}")).status_code == 204
    assert (await client.get("/api/v1/sites", headers=as_read)).status_code == 401  # the next request
    assert [t["id"] for t in (await client.get("/api/v1/tokens")).json()] == [made[1]["id"]]
    assert (await client.delete(f"/api/v1/tokens/{made[0]['id']}")).status_code == 404


# --- summary ---------------------------------------------------------------------------------


async def test_summary_matches_exact_percentiles_and_honours_filters(client: Client) -> None:
    site = await make_site(client)
    rng = random.Random(7)
    desktop = [round(rng.lognormvariate(7.5, 0.5), 1) for _ in range(60)]
    mobile = [round(rng.lognormvariate(8.0, 0.5), 1) for _ in range(40)]
    for i, v in enumerate(desktop):
        await send(client, site["key"], f"d{i}", {"LCP": v, "CLS": i / 200})
    for i, v in enumerate(mobile):
        await send(
            client, site["key"], f"m{i}", {"LCP": v}, ua=MOBILE_UA, url="https://shop.example/product/9"
        )

    url = f"/api/v1/sites/{site['id']}/summary"
    everything = (await client.get(url)).json()["metrics"]
    both = sorted(desktop + mobile)
    cuts = statistics.quantiles(both, n=100, method="inclusive")
    assert everything["LCP"]["count"] == 100
    assert everything["LCP"]["p75"] == pytest.approx(cuts[74], abs=0.051)
    assert everything["LCP"]["p95"] == pytest.approx(cuts[94], abs=0.051)
    good = sum(v <= 2500 for v in both) / 100
    poor = sum(v > 4000 for v in both) / 100
    assert everything["LCP"]["good"] == pytest.approx(good)
    assert everything["LCP"]["poor"] == pytest.approx(poor)
    assert everything["LCP"]["needs_improvement"] == pytest.approx(1 - good - poor)
    assert everything["CLS"]["count"] == 60

    mob = (await client.get(url, params={"device": "mobile"})).json()["metrics"]["LCP"]
    assert mob["count"] == 40
    assert mob["p75"] == pytest.approx(statistics.quantiles(mobile, n=4, method="inclusive")[2], abs=0.051)
    page = (await client.get(url, params={"page": "/product/:id"})).json()["metrics"]["LCP"]
    assert page["count"] == 40
    none = (await client.get(url, params={"page": "/product/1", "device": "desktop"})).json()["metrics"][
        "LCP"
    ]
    assert none["count"] == 0
    assert none["p75"] is None

    past = (datetime.now(UTC) - timedelta(days=3)).isoformat()
    earlier = (datetime.now(UTC) - timedelta(days=5)).isoformat()
    empty = (await client.get(url, params={"since": earlier, "until": past})).json()["metrics"]["LCP"]
    assert empty["count"] == 0
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert (await client.get(url, params={"since": past, "until": future})).json()["metrics"]["LCP"][
        "count"
    ] == 100


async def test_summary_time_range_uses_page_view_time(client: Client) -> None:
    site = await make_site(client)
    now = datetime.now(UTC)
    old = int((now - timedelta(hours=30)).timestamp() * 1000)
    await send(client, site["key"], "old", {"LCP": 4000}, ts=old)
    await send(client, site["key"], "new", {"LCP": 1000})
    url = f"/api/v1/sites/{site['id']}/summary"
    last_day = (await client.get(url, params={"since": (now - timedelta(days=1)).isoformat()})).json()
    assert last_day["metrics"]["LCP"]["count"] == 1
    assert last_day["metrics"]["LCP"]["p50"] == 1000
    day_before = (now - timedelta(hours=31)).strftime("%Y-%m-%dT%H:%M:%SZ")
    window = (
        await client.get(url, params={"since": day_before, "until": (now - timedelta(hours=29)).isoformat()})
    ).json()
    assert window["metrics"]["LCP"]["p50"] == 4000


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-13-45"}, "until"),
        ({"since": "2026-11-02T00:00:00Z", "until": "2026-11-01T00:00:00Z"}, "before"),
        ({"device": "watch"}, "device"),
    ],
)
async def test_summary_rejects_bad_parameters(client: Client, params: dict[str, str], words: str) -> None:
    site = await make_site(client)
    r = await client.get(f"/api/v1/sites/{site['id']}/summary", params=params)
    assert r.status_code == 400
    assert words in json.dumps(r.json())


# --- health, metrics, OpenAPI, snippet ------------------------------------------------------------


async def test_health_and_metrics_move_with_traffic(client: Client) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).status_code == 200
    site = await make_site(client)
    await send(client, site["key"], "one", {"LCP": 1000, "CLS": 0.1})
    await client.post(f"/api/v1/beacon?site={site['key']}", content=b"{", headers=beacon_headers())
    text = (await client.get("/metrics")).text
    assert "fieldlab_beacons_accepted_total 1.0" in text
    assert "fieldlab_measurements_stored_total 2.0" in text
    assert 'fieldlab_beacons_rejected_total{reason="malformed"} 1.0' in text
    assert "fieldlab_ingest_queue_depth" in text
    assert "fieldlab_writer_batch_size_count 1.0" in text
    assert "fieldlab_writer_commit_seconds_bucket" in text


async def test_openapi_documents_the_beacon_formats(client: Client) -> None:
    doc = (await client.get("/schema/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    assert {"PageView", "WebVitalsMetric", "Context", "JsErrorIn", "SiteCreate"} <= schemas.keys()
    assert set(schemas["PageView"]["required"]) == {"id", "url"}
    beacon = doc["paths"]["/api/v1/beacon"]["post"]
    assert {"text/plain", "application/json"} <= beacon["requestBody"]["content"].keys()
    assert {"204", "400", "403", "413", "415", "429", "503"} <= beacon["responses"].keys()
    assert "/api/v1/sites/{site_id}/summary" in doc["paths"]


async def test_snippet_is_served_compressed_with_etag(settings: Settings, tmp_path: Path) -> None:
    script = b"(()=>{/* fieldlab test build */})();" * 20
    (tmp_path / "fieldlab.js").write_bytes(script)
    async with AsyncTestClient(app=create_app(replace(settings, static_dir=str(tmp_path)))) as c:
        br = await c.get("/fieldlab.js", headers={"accept-encoding": "gzip, br"})
        assert br.status_code == 200
        assert br.headers["content-encoding"] == "br"
        assert br.headers["content-type"].startswith("text/javascript")
        assert "max-age=86400" in br.headers["cache-control"]
        assert br.headers["vary"] == "Accept-Encoding"
        assert br.content == script  # httpx decodes brotli: the payload is the file
        gz = await c.get("/fieldlab.js", headers={"accept-encoding": "gzip"})
        assert gz.headers["content-encoding"] == "gzip"
        assert gz.content == script  # httpx decodes gzip: the payload is the file
        plain = await c.get("/fieldlab.js", headers={"accept-encoding": "identity"})
        assert "content-encoding" not in plain.headers
        assert plain.content == script
        etag = plain.headers["etag"]
        assert br.headers["etag"] == etag
        again = await c.get("/fieldlab.js", headers={"if-none-match": etag})
        assert again.status_code == 304
        assert again.content == b""


async def test_missing_snippet_build_is_a_clear_404(settings: Settings, tmp_path: Path) -> None:
    async with AsyncTestClient(app=create_app(replace(settings, static_dir=str(tmp_path)))) as c:
        r = await c.get("/fieldlab.js")
        assert r.status_code == 404
        assert "make install" in r.json()["detail"]
