"""The dashboard's webhook forms on SQLite and PostgreSQL: add (validated, the URL's secret path
not shown), send a test that lands in the receiver and the alert log, delete; admins only."""

from __future__ import annotations

from html import unescape
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.db import Database
from app.sites import create_token
from tests.conftest import ADMIN
from tests.integration.ui_data import csrf_of, seeded_client, sign_in
from tests.integration.webhook_receiver import Receiver

Client = AsyncTestClient[Litestar]
AS_ADMIN = {"authorization": f"Bearer {ADMIN}"}


@pytest.fixture
async def admin(client: Client, db: Database) -> tuple[Client, dict[str, Any], str]:
    client, site, _ = await seeded_client(client, db)
    await sign_in(client, ADMIN)
    return client, site, csrf_of((await client.get("/ui/budgets")).text)


async def test_add_test_and_delete_a_webhook(admin: Any, receiver: Receiver) -> None:
    client, site, csrf = admin
    url = f"{receiver.url}/services/T000/B000/XXXXsecretXXXX"
    bad = await client.post("/ui/webhooks", data={"name": "ops", "url": "ftp://x", "format": "slack", "scope": "",
                                                  "secret": "hush", "_csrf_token": csrf})  # fmt: skip
    assert bad.status_code == 400
    assert "url" in unescape(bad.text).split('role="alert">', 1)[1].split("<", 1)[0]
    assert "hush" not in bad.text
    r = await client.post("/ui/webhooks", data={"name": "ops", "url": url, "format": "slack",
                                                "scope": f"site:{site['id']}", "secret": "", "_csrf_token": csrf})  # fmt: skip
    assert (r.status_code, r.headers["location"]) == (303, "/ui/budgets#webhooks")
    page = (await client.get("/ui/budgets")).text
    assert "XXXXsecretXXXX" not in page  # only scheme and host are shown
    assert f"{receiver.url}/…" in unescape(page)
    [hook] = (await client.get("/api/v1/webhooks", headers=AS_ADMIN)).json()
    assert (hook["url"], hook["format"], hook["scope"]) == (url, "slack", f"site:{site['id']}")

    tested = await client.post(f"/ui/webhooks/{hook['id']}/test", data={"_csrf_token": csrf})
    assert (tested.status_code, tested.headers["location"]) == (303, "/ui/budgets#deliveries")
    [got] = receiver.on("/services/T000/B000/XXXXsecretXXXX")
    assert got.json()["text"].startswith(":bell: TEST fieldlab test notification")
    log = (await client.get("/ui/budgets")).text
    assert "<td>test</td>" in log
    assert "delivered" in log

    assert (
        await client.post(f"/ui/webhooks/{hook['id']}/delete", data={"_csrf_token": csrf})
    ).status_code == 303
    assert (await client.get("/api/v1/webhooks", headers=AS_ADMIN)).json() == []


async def test_a_read_sign_in_has_no_webhook_forms(admin: Any, db: Database, receiver: Receiver) -> None:
    client, _, _ = admin
    _, read = await create_token(db=db, scope="read")
    await sign_in(client, read)
    page = await client.get("/ui/budgets")
    assert 'id="add-webhook"' not in page.text
    r = await client.post("/ui/webhooks", data={"name": "x", "url": f"{receiver.url}/x", "format": "json",
                                                "_csrf_token": csrf_of(page.text)})  # fmt: skip
    assert r.status_code == 403
    assert (await client.get("/api/v1/webhooks", headers=AS_ADMIN)).json() == []
