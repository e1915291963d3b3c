"""The demo's generated field history, on both databases: it reaches every view the README
says it fills (summary, page groups, devices, the regression since the latest deploy, the error
search), through the real ingest path, and is written once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlmodel import select

from app import checks as check_data
from app.budgets.alerts import AlertPolicy
from app.budgets.notify import payload_for
from app.budgets.regress import Thresholds
from app.budgets.store import record_verdicts
from app.budgets.watch import deploy_verdicts
from app.db import Database, now_ms
from app.demo.history import DAYS, seed_history
from app.demo.lab_history import seed_lab_history
from app.models import AlertState, BudgetStatus, Check
from app.sites import get_site
from tests.conftest import make_site

Client = AsyncTestClient[Litestar]
GROUPS = ({"pattern": "/demo/product/*", "group": "/demo/product/:id"},)
PRODUCT = "/demo/product/:id"


async def _get(client: Client, path: str, **params: Any) -> Any:
    r = await client.get(path, params=params)
    assert r.status_code == 200, r.text
    return r.json()


async def test_demo_history_fills_the_views(client: Client, db: Database) -> None:
    sid = (await make_site(client, page_groups=list(GROUPS)))["id"]
    seeded = await seed_history(db=db, site_id=sid, base="http://127.0.0.1:8000", page_groups=GROUPS)
    assert seeded is not None
    assert seeded.page_views > DAYS * 24 * 20
    assert seeded.markers == 2
    since = datetime.fromtimestamp((now_ms() - (DAYS + 1) * 86_400_000) / 1000, UTC).isoformat()

    summary = await _get(client, f"/api/v1/sites/{sid}/summary", since=since)
    counts = {m: summary["metrics"][m]["count"] for m in ("LCP", "FCP", "TTFB", "CLS", "INP")}
    assert counts["LCP"] == counts["FCP"] == counts["TTFB"] == counts["CLS"] == seeded.page_views, counts
    assert 0.5 * seeded.page_views < counts["INP"] < 0.7 * seeded.page_views  # 60 % interact
    for page in ("/demo", PRODUCT):
        for device in ("mobile", "desktop"):
            part = await _get(client, f"/api/v1/sites/{sid}/summary", since=since, page=page, device=device)
            assert part["metrics"]["LCP"]["count"] > DAYS * 24, (page, device)

    async def lcp_since_deploy(**filters: str) -> dict[str, Any]:
        body = await _get(
            client, f"/api/v1/sites/{sid}/regressions", marker="latest", metric="LCP", **filters
        )
        assert body["window"]["since"] == "deploy 9b3d0a1"
        result: dict[str, Any] = body["results"][0]
        return result

    regressed = await lcp_since_deploy(page=PRODUCT, device="mobile")
    assert regressed["outcome"] == "regressed", regressed
    assert (await lcp_since_deploy(page=PRODUCT, device="desktop"))["outcome"] == "no-change"
    home = await lcp_since_deploy(page="/demo", device="mobile")
    assert home["outcome"] == "no-change", home

    # The deploy watch (the budgets job) sees the same: mobile LCP regressed, desktop did not.
    site = await get_site(db=db, site_id=sid)
    assert site is not None
    watch = await deploy_verdicts(
        db=db, site=site, now_ms=now_ms(), watch_ms=48 * 3_600_000, thresholds=Thresholds(min_samples=100)
    )
    statuses = {v.budget_id: v.status for v in watch}
    assert statuses["regression:LCP:mobile"] == "warn"
    (lcp,) = [v for v in watch if v.budget_id == "regression:LCP:mobile"]
    assert lcp.detail.split("; page groups: ")[1].startswith(f"{PRODUCT} +"), lcp.detail
    assert statuses["regression:LCP:desktop"] == "pass"
    assert statuses["regression:TTFB:mobile"] == "pass"

    assert (await client.post("/api/v1/admin/jobs/search-index/run")).status_code in (200, 202)
    groups = (await _get(client, "/api/v1/logs/groups", q="price", site=sid))["groups"]
    assert len(groups) == 1
    assert groups[0]["count"] > 5
    assert [g["value"] for g in groups[0]["page_groups"]] == [PRODUCT]

    assert await seed_history(db=db, site_id=sid, base="http://127.0.0.1:8000", page_groups=GROUPS) is None
    again = await _get(client, f"/api/v1/sites/{sid}/summary", since=since)
    assert again["metrics"]["LCP"]["count"] == seeded.page_views


async def test_the_demo_lab_regression_shows_on_its_step_not_on_the_first_page(
    client: Client, db: Database
) -> None:
    """The generated deploy slows the product page: the flow's first navigation (home, what
    ``LCP`` compares) did not change, ``step:product:LCP`` (the step's page, as budgets judge
    it) regressed."""
    sid = (await make_site(client, page_groups=list(GROUPS)))["id"]
    assert await seed_history(db=db, site_id=sid, base="http://127.0.0.1:8000", page_groups=GROUPS)
    async with db.write() as session:
        check = Check(
            name="demo flow", kind="flow", target="http://127.0.0.1:8000/demo/", site_id=sid, created_ms=0
        )
        session.add(check)
    assert await seed_lab_history(db=db, checks=[check], base="http://127.0.0.1:8000") > 100

    async def since_deploy(metric: str) -> dict[str, Any]:
        body = await _get(client, f"/api/v1/checks/{check.id}/regressions", marker="latest", metric=metric)
        result: dict[str, Any] = body["results"][0]
        return result

    product = await since_deploy("step:product:LCP")
    assert product["outcome"] == "regressed", product
    assert product["current"] > 1.4 * product["baseline"]
    # Home's LCP is drawn from one distribution throughout (a chance "improved" is possible).
    assert (await since_deploy("LCP"))["outcome"] != "regressed"
    assert (await since_deploy("step:home:LCP"))["outcome"] != "regressed"
    assert (await since_deploy("step:product"))["outcome"] != "regressed"  # its duration
    assert (await since_deploy("step:nope:LCP"))["outcome"] == "insufficient-data"

    # The deploy watch compares the same, and only the product step's LCP regressed.
    site = await get_site(db=db, site_id=sid)
    assert site is not None
    watch = await deploy_verdicts(db=db, site=site, now_ms=now_ms(), watch_ms=48 * 3_600_000,
                                  thresholds=Thresholds(min_samples=100), lab_thresholds=Thresholds(min_samples=5))  # fmt: skip
    lab = {v.budget_id: v for v in watch if v.budget_id.startswith("regression:check:")}
    prefix = f"regression:check:{check.id}:"
    assert sorted(lab) == [prefix + m for m in ("duration", "step:home:LCP", "step:product:LCP")]
    assert {k: v.status for k, v in lab.items() if v.status == "warn"} == {
        prefix + "step:product:LCP": "warn"
    }
    regressed = lab[prefix + "step:product:LCP"]
    assert regressed.margin is not None
    assert regressed.margin < 0  # worse, signed like a budget's
    assert regressed.detail.endswith("since deploy 9b3d0a1 regressed (check demo flow)"), regressed.detail
    without = await deploy_verdicts(db=db, site=site, now_ms=now_ms(), watch_ms=48 * 3_600_000,
                                    thresholds=Thresholds(min_samples=100))  # fmt: skip
    assert not [v for v in without if v.budget_id.startswith("regression:check:")]

    # Deleting the check takes what was judged of it along; the site's field verdicts stay.
    await record_verdicts(
        db=db, scope=f"site:{sid}", verdicts=watch, policy=AlertPolicy(), payload_for=payload_for
    )
    await record_verdicts(db=db, scope=f"check:{check.id}", verdicts=watch[:1], policy=AlertPolicy(),
                          payload_for=payload_for)  # fmt: skip

    async def judged() -> set[tuple[str, str]]:
        async with db.read() as session:
            states = (await session.exec(select(AlertState.scope, AlertState.budget_id))).all()
            statuses = (await session.exec(select(BudgetStatus.scope, BudgetStatus.budget_id))).all()
        assert set(states) == set(statuses)
        return set(states)

    assert len(await judged()) == len(watch) + 1
    assert await check_data.delete_check(db=db, check_id=check.id)
    left = await judged()
    assert left == {
        (f"site:{sid}", v.budget_id) for v in watch if not v.budget_id.startswith("regression:check:")
    }
