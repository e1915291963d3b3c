"""The dashboard's Tokens page on SQLite and PostgreSQL: create (shown once), list without
secrets, revoke (the token and a sign-in made with it stop working), admins only."""

from __future__ import annotations

import re
from html import unescape
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.db import Database
from app.sites import create_token
from tests.conftest import ADMIN
from tests.integration.ui_data import csrf_of, seeded_client, sign_in

Client = AsyncTestClient[Litestar]


@pytest.fixture
async def admin(client: Client, db: Database) -> tuple[Client, dict[str, Any], str]:
    client, site, _ = await seeded_client(client, db)
    await sign_in(client, ADMIN)
    page = await client.get("/ui/tokens")
    assert page.status_code == 200
    return client, site, csrf_of(page.text)


async def test_create_list_and_revoke(admin: Any) -> None:
    client, site, csrf = admin
    made = await client.post("/ui/tokens", data={"name": "grafana", "scope": "read", "site_id": str(site["id"]),
                                                 "_csrf_token": csrf})  # fmt: skip
    assert made.status_code == 200
    [token] = re.findall(r"<pre><code>(flt_[A-Za-z0-9_-]+)</code></pre>", made.text)
    assert "not shown again" in made.text
    r = await client.get(f"/api/v1/sites/{site['id']}/summary", headers={"authorization": f"Bearer {token}"})
    assert r.status_code == 200  # a working read token, limited to the site

    listing = await client.get("/ui/tokens")
    assert token not in listing.text  # listed by its first characters only
    row = re.search(r'<tr data-token="(\d+)">(.*?)</tr>', listing.text, re.S)
    assert row is not None
    for words in ("grafana", "shop", f"<code>{token[:10]}…</code>"):
        assert words in unescape(row[2])

    bad = await client.post(
        "/ui/tokens", data={"name": "x", "scope": "admin", "site_id": str(site["id"]), "_csrf_token": csrf}
    )
    assert bad.status_code == 400
    assert "admin tokens cannot be limited to one site" in bad.text

    revoked = await client.post(f"/ui/tokens/{row[1]}/revoke", data={"_csrf_token": csrf})
    assert (revoked.status_code, revoked.headers["location"]) == (303, "/ui/tokens")
    r = await client.get(f"/api/v1/sites/{site['id']}/summary", headers={"authorization": f"Bearer {token}"})
    assert r.status_code == 401
    assert 'data-token="' not in (await client.get("/ui/tokens")).text


async def test_reloading_the_answer_makes_no_second_token(admin: Any) -> None:
    """The browser re-sends the form on a reload of the page that showed the new token."""
    client, _, csrf = admin
    [form_id] = re.findall(r'name="form_id" value="([^"]+)"', (await client.get("/ui/tokens")).text)
    form = {"name": "ci", "scope": "deploy", "site_id": "", "form_id": form_id, "_csrf_token": csrf}
    made = await client.post("/ui/tokens", data=form)
    assert made.status_code == 200
    [token_id] = re.findall(r'<tr data-token="(\d+)">', made.text)
    again = await client.post("/ui/tokens", data=form)
    assert again.status_code == 409
    assert f"token {token_id} was made with it" in again.text
    assert "<pre><code>flt_" not in again.text  # the secret is not shown twice
    assert re.findall(r'<tr data-token="(\d+)">', again.text) == [token_id]
    [fresh] = re.findall(r'name="form_id" value="([^"]+)"', again.text)
    assert fresh != form_id  # the page's form makes a new token when sent on purpose
    assert (await client.post("/ui/tokens", data={**form, "form_id": fresh})).status_code == 200


async def test_only_admins_see_or_use_the_page(admin: Any, db: Database) -> None:
    client, _, _ = admin
    _, read = await create_token(db=db, scope="read")
    await sign_in(client, read)
    overview = await client.get("/ui/")
    assert 'href="/ui/tokens"' not in overview.text
    assert (await client.get("/ui/tokens")).status_code == 403
    r = await client.post("/ui/tokens", data={"scope": "admin", "_csrf_token": csrf_of(overview.text)})
    assert r.status_code == 403
