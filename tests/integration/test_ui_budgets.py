"""Budgets and alerts in the dashboard, and deploy markers on the trends page, on SQLite and
PostgreSQL. Verdicts go through app.budgets.store.record_verdicts (the real alert state machine
and delivery queue); markers through add_marker."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.budgets import store
from app.budgets.alerts import AlertPolicy
from app.budgets.verdict import Verdict
from app.config import Settings
from app.db import Database
from app.server import create_app
from app.sites import create_site, create_token
from tests.conftest import ADMIN
from tests.integration.ui_data import now_ms, seeded_client, sign_in


@pytest.fixture
async def ui(client: AsyncTestClient[Litestar], db: Database) -> Any:
    return await seeded_client(client, db)


def verdict(status: str, actual: float) -> Verdict:
    return Verdict(budget_id="field:shop:LCP:p75", name="LCP p75 ≤ 2500 ms", status=status,  # type: ignore[arg-type]
                   actual=actual, limit=2500.0, margin=2500.0 - actual, unit="ms", samples=120,
                   detail=f"{actual:.0f} ms over 120 page views")  # fmt: skip


async def record(db: Database, site_id: int, status: str, actual: float, at: int) -> None:
    await store.record_verdicts(db=db, scope=f"site:{site_id}", verdicts=[verdict(status, actual)],
                                policy=AlertPolicy(k=1, n=1), payload_for=lambda fmt, event, scope: {"event": "x"},
                                at_ms=at)  # fmt: skip


async def test_budgets_page_shows_verdicts_history_and_the_alert_log(ui: Any, db: Database) -> None:
    client, site, _ = ui
    await store.create_webhook(db=db, name="ops", url="https://hooks.example/fieldlab")
    start = now_ms() - 3_600_000
    await record(db, site["id"], "pass", 2100.0, start)
    await record(db, site["id"], "fail", 3900.0, start + 60_000)
    await sign_in(client, ADMIN)
    page = (await client.get("/ui/budgets")).text
    assert re.search(r'data-budget="field:shop:LCP:p75">.*?badge poor">failing<', page, re.S)
    # The queued notification; scopes carry the site's name beside the id.
    assert re.search(r"<td>failing</td><td><code>site:\d+</code> shop</td>", page)
    assert re.search(r'data-budget="field:shop:LCP:p75"><td><code>site:\d+</code> shop</td>', page)
    # The latest verdict's value, limit and detail, in the budget's unit.
    assert re.search(
        r'data-budget="field:shop:LCP:p75">.*?<td class="num">3.90 s</td><td class="num">2.50 s</td>\s*'
        r'<td class="detail">3900 ms over 120 page views</td>', page, re.S
    )  # fmt: skip
    assert "pending" in page
    history = (await client.get("/ui/budgets", params={"scope": f"site:{site['id']}",
                                                      "budget": "field:shop:LCP:p75"})).text  # fmt: skip
    rows = re.findall(r'<span class="badge (?:good|poor)">(pass|fail)</span>', history)
    assert rows == ["fail", "pass"]  # newest first
    assert (
        '<td class="num">3.90 s</td><td class="num">2.50 s</td>\n      <td class="num">-1400 ms</td>'
        in history
    )
    assert "<polyline" in history
    overview = (await client.get("/ui/")).text
    assert "1 budget failing or warning" in overview


async def test_a_read_sign_in_sees_its_sites_budgets_but_not_the_alert_log(ui: Any, db: Database) -> None:
    """As the API: a read sign-in sees the alert states and histories of its site(s), not
    fieldlab's own health; only an admin sees the delivery log, which names webhooks."""
    client, site, _ = ui
    await store.create_webhook(db=db, name="ops", url="https://hooks.example/secret-path")
    await record(db, site["id"], "fail", 3900.0, now_ms() - 60_000)
    other = await create_site(db=db, name="other", origins=["https://other.example"])
    await record(db, other.id or 0, "pass", 1900.0, now_ms() - 60_000)
    own = Verdict(budget_id="self:disk-free", name="free disk", status="pass", actual=900.0, limit=500.0,
                  margin=400.0, unit="MB")  # fmt: skip
    await store.record_verdicts(db=db, scope="self", verdicts=[own], policy=AlertPolicy(k=1, n=1),
                                payload_for=lambda fmt, event, scope: {"event": "x"})  # fmt: skip

    _, read = await create_token(db=db, scope="read")
    await sign_in(client, read)
    page = (await client.get("/ui/budgets")).text
    assert re.findall(r"<tr data-budget=\"[^\"]+\"><td><code>([^<]+)</code>", page) == [
        f"site:{site['id']}",  # failing first
        f"site:{other.id}",
    ]
    assert "hooks.example" not in page
    assert "needs an admin sign-in" in page
    assert "Budgets &amp; alerts" in (await client.get("/ui/")).text
    assert "1 budget failing or warning" in (await client.get("/ui/")).text

    _, limited = await create_token(db=db, scope="read", site_id=other.id)
    await sign_in(client, limited)
    page = (await client.get("/ui/budgets")).text
    assert re.findall(r"<tr data-budget=\"[^\"]+\"><td><code>([^<]+)</code>", page) == [f"site:{other.id}"]
    r = await client.get(
        "/ui/budgets", params={"scope": f"site:{site['id']}", "budget": "field:shop:LCP:p75"}
    )
    assert r.status_code == 403
    assert "not one this sign-in may see" in r.text


async def test_deploy_markers_on_the_trends_page(ui: Any, db: Database) -> None:
    client, site, _ = ui
    await store.add_marker(db=db, site_id=site["id"], commit="0123456789abcdef", branch="main",
                           message="ship the new hero", ts_ms=now_ms() - 5 * 3_600_000)  # fmt: skip
    await store.add_marker(db=db, site_id=site["id"], commit="feedfacecafe", branch="main",
                           ts_ms=now_ms() - 20 * 86_400_000)  # outside 7 d  # fmt: skip
    await sign_in(client, ADMIN)
    page = (await client.get(f"/ui/sites/{site['id']}/trends?range=7d")).text
    assert "ship the new hero" in page
    assert "feedfacecafe" not in page
    chart = json.loads(
        re.search(r'<script type="application/json" id="chart-data">(.*?)</script>', page, re.S)[1]
    )
    assert [m["label"] for m in chart["markers"]] == ["0123456"]
    lcp_x = chart["trends"][0]["x"]
    assert lcp_x[0] <= chart["markers"][0]["t"] <= lcp_x[-1]  # on the charts' time axis (seconds)
    month = (await client.get(f"/ui/sites/{site['id']}/trends?range=30d")).text
    assert "feedfacecafe" in month


def count_cell(html: str, metric: str, col: int) -> str:
    row = re.search(rf'<tr data-metric="{metric}">(.*?)</tr>', html, re.S)
    assert row
    cells = re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row[1], re.S)
    return re.sub(r"<[^>]+>", "", cells[col]).strip()


async def test_compare_before_and_after_a_deploy_and_two_periods(ui: Any, db: Database) -> None:
    client, site, rows = ui
    pivot = now_ms() - 12 * 3_600_000
    marker = await store.add_marker(db=db, site_id=site["id"], commit="abcdef123456", branch="main",
                                    message="new checkout", ts_ms=pivot)  # fmt: skip
    await sign_in(client, ADMIN)
    page = (await client.get(f"/ui/sites/{site['id']}/compare?range=24h&deploy={marker.id}")).text
    lcp = [r["ts"] for r in rows if r["metric"] == "LCP"]
    assert count_cell(page, "LCP", 6) == str(sum(pivot - 86_400_000 <= t < pivot for t in lcp))
    assert count_cell(page, "LCP", 7) == str(sum(t >= pivot for t in lcp))
    assert re.search("[+\u2212\u00b1]", count_cell(page, "LCP", 3))
    assert "new checkout" in page
    until = -(-now_ms() // 60_000) * 60_000  # the page rounds "now" up to the minute
    periods = (await client.get(f"/ui/sites/{site['id']}/compare?range=24h&device=mobile")).text
    mobile = [r["ts"] for r in rows if r["metric"] == "LCP" and r["device"] == "mobile"]
    day = 86_400_000
    assert count_cell(periods, "LCP", 6) == str(sum(until - 2 * day <= t < until - day for t in mobile))
    assert count_cell(periods, "LCP", 7) == str(sum(until - day <= t < until for t in mobile))
    bad = await client.get(f"/ui/sites/{site['id']}/compare?deploy=999999")
    assert bad.status_code == 400
    assert "deploy:" in bad.text


BUDGET_FILE = """version: 1
budgets:
  - metric: field:LCP
    warn: 2000
    fail: 2500
  - metric: field:LCP
    device: mobile
    page_group: "*"
    fail: 4000
    overrides:
      - {page_group: /cart, fail: 6000}
      - {page_group: /, off: true}
  - metric: lighthouse:category:performance
    fail: 0.9
"""


async def test_trend_charts_carry_the_budget_lines_of_the_view(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    path = tmp_path / "budgets.yml"
    path.write_text(BUDGET_FILE)
    app = create_app(replace(settings, budgets_file=str(path), budget_eval_interval_s=3600.0))
    async with AsyncTestClient(app=app, base_url="http://127.0.0.1:8000") as client:
        client.headers["authorization"] = f"Bearer {ADMIN}"
        client, site, _ = await seeded_client(client, db)
        await sign_in(client, ADMIN)

        async def budget(query: str) -> dict[str, Any]:
            page = (await client.get(f"/ui/sites/{site['id']}/trends?{query}")).text
            chart = json.loads(re.search(r'id="chart-data">(.*?)</script>', page, re.S)[1])
            lines: dict[str, Any] = {t["metric"]: t["budget"] for t in chart["trends"]}
            assert lines["INP"] == {}
            return lines["LCP"]

        assert await budget("range=7d") == {"warn": 2000, "fail": 2500}
        assert await budget("range=7d&device=mobile") == {}  # "*" applies per page group only
        assert await budget("range=7d&device=mobile&group=/product/:id") == {"fail": 4000}
        assert await budget("range=7d&device=mobile&group=/cart") == {"fail": 6000}
        assert await budget("range=7d&device=mobile&group=/") == {}
        page = (await client.get(f"/ui/sites/{site['id']}/trends?range=7d")).text
        assert re.search(r"<span class=\"muted\" data-budget>· budget warn 2.00 s fail 2.50 s</span>", page)
