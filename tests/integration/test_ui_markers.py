"""The dashboard's deploy-marker forms on a site's compare page, on SQLite and PostgreSQL:
record a deploy (validated, the error names the field), see it listed and offered for
comparison, delete it; admins and the site's deploy tokens only."""

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


@pytest.fixture
async def signed_in(client: Client, db: Database) -> tuple[Client, dict[str, Any]]:
    client, site, _ = await seeded_client(client, db)
    await sign_in(client, ADMIN)
    return client, site


def alert(html: str) -> str:
    return unescape(html).split('role="alert">', 1)[1].split("<", 1)[0]


async def test_record_list_and_delete_a_deploy(signed_in: Any) -> None:
    client, site = signed_in
    page_url = f"/ui/sites/{site['id']}/compare"
    page = (await client.get(page_url)).text
    assert "No deploys recorded" in page
    csrf = csrf_of(page)
    bad = await client.post(f"{page_url.rsplit('/', 1)[0]}/markers",
                            data={"commit": "x" * 65, "branch": "main", "message": "hotfix", "_csrf_token": csrf})  # fmt: skip
    assert bad.status_code == 400
    assert alert(bad.text) == "commit: must be 1 to 64 characters"
    assert 'value="hotfix"' in bad.text  # what was typed stays in the form

    r = await client.post(f"/ui/sites/{site['id']}/markers",
                          data={"commit": "abc1234def", "branch": "main", "message": "hotfix", "_csrf_token": csrf})  # fmt: skip
    assert (r.status_code, r.headers["location"]) == (303, f"{page_url}#markers")
    [marker] = (await client.get(f"/api/v1/sites/{site['id']}/markers", headers=AS_ADMIN)).json()
    assert (marker["commit"], marker["branch"], marker["message"]) == ("abc1234def", "main", "hotfix")
    page = (await client.get(page_url)).text
    assert f'data-marker="{marker["id"]}"' in page
    assert f'<option value="{marker["id"]}"' in page  # offered as a before/after pivot
    compared = await client.get(page_url, params={"deploy": marker["id"]})
    assert compared.status_code == 200
    assert "B starts at deploy <code>abc1234def</code>" in compared.text

    r = await client.post(f"/ui/sites/{site['id']}/markers/{marker['id']}/delete", data={"_csrf_token": csrf})
    assert r.status_code == 303
    assert (await client.get(f"/api/v1/sites/{site['id']}/markers", headers=AS_ADMIN)).json() == []
    again = await client.post(
        f"/ui/sites/{site['id']}/markers/{marker['id']}/delete", data={"_csrf_token": csrf}
    )
    assert again.status_code == 404


async def test_read_sign_ins_only_look_and_deploy_tokens_may_mark(signed_in: Any, db: Database) -> None:
    client, site = signed_in
    _, read = await create_token(db=db, scope="read")
    await sign_in(client, read)
    page = (await client.get(f"/ui/sites/{site['id']}/compare")).text
    assert 'id="marker-list"' in page
    assert 'id="add-marker"' not in page
    r = await client.post(f"/ui/sites/{site['id']}/markers",
                          data={"commit": "abc1234", "branch": "main", "_csrf_token": csrf_of(page)})  # fmt: skip
    assert r.status_code == 403
    assert (await client.get(f"/api/v1/sites/{site['id']}/markers", headers=AS_ADMIN)).json() == []

    _, deploy = await create_token(db=db, scope="deploy", site_id=site["id"])
    await sign_in(client, deploy)
    page = (await client.get(f"/ui/sites/{site['id']}/compare")).text
    assert 'id="add-marker"' in page
    r = await client.post(f"/ui/sites/{site['id']}/markers",
                          data={"commit": "abc1234", "branch": "main", "_csrf_token": csrf_of(page)})  # fmt: skip
    assert r.status_code == 303
    assert len((await client.get(f"/api/v1/sites/{site['id']}/markers", headers=AS_ADMIN)).json()) == 1
