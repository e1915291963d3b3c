"""The dashboard's HTML through the test client, on SQLite and PostgreSQL: sign-in, sessions,
CSRF, read-only sign-ins, every page with seeded numbers (the same as the API's), filters,
bad input, and no cookies outside /ui."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from html import unescape
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.config import Settings
from app.db import Database
from app.server import create_app
from app.sites import create_token, revoke_token
from app.ui import format
from tests.conftest import ADMIN, beacon_headers, make_site
from tests.integration.ui_data import THIRD_PARTY_JS, csrf_of, seeded_client, sign_in

Client = AsyncTestClient[Litestar]


def cell(html: str, row_attr: str, col: int) -> str:
    """Text of the col-th cell (th or td) of the first row carrying row_attr."""
    row = re.search(rf"<tr {re.escape(row_attr)}>(.*?)</tr>", html, re.S)
    assert row, f"no row {row_attr}"
    cells = re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row.group(1), re.S)
    return unescape(re.sub(r"<[^>]+>", "", cells[col])).strip()


@pytest.fixture
async def ui(client: Client, db: Database) -> tuple[Client, dict[str, Any], list[dict[str, Any]]]:
    return await seeded_client(client, db)


async def test_pages_need_a_sign_in_and_the_form_needs_csrf(ui: Any) -> None:
    client, site, _ = ui
    r = await client.get(f"/ui/sites/{site['id']}/trends?device=mobile")
    assert r.status_code == 303
    assert r.headers["location"] == "/ui/login?next=%2Fui%2Fsites%2F1%2Ftrends%3Fdevice%3Dmobile".replace(
        "1", str(site["id"])
    )
    await client.get("/ui/login")
    no_csrf = await client.post("/ui/login", data={"token": ADMIN})
    assert no_csrf.status_code == 403
    assert "CSRF" in no_csrf.text
    wrong = await sign_in(client, "not-a-token")
    assert wrong.status_code == 401
    assert "token: not a valid token" in wrong.text
    assert "fieldlab_session" not in client.cookies


async def test_sign_in_sets_a_strict_httponly_session_and_sign_out_ends_it(ui: Any) -> None:
    client, _, _ = ui
    r = await sign_in(client, ADMIN)
    assert r.status_code == 303
    assert r.headers["location"] == "/ui/"
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("fieldlab_session="))
    assert "HttpOnly" in cookie
    assert "samesite=strict" in cookie.lower()
    assert "Path=/ui" in cookie
    assert "Secure" not in cookie  # plain http here; see the https test
    overview = await client.get("/ui/")
    assert overview.status_code == 200
    assert "Sign out" in overview.text
    out = await client.post("/ui/logout", data={"_csrf_token": csrf_of(overview.text)})
    assert out.status_code == 303
    assert (await client.get("/ui/")).status_code == 303


async def test_cookies_are_secure_over_https(settings: Settings) -> None:
    async with AsyncTestClient(app=create_app(settings), base_url="https://fieldlab.example") as client:
        client.follow_redirects = False
        page = await client.get("/ui/login")
        assert all("Secure" in c for c in page.headers.get_list("set-cookie"))
        r = await client.post("/ui/login", data={"token": ADMIN, "_csrf_token": csrf_of(page.text)})
        assert r.status_code == 303
        session = next(c for c in r.headers.get_list("set-cookie") if c.startswith("fieldlab_session="))
        assert "Secure" in session


async def test_every_page_shows_the_apis_numbers(ui: Any) -> None:
    client, site, rows = ui
    await sign_in(client, ADMIN)
    overview = (await client.get("/ui/")).text
    assert "shop" in overview
    auth = {"authorization": f"Bearer {ADMIN}"}
    week = (await client.get(f"/api/v1/sites/{site['id']}/summary", headers=auth)).json()["metrics"]
    p75 = format.value("LCP", week["LCP"]["p75"])
    assert re.search(rf'data-metric="LCP">.*?{re.escape(p75)}', overview, re.S), p75
    assert '<svg class="spark' in overview
    assert "charts." not in overview.split("</head>")[0] + overview[-400:]  # no chart code here

    trends = await client.get(f"/ui/sites/{site['id']}/trends?range=7d")
    assert trends.status_code == 200
    lcp_count = sum(1 for r in rows if r["metric"] == "LCP")
    assert cell(trends.text, 'data-metric="LCP"', 8) == str(lcp_count)
    assert cell(trends.text, 'data-metric="LCP"', 1) == p75
    assert re.search(r'<script defer src="/static/ui/charts\.[0-9a-f]{12}\.js">', trends.text)
    assert 'id="chart-data"' in trends.text
    hist_rows = re.findall(r'<tr class="(good|needs_improvement|poor)">', trends.text)
    assert {"good", "needs_improvement", "poor"} <= set(hist_rows)

    groups = await client.get(f"/ui/sites/{site['id']}/pages")
    order = re.findall(r'<tr data-group="([^"]+)">', groups.text)
    assert order[0] == "/cart", order  # worst first
    assert sorted(order) == ["/", "/cart", "/product/:id"]
    by_name = await client.get(f"/ui/sites/{site['id']}/pages?sort=group&order=asc")
    assert re.findall(r'<tr data-group="([^"]+)">', by_name.text) == ["/", "/cart", "/product/:id"]

    attribution = await client.get(f"/ui/sites/{site['id']}/attribution")
    text = attribution.text
    assert "#hero&gt;img" in text
    assert THIRD_PARTY_JS in text
    assert "cross-origin" in text
    assert "(unknown)" in text
    assert f"/ui/sites/{site['id']}/trends?range=7d&amp;metric=INP" in text


async def test_filters_change_the_numbers_and_stay_in_the_links(ui: Any) -> None:
    client, site, rows = ui
    await sign_in(client, ADMIN)
    base = f"/ui/sites/{site['id']}/trends"
    everyone = (await client.get(f"{base}?range=7d")).text
    mobile = (await client.get(f"{base}?range=7d&device=mobile&group=/cart")).text
    expected = sum(
        1 for r in rows if r["metric"] == "LCP" and r["device"] == "mobile" and r["page_group"] == "/cart"
    )
    assert cell(mobile, 'data-metric="LCP"', 8) == str(expected)
    assert cell(mobile, 'data-metric="LCP"', 1) != cell(everyone, 'data-metric="LCP"', 1)
    assert "pages?range=7d&amp;group=%2Fcart&amp;device=mobile" in mobile  # kept in the nav links
    day = (await client.get(f"{base}?range=24h")).text
    assert int(cell(day, 'data-metric="LCP"', 8)) < int(cell(everyone, 'data-metric="LCP"', 8))


BAD = [("device=fridge", "device:"), ("range=1y", "range:"), ("range=custom&since=2026-01-01", "since:"),
       ("range=custom&since=yesterday&until=2026-01-01", "since:"), ("metric=XYZ", "metric:")]  # fmt: skip


async def test_bad_filters_get_a_400_page_naming_the_field(ui: Any) -> None:
    client, site, _ = ui
    await sign_in(client, ADMIN)
    for query, field in BAD:
        r = await client.get(f"/ui/sites/{site['id']}/trends?{query}")
        assert r.status_code == 400, query
        assert field in r.text, query
        assert r.headers["content-type"].startswith("text/html")
    sort = await client.get(f"/ui/sites/{site['id']}/pages?sort=price")
    assert sort.status_code == 400
    assert "sort:" in sort.text


async def test_a_read_sign_in_can_look_but_not_change(ui: Any, db: Database) -> None:
    client, _, _ = ui
    _, read = await create_token(db=db, scope="read")
    assert (await sign_in(client, read)).status_code == 303
    overview = await client.get("/ui/")
    assert overview.status_code == 200
    assert "Add a site" not in overview.text
    assert "read-only" in overview.text
    r = await client.post("/ui/sites", data={"name": "x", "origins": "https://x.example",
                                             "_csrf_token": csrf_of(overview.text)})  # fmt: skip
    assert r.status_code == 403
    assert "admin token" in r.text
    without_csrf = await client.post("/ui/sites", data={"name": "x", "origins": "https://x.example"})
    assert without_csrf.status_code == 403
    names = [
        s["name"]
        for s in (await client.get("/api/v1/sites", headers={"authorization": f"Bearer {ADMIN}"})).json()
    ]
    assert "x" not in names


async def test_admin_adds_a_site_and_bad_input_names_the_field(ui: Any) -> None:
    client, _, _ = ui
    await sign_in(client, ADMIN)
    overview = await client.get("/ui/")
    token = csrf_of(overview.text)
    bad = await client.post("/ui/sites", data={"name": "blog", "origins": "ftp://x", "_csrf_token": token})
    assert bad.status_code == 400
    assert "origins:" in bad.text
    r = await client.post(
        "/ui/sites", data={"name": "blog", "origins": "https://blog.example", "_csrf_token": token}
    )
    assert r.status_code == 303
    assert r.headers["location"].endswith("/settings")
    settings_page = await client.get(r.headers["location"])
    assert settings_page.status_code == 200
    assert 'id="snippet"' in settings_page.text


async def test_a_site_limited_token_sees_only_its_site_and_revoking_ends_the_session(
    ui: Any, db: Database
) -> None:
    client, site, _ = ui
    other = await make_site(client, name="other")
    row, read = await create_token(db=db, scope="read", site_id=site["id"])
    await sign_in(client, read)
    overview = (await client.get("/ui/")).text
    assert "shop" in overview
    assert ">other<" not in overview
    assert (await client.get(f"/ui/sites/{other['id']}/trends")).status_code == 403
    assert row.id is not None
    await revoke_token(db=db, token_id=row.id)
    assert (await client.get("/ui/")).status_code == 303


async def test_the_self_monitoring_snippet_and_no_cookies_outside_the_dashboard(ui: Any) -> None:
    client, site, _ = ui
    await sign_in(client, ADMIN)
    page = (await client.get("/ui/")).text
    key = re.search(r'<script async src="/fieldlab.js" data-site="([^"]+)"></script>', page)
    assert key, "the dashboard carries fieldlab.js"
    sites = (await client.get("/api/v1/sites", headers={"authorization": f"Bearer {ADMIN}"})).json()
    own = next(s for s in sites if s["name"] == "fieldlab")
    assert own["key"] == key.group(1)
    assert own["origins"] == ["http://127.0.0.1:8000"]
    await client.get("/ui/")  # idempotent: still one
    sites = (await client.get("/api/v1/sites", headers={"authorization": f"Bearer {ADMIN}"})).json()
    assert [s["name"] for s in sites].count("fieldlab") == 1
    beacon = await client.post(f"/api/v1/beacon?site={site['key']}", content=b'{"v":1,"id":"1.2","url":"https://shop.example/","nav":"navigate","ts":1,"metrics":{"LCP":900}}',
                               headers=beacon_headers())  # fmt: skip
    assert beacon.status_code in (202, 204), beacon.text
    api = await client.get("/api/v1/sites", headers={"authorization": f"Bearer {ADMIN}"})
    for r in (beacon, api):
        assert "set-cookie" not in r.headers


async def test_assets_are_fingerprinted_immutable_and_precompressed(ui: Any) -> None:
    client, site, _ = ui
    await sign_in(client, ADMIN)
    trends = (await client.get(f"/ui/sites/{site['id']}/trends")).text
    js = re.search(r'src="(/static/ui/charts\.[0-9a-f]{12}\.js)"', trends)
    css = re.search(r'href="(/static/ui/ui\.[0-9a-f]{12}\.css)"', trends)
    assert js
    assert css
    for url in (js.group(1), css.group(1)):
        for coding in ("br", "gzip"):
            r = await client.get(url, headers={"accept-encoding": coding})
            assert r.status_code == 200
            assert r.headers["content-encoding"] == coding
            assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
            assert "set-cookie" not in r.headers
        plain = await client.get(url, headers={"accept-encoding": "identity"})
        assert "content-encoding" not in plain.headers
    assert (await client.get("/static/ui/charts.000000000000.js")).status_code == 404


async def test_a_bigger_session_lifetime_is_a_setting(settings: Settings) -> None:
    short = replace(settings, ui_session_max_age_s=60)
    async with AsyncTestClient(app=create_app(short), base_url="http://127.0.0.1:8000") as client:
        client.follow_redirects = False
        r = await sign_in(client, ADMIN)
        session = next(c for c in r.headers.get_list("set-cookie") if c.startswith("fieldlab_session="))
        assert "Max-Age=60" in session


async def test_service_worker_and_manifest(ui: Any) -> None:
    client, site, _ = ui
    sw = await client.get("/ui/sw.js")
    assert sw.status_code == 200
    assert sw.headers["service-worker-allowed"] == "/ui"
    assert sw.headers["cache-control"] == "no-cache"
    shell = re.search(r"const SHELL = (\[.*?\]);", sw.text)
    assert shell
    urls = json.loads(shell[1])
    assert any(re.fullmatch(r"/static/ui/charts\.[0-9a-f]{12}\.js", u) for u in urls)
    for url in urls:
        assert (await client.get(url)).status_code == 200
    manifest = (await client.get("/ui/manifest.webmanifest")).json()
    assert manifest["start_url"] == "/ui/"
    icon = await client.get(manifest["icons"][0]["src"])
    assert icon.headers["content-type"].startswith("image/svg+xml")
    # What a browser asks every origin for, signed in or not: the same icon, not a 404.
    favicon = await client.get("/favicon.ico")
    assert favicon.status_code == 200
    assert favicon.content == icon.content
    await sign_in(client, ADMIN)
    page = (await client.get(f"/ui/sites/{site['id']}/trends")).text
    assert 'navigator.serviceWorker.register("/ui/sw.js", {scope: "/ui"})' in page
    assert "serviceWorker" not in (await client.get("/ui/login")).text  # only for signed-in pages


async def test_a_site_without_data_renders_every_page(ui: Any) -> None:
    client, _, _ = ui
    empty = await make_site(client, name="new")
    await sign_in(client, ADMIN)
    for page in ("trends", "pages", "attribution", "compare"):
        r = await client.get(f"/ui/sites/{empty['id']}/{page}?range=30d")
        assert r.status_code == 200, (page, r.text[-500:])
    trends = (await client.get(f"/ui/sites/{empty['id']}/trends")).text
    assert "No page views in this range." in trends
    assert cell(trends, 'data-metric="LCP"', 8) == "0"
