"""The dashboard's check forms on SQLite and PostgreSQL: adding a flow or a Lighthouse check
(errors naming the field, refused targets), pausing and resuming, deleting behind a typed name,
and none of it for a read sign-in."""

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

Client = AsyncTestClient[Litestar]
AS_ADMIN = {"authorization": f"Bearer {ADMIN}"}
FLOW = {"name": "home", "kind": "flow", "target": "https://shop.example/", "every": "15m", "device": "mobile",
        "throttling": "none", "steps": "- goto: /\n- wait_for: '#product'", "runs": "3"}  # fmt: skip


@pytest.fixture
async def admin(client: Client, db: Database) -> tuple[Client, dict[str, Any], str]:
    client, site, _ = await seeded_client(client, db)
    await sign_in(client, ADMIN)
    token = csrf_of((await client.get("/ui/checks")).text)
    return client, site, token


async def test_adding_checks_validates_like_the_api(admin: Any) -> None:
    client, site, token = admin
    listing = await client.get("/ui/checks")
    assert 'id="add-check"' in listing.text
    refused = {
        "bad scheme": (
            {"target": "ftp://shop.example/"},
            "target: 'ftp://shop.example/' is not an http(s) URL",
        ),
        "private": ({"target": "http://10.0.0.8/"}, "target: refused http://10.0.0.8/"),
        "bad every": ({"every": "soon"}, "every: 'soon' is not a duration like 30s, 15m, 1h or 1d"),
        "bad step": ({"steps": "- jump: /"}, "unknown action 'jump'"),
        "no steps": ({"steps": ""}, "steps: a flow check needs"),
        "bad runs": ({"kind": "lighthouse", "runs": "many"}, "runs: 'many' is not a whole number"),
        "too many runs": ({"kind": "lighthouse", "runs": "12"}, "runs: must be between 1 and 9"),
    }
    for case, (change, words) in refused.items():
        r = await client.post("/ui/checks", data={**FLOW, **change, "_csrf_token": token})
        assert r.status_code == 400, case
        assert words in unescape(r.text), (case, words)
        assert 'value="home"' in r.text, case  # the form keeps what was typed
    assert (await client.get("/api/v1/checks", headers=AS_ADMIN)).json() == []

    r = await client.post("/ui/checks", data={**FLOW, "site_id": str(site["id"]), "_csrf_token": token})
    assert r.status_code == 303, r.text
    [flow] = (await client.get("/api/v1/checks", headers=AS_ADMIN)).json()
    assert r.headers["location"] == f"/ui/checks/{flow['id']}"
    assert (flow["kind"], flow["interval_s"], flow["device"], flow["site_id"]) == (
        "flow",
        900,
        "mobile",
        site["id"],
    )
    assert flow["steps"] == [{"goto": "/"}, {"wait_for": "#product"}]
    dup = await client.post("/ui/checks", data={**FLOW, "_csrf_token": token})
    assert (dup.status_code, "already" in dup.text) == (400, True)

    audit = {
        **FLOW,
        "name": "home audit",
        "kind": "lighthouse",
        "every": "",
        "runs": "2",
        "_csrf_token": token,
    }
    assert (await client.post("/ui/checks", data=audit)).status_code == 303
    lighthouse = [
        c for c in (await client.get("/api/v1/checks", headers=AS_ADMIN)).json() if c["kind"] == "lighthouse"
    ]
    assert [(c["runs"], c["interval_s"], c["steps"]) for c in lighthouse] == [(2, None, None)]


async def test_pause_resume_and_delete(admin: Any) -> None:
    client, _, token = admin
    r = await client.post("/ui/checks", data={**FLOW, "_csrf_token": token})
    url = r.headers["location"]
    check_id = int(url.rsplit("/", 1)[1])
    api = f"/api/v1/checks/{check_id}"
    assert "Pause schedule" in (await client.get(url)).text

    assert (
        await client.post(f"{url}/enabled", data={"enabled": "0", "_csrf_token": token})
    ).status_code == 303
    assert (await client.get(api, headers=AS_ADMIN)).json()["enabled"] is False
    paused = (await client.get(url)).text
    assert "Resume schedule" in paused
    assert "Paused: it runs only when started by hand." in paused
    assert (
        await client.post(f"{url}/enabled", data={"enabled": "1", "_csrf_token": token})
    ).status_code == 303
    assert (await client.get(api, headers=AS_ADMIN)).json()["enabled"] is True

    for typed, words in (
        ("", "type the check's name, home, to delete it"),
        ("Home", "'Home' is not this check's name"),
    ):
        r = await client.post(f"{url}/delete", data={"confirm": typed, "_csrf_token": token})
        assert (r.status_code, words in unescape(r.text)) == (400, True)
    assert (await client.get(api, headers=AS_ADMIN)).status_code == 200
    r = await client.post(f"{url}/delete", data={"confirm": "home", "_csrf_token": token})
    assert (r.status_code, r.headers["location"]) == (303, "/ui/checks")
    assert (await client.get(api, headers=AS_ADMIN)).status_code == 404


async def test_a_read_sign_in_cannot_add_pause_or_delete(admin: Any, db: Database) -> None:
    client, _, token = admin
    url = (await client.post("/ui/checks", data={**FLOW, "_csrf_token": token})).headers["location"]
    _, read = await create_token(db=db, scope="read")
    await sign_in(client, read)
    listing = await client.get("/ui/checks")
    assert 'id="add-check"' not in listing.text
    detail = (await client.get(url)).text
    assert 'id="delete-check"' not in detail
    assert 'id="toggle-check"' not in detail
    token = csrf_of(listing.text)
    for path, data in (("/ui/checks", {**FLOW, "name": "x"}), (f"{url}/enabled", {"enabled": "0"}),
                       (f"{url}/delete", {"confirm": "home"})):  # fmt: skip
        assert (await client.post(path, data={**data, "_csrf_token": token})).status_code == 403, path
    [check] = (await client.get("/api/v1/checks", headers=AS_ADMIN)).json()
    assert (check["name"], check["enabled"]) == ("home", True)
