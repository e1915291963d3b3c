"""The dashboard's site settings page on SQLite and PostgreSQL: the snippet tag, editing origins,
rules and allowlist (admins only, CSRF-protected, errors naming the field), and deleting a site
behind a typed confirmation."""

from __future__ import annotations

from html import unescape
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.db import Database
from app.sites import create_token
from app.ui.site_settings import parse_rules
from tests.conftest import ADMIN
from tests.integration.ui_data import csrf_of, seeded_client, sign_in

Client = AsyncTestClient[Litestar]
AS_ADMIN = {"authorization": f"Bearer {ADMIN}"}


@pytest.fixture
async def ui(client: Client, db: Database) -> tuple[Client, dict[str, Any]]:
    client, site, _ = await seeded_client(client, db)
    return client, site


def test_rules_are_one_a_line_with_an_optional_group() -> None:
    assert parse_rules("/product/* = /product/:id\n\n  /blog/**  \n/a=b") == [
        {"pattern": "/product/*", "group": "/product/:id"},
        {"pattern": "/blog/**", "group": "/blog/**"},
        {"pattern": "/a", "group": "b"},
    ]


async def test_admin_edits_a_site_and_bad_input_names_the_field(ui: Any) -> None:
    client, site = ui
    await sign_in(client, ADMIN)
    url = f"/ui/sites/{site['id']}/settings"
    page = await client.get(url)
    assert page.status_code == 200
    text = unescape(page.text)
    assert (
        f'<script async src="http://127.0.0.1:8000/fieldlab.js" data-site="{site["key"]}"></script>' in text
    )
    assert 'value="https://shop.example"' in text
    token = csrf_of(page.text)

    form = {"name": "shop", "origins": "https://shop.example ftp://www.shop.example", "page_groups": "/p/* = /p/:id",
            "query_allowlist": "lang", "_csrf_token": token}  # fmt: skip
    bad = await client.post(url, data=form)
    assert bad.status_code == 400
    assert "origins: 'ftp://www.shop.example' is not an http(s) origin" in unescape(bad.text)
    assert "ftp://www.shop.example" in bad.text  # what was typed stays in the form
    bad_rule = await client.post(url, data={**form, "origins": "https://shop.example", "page_groups": "p/*"})
    assert "page_groups[0].pattern" in bad_rule.text
    stored = (await client.get(f"/api/v1/sites/{site['id']}", headers=AS_ADMIN)).json()
    assert (stored["origins"], stored["page_groups"]) == (["https://shop.example"], [])

    saved = await client.post(url, data={**form, "origins": "https://shop.example, https://www.shop.example"})
    assert saved.status_code == 303
    assert saved.headers["location"] == f"{url}?saved=1"
    assert "Saved." in (await client.get(saved.headers["location"])).text
    stored = (await client.get(f"/api/v1/sites/{site['id']}", headers=AS_ADMIN)).json()
    assert stored["origins"] == ["https://shop.example", "https://www.shop.example"]
    assert stored["page_groups"] == [{"pattern": "/p/*", "group": "/p/:id"}]
    assert (stored["query_allowlist"], stored["key"]) == (["lang"], site["key"])
    assert "/p/* = /p/:id" in unescape((await client.get(url)).text)  # the form shows the stored rules

    without_csrf = await client.post(url, data={k: v for k, v in form.items() if k != "_csrf_token"})
    assert without_csrf.status_code == 403


async def test_a_read_sign_in_sees_the_settings_but_cannot_change_or_delete(ui: Any, db: Database) -> None:
    client, site = ui
    _, read = await create_token(db=db, scope="read")
    await sign_in(client, read)
    url = f"/ui/sites/{site['id']}/settings"
    page = await client.get(url)
    assert page.status_code == 200
    assert site["key"] in page.text
    assert 'id="site-settings"' in page.text
    assert "<form" not in page.text.split('id="snippet"', 1)[1].split("Sign out")[0]
    token = csrf_of(page.text)
    changed = await client.post(url, data={"name": "x", "origins": "https://x.example", "_csrf_token": token})
    assert changed.status_code == 403
    deleted = await client.post(
        f"/ui/sites/{site['id']}/delete", data={"confirm": "shop", "_csrf_token": token}
    )
    assert deleted.status_code == 403
    assert (await client.get(f"/api/v1/sites/{site['id']}", headers=AS_ADMIN)).json()["name"] == "shop"


async def test_delete_needs_the_name_typed(ui: Any) -> None:
    client, site = ui
    await sign_in(client, ADMIN)
    page = await client.get(f"/ui/sites/{site['id']}/settings")
    token = csrf_of(page.text)
    delete = f"/ui/sites/{site['id']}/delete"
    for typed, words in (
        ("", "type the site's name, shop, to delete it"),
        ("Shop", "'Shop' is not this site's name"),
    ):
        r = await client.post(delete, data={"confirm": typed, "_csrf_token": token})
        assert r.status_code == 400
        assert words in unescape(r.text)
    assert (await client.get(f"/api/v1/sites/{site['id']}", headers=AS_ADMIN)).status_code == 200

    r = await client.post(delete, data={"confirm": "shop", "_csrf_token": token})
    assert r.status_code == 303
    assert r.headers["location"] == "/ui/"
    assert (await client.get(f"/api/v1/sites/{site['id']}", headers=AS_ADMIN)).status_code == 404
    assert (await client.get(f"/ui/sites/{site['id']}/trends")).status_code == 404
    overview = (await client.get("/ui/")).text
    assert f"/ui/sites/{site['id']}/" not in overview
    assert site["key"] not in overview
