"""Deploy markers over the API and regression comparisons over stored field and lab data, on
both databases."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.db import Database, now_ms
from app.models import Check, CheckRun, table
from tests.conftest import make_site, make_token
from tests.integration.field_rows import insert_field

Client = AsyncTestClient[Litestar]
HOUR = 3_600_000


async def test_markers_api(client: Client) -> None:
    site = await make_site(client)
    other = await make_site(client)
    sid = site["id"]
    r = await client.post(
        f"/api/v1/sites/{sid}/markers",
        json={"commit": "abc1234def", "branch": "main", "time": "2026-11-01T10:00:00Z", "message": "v1"},
    )
    assert r.status_code == 201, r.text
    first = r.json()
    assert first["commit"] == "abc1234def"
    assert first["time"] == "2026-11-01T10:00:00Z"
    assert first["message"] == "v1"
    r = await client.post(f"/api/v1/sites/{sid}/markers", json={"commit": "fff0001", "branch": "release"})
    assert r.status_code == 201
    assert abs(r.json()["ts"] - now_ms()) < 60_000  # no time: now

    listed = (await client.get(f"/api/v1/sites/{sid}/markers")).json()
    assert [m["commit"] for m in listed] == ["fff0001", "abc1234def"]  # newest first
    only_main = (await client.get(f"/api/v1/sites/{sid}/markers", params={"branch": "main"})).json()
    assert [m["id"] for m in only_main] == [first["id"]]
    assert (await client.get(f"/api/v1/sites/{other['id']}/markers")).json() == []

    # A deploy token (a CI's) of this site or of all sites may add markers; a deploy token of
    # another site, or any read token, may not - a leaked dashboard token cannot fake deploys.
    for ci in (await make_token(client, "deploy", sid), await make_token(client, "deploy")):
        r = await client.post(
            f"/api/v1/sites/{sid}/markers",
            json={"commit": "c1", "branch": "main"},
            headers={"authorization": f"Bearer {ci}"},
        )
        assert r.status_code == 201, r.text
    refused = {
        "deploy token of another site": await make_token(client, "deploy", other["id"]),
        "read token of the site": await make_token(client, "read", sid),
        "read token": await make_token(client, "read"),
    }
    for case, bearer in refused.items():
        r = await client.post(
            f"/api/v1/sites/{sid}/markers",
            json={"commit": "c2", "branch": "main"},
            headers={"authorization": f"Bearer {bearer}"},
        )
        assert r.status_code == 403, (case, r.text)
        assert "deploy token" in r.json()["detail"], case
    r = await client.post(
        f"/api/v1/sites/{sid}/markers", json={"commit": "c3", "branch": "main"}, headers={"authorization": ""}
    )
    assert r.status_code == 401


async def test_a_marker_recorded_by_mistake_can_be_deleted(client: Client) -> None:
    site, other = await make_site(client), await make_site(client)
    sid = site["id"]
    made = []
    for commit in ("aaa1111", "bbb2222"):
        r = await client.post(f"/api/v1/sites/{sid}/markers", json={"commit": commit, "branch": "main"})
        made.append(r.json())
    wrong = f"/api/v1/sites/{sid}/markers/{made[1]['id']}"
    for bearer in (await make_token(client, "read", sid), await make_token(client, "deploy", other["id"])):
        r = await client.delete(wrong, headers={"authorization": f"Bearer {bearer}"})
        assert r.status_code == 403, r.text
    assert (await client.delete(f"/api/v1/sites/{other['id']}/markers/{made[1]['id']}")).status_code == 404
    ci = await make_token(client, "deploy", sid)
    assert (await client.delete(wrong, headers={"authorization": f"Bearer {ci}"})).status_code == 204
    assert [m["commit"] for m in (await client.get(f"/api/v1/sites/{sid}/markers")).json()] == ["aaa1111"]
    latest = await client.get(
        f"/api/v1/sites/{sid}/regressions", params={"metric": "LCP", "marker": "latest"}
    )
    assert latest.json()["window"]["since"] == "deploy aaa1111", latest.text
    assert (await client.delete(wrong)).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"branch": "main"}, "commit"),
        ({"commit": "", "branch": "main"}, "commit"),
        ({"commit": "a" * 65, "branch": "main"}, "commit"),
        ({"commit": "abc", "branch": ""}, "branch"),
        ({"commit": "abc", "branch": "main", "time": "yesterday"}, "time"),
        ({"commit": "abc", "branch": "main", "message": "m" * 1001}, "message"),
    ],
)
async def test_marker_input_errors_name_the_field(client: Client, body: dict[str, Any], field: str) -> None:
    site = await make_site(client)
    r = await client.post(f"/api/v1/sites/{site['id']}/markers", json=body)
    assert r.status_code == 400, r.text
    assert field in r.json()["detail"], r.text


async def test_marker_for_a_missing_site_is_404(client: Client) -> None:
    r = await client.post("/api/v1/sites/999/markers", json={"commit": "abc", "branch": "main"})
    assert r.status_code == 404


# --- regressions over stored data ---------------------------------------------------------------


async def test_field_p75_regression_since_a_deploy(client: Client, db: Database) -> None:
    site = await make_site(client)
    sid = site["id"]
    now = now_ms()
    deploy = now - 3 * HOUR
    rng = np.random.default_rng(7)
    await insert_field(db, sid, "LCP", rng.lognormal(np.log(2000), 0.4, 600), deploy - 24 * HOUR, deploy)
    await insert_field(db, sid, "LCP", rng.lognormal(np.log(2500), 0.4, 600), deploy, now)
    await insert_field(db, sid, "INP", rng.lognormal(np.log(150), 0.4, 600), deploy - 24 * HOUR, deploy)
    await insert_field(db, sid, "INP", rng.lognormal(np.log(150), 0.4, 600), deploy, now)
    r = await client.post(
        f"/api/v1/sites/{sid}/markers", json={"commit": "abc1234ffee", "branch": "main", "time": _iso(deploy)}
    )
    assert r.status_code == 201

    r = await client.get(
        f"/api/v1/sites/{sid}/regressions", params={"marker": "latest", "metric": ["LCP", "INP", "CLS"]}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["window"]["since"] == "deploy abc1234"
    assert body["window"]["baseline"] == [deploy - 24 * HOUR, deploy]
    lcp, inp, cls = body["results"]
    assert lcp["outcome"] == "regressed", lcp
    assert lcp["current_n"] == 600
    assert lcp["baseline_n"] == 600
    assert 300 < lcp["delta"] < 1000
    assert lcp["summary"].startswith("LCP p75 +")
    assert "since deploy abc1234" in lcp["summary"]
    assert inp["outcome"] == "no-change"
    assert cls["outcome"] == "insufficient-data"
    # Same answer when the marker is named by its commit; filters narrow the rows.
    by_commit = (
        await client.get(f"/api/v1/sites/{sid}/regressions", params={"marker": "abc1234", "metric": "LCP"})
    ).json()
    assert by_commit["results"][0]["delta"] == lcp["delta"]
    desktop = (
        await client.get(
            f"/api/v1/sites/{sid}/regressions",
            params={"marker": "latest", "metric": "LCP", "device": "desktop"},
        )
    ).json()
    assert desktop["results"][0]["outcome"] == "insufficient-data"
    # Without a marker: the last window against the one before it.
    prev = (
        await client.get(f"/api/v1/sites/{sid}/regressions", params={"metric": "LCP", "window_h": 6})
    ).json()
    assert prev["window"]["since"] == "previous period"
    assert prev["results"][0]["outcome"] == "regressed"


async def test_regression_input_errors(client: Client) -> None:
    site = await make_site(client)
    sid = site["id"]
    r = await client.get(f"/api/v1/sites/{sid}/regressions", params={"metric": "FID"})
    assert r.status_code == 400
    assert "metric" in r.json()["detail"]
    r = await client.get(f"/api/v1/sites/{sid}/regressions", params={"marker": "nosuch"})
    assert r.status_code == 404
    assert "marker" in r.json()["detail"]
    r = await client.get(f"/api/v1/sites/{sid}/regressions", params={"marker": "ab"})
    assert r.status_code == 400
    assert "marker" in r.json()["detail"]
    r = await client.get(f"/api/v1/sites/{sid}/regressions", params={"window_h": 0})
    assert r.status_code == 400
    assert "window_h" in r.text
    assert (await client.get("/api/v1/sites/999/regressions")).status_code == 404


async def test_lab_regression_of_a_checks_runs(client: Client, db: Database) -> None:
    site = await make_site(client)
    now = now_ms()
    deploy = now - 2 * HOUR
    async with db.write() as session:
        check = Check(
            name="checkout",
            kind="flow",
            target="https://shop.example/",
            site_id=site["id"],
            steps=[{"goto": "/"}],
            created_ms=now,
        )
        session.add(check)
    assert check.id is not None
    rng = np.random.default_rng(3)
    runs = []
    for i, (start, median) in enumerate([(deploy - 20 * HOUR, 900.0), (deploy + 60_000, 1400.0)]):
        for j, value in enumerate(rng.lognormal(np.log(median), 0.15, 12)):
            result = {
                "duration_ms": float(value) + 100,
                "steps": [
                    {
                        "name": "cart",
                        "duration_ms": float(value),
                        "navigations": [{"vitals": {"LCP": float(value) * 0.8}}],
                        "resources": {"total_bytes": 1000, "total_count": 3},
                    }
                ],
            }
            t = start + j * 60_000 + i
            runs.append(
                {
                    "check_id": check.id,
                    "status": "passed",
                    "trigger": "schedule",
                    "started_ms": t,
                    "finished_ms": t + 1000,
                    "duration_ms": float(value),
                    "result": result,
                }
            )
    runs.append({**runs[-1], "status": "error", "result": {"duration_ms": 99_999.0, "steps": []}})
    async with db.write_conn() as conn:
        await conn.execute(sa.insert(table(CheckRun)), runs)
    await client.post(
        f"/api/v1/sites/{site['id']}/markers",
        json={"commit": "beef123", "branch": "main", "time": _iso(deploy)},
    )
    for metric in ("duration", "step:cart", "LCP"):
        r = await client.get(
            f"/api/v1/checks/{check.id}/regressions", params={"metric": metric, "marker": "latest"}
        )
        assert r.status_code == 200, r.text
        [res] = r.json()["results"]
        assert res["outcome"] == "regressed", res
        assert res["baseline_n"] == 12
        assert res["current_n"] == 12
        assert res["p_value"] < 0.01
        assert res["summary"].endswith("since deploy beef123 regressed")
    r = await client.get(
        f"/api/v1/checks/{check.id}/regressions", params={"metric": "bytes", "marker": "latest"}
    )
    assert r.json()["results"][0]["outcome"] == "no-change"
    r = await client.get(f"/api/v1/checks/{check.id}/regressions", params={"metric": "step:nope"})
    assert r.json()["results"][0]["outcome"] == "insufficient-data"
    assert (await client.get("/api/v1/checks/999/regressions")).status_code == 404


def _iso(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


async def test_field_values_past_the_cap_are_an_even_sample(client: Client, db: Database) -> None:
    from app.budgets.compare import field_values

    site = await make_site(client)
    now = now_ms()
    # Values rise with time, so a sample from one end only would show in its median.
    await insert_field(db, site["id"], "LCP", np.arange(3000, dtype=float), now - 3000 * 1000, now)
    got = await field_values(db=db, site_id=site["id"], metric="LCP", span=(now - HOUR, now), most=1000)
    assert 900 <= len(got) <= 1000
    assert 1300 < float(np.median(got)) < 1700
    everything = await field_values(db=db, site_id=site["id"], metric="LCP", span=(now - HOUR, now))
    assert len(everything) == 3000
