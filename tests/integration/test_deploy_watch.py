"""Deploy watch on both databases: a field regression after a deploy moves an alert state and
notifies a real webhook receiver once; a clean next deploy recovers it; sites without a change,
or deployed before the watch period, send nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from scipy import stats

from app.budgets.notify import WebhookNotifier
from app.budgets.service import BudgetService
from app.config import Settings
from app.db import Database, now_ms
from tests.conftest import make_site
from tests.integration.field_rows import insert_field
from tests.integration.webhook_receiver import Receiver

Client = AsyncTestClient[Litestar]
HOUR = 3_600_000


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, alert_k=2, alert_n=3, deploy_watch_h=48, webhook_backoff_s=0.05)


@pytest.fixture
async def service(db: Database, settings: Settings) -> AsyncIterator[BudgetService]:
    """The app's own budgets service, built on the test's database handle (the test client runs
    the app on another event loop)."""
    notifier = WebhookNotifier(db=db, timeout_s=5.0, retries=1, backoff_s=0.05)
    svc = BudgetService(db=db, settings=settings, notifier=notifier)
    yield svc
    await svc.close()


async def _site_with_deploy(client: Client, db: Database, *, hours_ago: float, after_median: float) -> int:
    """LCP on mobile and desktop: a day before a deploy at median 2000 ms; after it, mobile at
    ``after_median``, desktop unchanged."""
    sid: int = (await make_site(client))["id"]
    now = now_ms()
    deploy = now - int(hours_ago * HOUR)
    rng = np.random.default_rng(sid)
    for device, median in (("mobile", after_median), ("desktop", 2000.0)):
        await insert_field(
            db, sid, "LCP", rng.lognormal(np.log(2000), 0.4, 600), deploy - 24 * HOUR, deploy, device
        )
        await insert_field(
            db, sid, "LCP", rng.lognormal(np.log(median), 0.4, 500), deploy, now - HOUR, device
        )
    marker = {"commit": f"abc{sid:04d}", "branch": "main", "time": _iso(deploy)}
    assert (await client.post(f"/api/v1/sites/{sid}/markers", json=marker)).status_code == 201
    return sid


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


async def _alerts(client: Client, sid: int) -> list[dict[str, Any]]:
    r = await client.get("/api/v1/alerts", params={"scope": f"site:{sid}"})
    assert r.status_code == 200, r.text
    alerts: list[dict[str, Any]] = r.json()
    return alerts


async def _states(client: Client, sid: int) -> dict[str, str]:
    return {a["budget_id"]: a["summary"] for a in await _alerts(client, sid)}


async def test_a_regression_after_a_deploy_alerts_once_and_recovers(
    service: BudgetService, client: Client, db: Database, receiver: Receiver
) -> None:
    assert (await client.post("/api/v1/webhooks", json={"url": f"{receiver.url}/hook"})).status_code == 201
    slower = await _site_with_deploy(client, db, hours_ago=6, after_median=2700)
    steady = await _site_with_deploy(client, db, hours_ago=6, after_median=2000)
    old = await _site_with_deploy(client, db, hours_ago=72, after_median=2700)  # past the 48 h watch

    # LCP on 2 devices of the two sites in their watch; the other metrics have no field data.
    assert await service.watch_deploys() == 4
    assert receiver.on("/hook") == []  # K=2: one regressed evaluation is not an alert yet
    await service.watch_deploys()
    sent = [r.json() for r in receiver.on("/hook")]
    assert len(sent) == 1, sent
    alert = sent[0]
    assert alert["scope"] == f"site:{slower}"
    assert alert["budget"]["id"] == "regression:LCP:mobile"
    assert alert["event"] == "failing"
    assert alert["band"] == "warn"
    # p75 of the day before the deploy (lognormal, median 2000: ~2,620) and since it (~3,540)
    assert 2400 < alert["limit"] < 2800 < 3300 < alert["actual"] < 3800
    assert f"since deploy abc{slower:04d} regressed (mobile); page groups: /p/:id +" in alert["detail"]
    assert alert["text"].startswith("WARN LCP p75 on mobile since the latest deploy is failing: LCP p75 +")

    states = await _states(client, slower)
    assert states["regression:LCP:mobile"] == "warning"
    assert states["regression:LCP:desktop"] == "ok"
    assert set((await _states(client, steady)).values()) == {"ok"}
    assert await _states(client, old) == {}

    # A fix deployed an hour ago, its page views back at 2000 ms: better than the day before it.
    now = now_ms()
    rng = np.random.default_rng(99)
    await insert_field(db, slower, "LCP", rng.lognormal(np.log(2000), 0.4, 300), now - HOUR, now, "mobile")
    fix = {"commit": "f1x0001", "branch": "main", "time": _iso(now - HOUR)}
    assert (await client.post(f"/api/v1/sites/{slower}/markers", json=fix)).status_code == 201
    await service.watch_deploys()
    await service.watch_deploys()
    sent = [r.json() for r in receiver.on("/hook")]
    assert [s["event"] for s in sent] == ["failing", "recovered"]
    assert "since deploy f1x0001" in sent[1]["detail"]
    assert (await _states(client, slower))["regression:LCP:mobile"] == "ok"


async def test_a_regression_names_the_page_groups_that_regressed(
    service: BudgetService, client: Client, db: Database
) -> None:
    """Mobile LCP slower after the deploy on product pages only (and a little on the cart, too
    little to tell on its own): the device's verdict names /product/:id, not home or cart."""
    sid: int = (await make_site(client))["id"]
    now = now_ms()
    deploy = now - 6 * HOUR
    for group, after, n in (("/", 2000.0, 700), ("/product/:id", 3400.0, 500), ("/cart", 2050.0, 200)):
        for start, end, median in ((deploy - 24 * HOUR, deploy, 2000.0), (deploy, now - HOUR, after)):
            # Evenly spaced quantiles, not draws: an unchanged group is exactly unchanged.
            values = median * np.exp(0.4 * stats.norm.ppf((np.arange(n) + 0.5) / n))
            await insert_field(db, sid, "LCP", values, start, end, "mobile", page_group=group)
    marker = {"commit": "c0ffee1", "branch": "main", "time": _iso(deploy)}
    assert (await client.post(f"/api/v1/sites/{sid}/markers", json=marker)).status_code == 201

    assert await service.watch_deploys() == 1  # LCP on mobile; no desktop values
    params = {"scope": f"site:{sid}", "budget_id": "regression:LCP:mobile"}
    (verdict,) = (await client.get("/api/v1/budget-status", params=params)).json()
    assert verdict["status"] == "warn"
    detail = verdict["detail"]
    assert detail.startswith("LCP p75 +")
    assert "since deploy c0ffee1 regressed (mobile)" in detail
    named = detail.split("; page groups: ", 1)[1].split(", ")
    assert [n.split(" ")[0] for n in named] == ["/product/:id"], detail
    # The product pages' own p75 moved about 2,620 -> 4,450 ms (lognormal, sigma 0.4).
    assert 1300 < float(named[0].split(" +")[1].removesuffix(" ms")) < 2300
    # GET /api/v1/alerts carries the latest verdict with the state.
    (state,) = [a for a in await _alerts(client, sid) if a["budget_id"] == "regression:LCP:mobile"]
    assert state["summary"] == "ok"  # K=2: one regressed evaluation is not an alert yet
    assert state["last"]["status"] == "warn"
    assert state["last"]["detail"] == detail
    assert state["last"]["unit"] == "ms"
    assert state["last"]["actual"] == verdict["actual"]
    assert state["last"]["limit"] == verdict["limit"]


async def test_the_watch_is_off_at_zero(client: Client, db: Database, settings: Settings) -> None:
    await _site_with_deploy(client, db, hours_ago=6, after_median=2700)
    notifier = WebhookNotifier(db=db, timeout_s=5.0, retries=0, backoff_s=0.05)
    off = BudgetService(db=db, settings=replace(settings, deploy_watch_h=0), notifier=notifier)
    try:
        assert await off.watch_deploys() == 0
    finally:
        await off.close()
