"""Lab beside field over time, on SQLite and PostgreSQL: the trends page's charts carry each of
the site's checks' runs in the range (page group and device filters applied, at most
MAX_TREND_RUNS of them spread over the range) and say so under each chart; GET
/api/v1/sites/{id}/lab answers the same numbers."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app import checks as check_data
from app.config import Settings
from app.db import Database
from app.lab import MAX_STEP_SERIES, MAX_TREND_RUNS, check_charts, run_vitals, spread
from app.models import CheckRun
from app.server import create_app
from app.sites import create_site, create_token
from app.ui.data import now_ms
from tests.conftest import ADMIN
from tests.integration.ui_data import sign_in

Client = AsyncTestClient[Litestar]
HOUR = 3_600_000
RULES = [{"pattern": "/product/*", "group": "/product/:id"}]


def navigation(url: str, lcp: float) -> dict[str, Any]:
    return {"url": url, "kind": "navigation", "vitals": {"TTFB": 80.0, "FCP": 300.0, "LCP": lcp, "CLS": 0.02}}


def flow(home_lcp: float, product_lcp: float) -> dict[str, Any]:
    """A flow result as probes.results writes it: two steps, one navigation each."""
    return {"status": "passed", "duration_ms": home_lcp + product_lcp + 500, "steps": [
        {"name": "home", "duration_ms": home_lcp + 100, "navigations": [navigation("https://shop.example/", home_lcp)]},
        {"name": "product", "duration_ms": product_lcp + 100,
         "navigations": [navigation("https://shop.example/product/7?ref=x", product_lcp)]},
    ]}  # fmt: skip


def audit(lcp: float) -> dict[str, Any]:
    return {"status": "passed", "final_url": "https://shop.example/", "duration_ms": 21000.0,
            "scores": {"performance": 0.87, "accessibility": 1.0, "seo": None}, "metrics": {
        "largest-contentful-paint": lcp, "first-contentful-paint": 900.0, "cumulative-layout-shift": 0.1,
        "server-response-time": 120.0}}  # fmt: skip


@pytest.fixture
async def lab_app(
    settings: Settings, tmp_path: Path
) -> AsyncIterator[tuple[Client, Database, dict[str, Any]]]:
    settings = replace(settings, data_dir=str(tmp_path / "data"), scheduler=False)
    db = Database(settings)
    site = await create_site(db=db, name="shop", origins=["https://shop.example"], page_groups=RULES)
    now = now_ms()
    ids: dict[str, Any] = {"site": site.id, "now": now}
    async with db.write() as session:
        checks = {
            "journey": check_data.Check(name="journey", kind="flow", target="https://shop.example", device="desktop",
                                        site_id=site.id, interval_s=300, created_ms=0),
            "home audit": check_data.Check(name="home audit", kind="lighthouse", target="https://shop.example/",
                                           device="mobile", site_id=site.id, interval_s=3600, created_ms=0),
        }  # fmt: skip
        session.add_all(checks.values())
    async with db.write() as session:
        for name, check in checks.items():
            ids[name] = check.id
        runs = [
            # journey: three measured runs in the last 7 days, one too old, one that measured nothing
            (checks["journey"].id, now - 50 * HOUR, "passed", flow(1000, 2000)),
            (checks["journey"].id, now - 30 * HOUR, "failed", flow(1100, 2200)),
            (checks["journey"].id, now - 10 * HOUR, "flaky", flow(1200, 2400)),
            (checks["journey"].id, now - 9 * 24 * HOUR, "passed", flow(9000, 9000)),
            (checks["journey"].id, now - 5 * HOUR, "error", {"status": "error"}),
            (checks["home audit"].id, now - 20 * HOUR, "passed", audit(2500)),
        ]
        session.add_all(
            CheckRun(check_id=c, status=s, trigger="schedule", started_ms=t, finished_ms=t + 1000, result=r)
            for c, t, s, r in runs
        )
    async with AsyncTestClient(app=create_app(settings), base_url="http://127.0.0.1:8000") as client:
        client.follow_redirects = False
        await sign_in(client, ADMIN)
        yield client, db, ids
    await db.dispose()


async def trends(client: Client, site_id: int, query: str = "") -> tuple[dict[str, Any], str]:
    page = await client.get(f"/ui/sites/{site_id}/trends{query}")
    assert page.status_code == 200, page.text
    chart = json.loads(re.search(r'id="chart-data">(.*?)</script>', page.text, re.S)[1])  # type: ignore[index]
    return {c["metric"]: c["lab"] for c in chart["trends"]}, page.text


def notes(page: str, metric: str) -> list[str]:
    found = re.findall(rf'<p class="lab muted" data-lab="{metric}">(.*?)</p>', page, re.S)
    return [" ".join(unescape(re.sub(r"<[^>]+>", "", n)).split()) for n in found]


async def test_each_check_s_runs_in_the_range_beside_the_field_line(lab_app: Any) -> None:
    client, _, ids = lab_app
    lab, page = await trends(client, ids["site"])

    def t(hours_ago: int) -> int:
        return int((ids["now"] - hours_ago * HOUR) // 1000)

    # The first navigation with the metric (home); runs out of range or without numbers are left out.
    assert lab["LCP"] == [
        {"name": "journey", "x": [t(50), t(30), t(10)], "y": [1000.0, 1100.0, 1200.0]},
        {"name": "home audit", "x": [t(20)], "y": [2500.0]},
    ]
    assert [s["name"] for s in lab["FCP"]] == ["journey", "home audit"]
    assert [s["name"] for s in lab["TTFB"]] == ["journey"]  # Lighthouse's server-response-time is not TTFB
    assert lab["INP"] == []  # no interaction in these flows
    assert notes(page, "LCP") == [
        "Lab, journey: 3 runs, median 1.10 s, latest 1.20 s",
        "Lab, home audit: 1 run, median 2.50 s, latest 2.50 s",
    ]
    assert notes(page, "INP") == []
    assert "coloured points at the lab runs" in page


async def test_page_group_and_device_filters_apply_to_lab_runs(lab_app: Any) -> None:
    client, _, ids = lab_app
    product, _ = await trends(client, ids["site"], "?group=/product/:id")
    assert product["LCP"] == [{"name": "journey", "x": product["LCP"][0]["x"], "y": [2000.0, 2200.0, 2400.0]}]
    mobile, page = await trends(client, ids["site"], "?device=mobile")
    assert [s["name"] for s in mobile["LCP"]] == ["home audit"]
    assert notes(page, "LCP") == ["Lab, home audit: 1 run, median 2.50 s, latest 2.50 s"]
    tablet, page = await trends(client, ids["site"], "?device=tablet")
    assert all(series == [] for series in tablet.values())
    assert "coloured points" not in page


async def test_a_busy_check_is_spread_over_the_range(lab_app: Any) -> None:
    client, db, ids = lab_app
    total = MAX_TREND_RUNS + 40
    start = ids["now"] - 6 * 24 * HOUR
    async with db.write() as session:
        session.add_all(
            CheckRun(check_id=ids["home audit"], status="passed", trigger="schedule", started_ms=start + i * 60_000,
                     result=audit(3000.0 + i))
            for i in range(total)
        )  # fmt: skip
    lab, page = await trends(client, ids["site"], "?device=mobile")
    [series] = lab["LCP"]
    assert len(series["x"]) == MAX_TREND_RUNS
    assert series["y"][0] == 3000.0  # the first run and the last are always in
    assert series["y"][-1] == 2500.0  # the run 20 h ago is the newest
    assert series["x"] == sorted(series["x"])
    assert f"{MAX_TREND_RUNS} runs (spread over the range's {total + 1})" in notes(page, "LCP")[0]


async def test_the_lab_api_answers_the_same_runs(lab_app: Any) -> None:
    client, db, ids = lab_app
    bearer = {"Authorization": f"Bearer {ADMIN}"}
    r = await client.get(f"/api/v1/sites/{ids['site']}/lab", params={"metric": "LCP"}, headers=bearer)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["metric"] == "LCP"
    assert body["since"].endswith("Z")
    assert body["until"].endswith("Z")
    journey, audit_ = body["checks"]
    assert (journey["check"], journey["kind"], journey["device"]) == ("journey", "flow", "desktop")
    assert [p["value"] for p in journey["points"]] == [1000.0, 1100.0, 1200.0]
    assert [p["t"] for p in journey["points"]] == [ids["now"] - h * HOUR for h in (50, 30, 10)]
    assert (journey["runs_in_range"], journey["sampled"], journey["median"], journey["latest"]) == (
        3,
        False,
        1100.0,
        1200.0,
    )
    run = (await client.get(f"/api/v1/runs/{journey['points'][0]['run_id']}", headers=bearer)).json()
    assert run["started_ms"] == ids["now"] - 50 * HOUR
    assert (audit_["check"], [p["value"] for p in audit_["points"]]) == ("home audit", [2500.0])
    # A path is mapped to its page group, as in the field endpoints; device picks the checks.
    product = (
        await client.get(f"/api/v1/sites/{ids['site']}/lab?page=/product/9&metric=LCP", headers=bearer)
    ).json()
    assert [(c["check"], [p["value"] for p in c["points"]]) for c in product["checks"]] == [
        ("journey", [2000.0, 2200.0, 2400.0])
    ]
    mobile = (
        await client.get(f"/api/v1/sites/{ids['site']}/lab?device=mobile&metric=FCP", headers=bearer)
    ).json()
    assert [(c["check"], c["latest"]) for c in mobile["checks"]] == [("home audit", 900.0)]
    inp = (await client.get(f"/api/v1/sites/{ids['site']}/lab?metric=INP", headers=bearer)).json()
    assert inp["checks"] == []
    # Bad input names the field; a token of another site may not look.
    for query, field in (("metric=SI", "metric"), ("since=yesterday", "since"), ("device=watch", "device")):
        bad = await client.get(f"/api/v1/sites/{ids['site']}/lab?{query}", headers=bearer)
        assert bad.status_code == 400, query
        assert field in bad.json()["detail"], bad.text
    other = await create_site(db=db, name="other", origins=["https://other.example"])
    _, limited = await create_token(db=db, scope="read", name="other only", site_id=other.id)
    denied = await client.get(
        f"/api/v1/sites/{ids['site']}/lab", headers={"Authorization": f"Bearer {limited}"}
    )
    assert denied.status_code == 403


def test_run_vitals_takes_the_first_navigation_with_each_metric() -> None:
    result = flow(1000, 2000)
    result["steps"][1]["navigations"][0]["vitals"]["INP"] = 180.0
    assert run_vitals("flow", result, group=None, rules=RULES) == {
        "TTFB": 80.0, "FCP": 300.0, "LCP": 1000.0, "CLS": 0.02, "INP": 180.0
    }  # fmt: skip
    assert run_vitals("flow", result, group="/product/:id", rules=RULES)["LCP"] == 2000.0
    assert run_vitals("flow", result, group="/cart", rules=RULES) == {}
    assert run_vitals("lighthouse", audit(2500), group="/", rules=RULES) == {
        "LCP": 2500.0,
        "CLS": 0.1,
        "FCP": 900.0,
    }
    assert run_vitals("flow", {"steps": [{"navigations": [{"url": "https://shop.example/", "vitals": {"LCP": None, "CLS": True}}]}]},
                      group=None, rules=RULES) == {}  # fmt: skip


@pytest.mark.parametrize(
    ("n", "limit", "expected"), [(0, 3, []), (2, 3, [0, 1]), (5, 3, [0, 2, 4]), (10, 4, [0, 3, 6, 9])]
)
def test_spread_keeps_the_ends_and_spaces_the_rest(n: int, limit: int, expected: list[int]) -> None:
    assert spread(n, limit) == expected


def chart_of(page: str) -> dict[str, Any]:
    found = re.search(r'id="chart-data">(.*?)</script>', page, re.S)
    assert found, "no chart data on the page"
    data: dict[str, Any] = json.loads(found[1])
    return data["runs"]


async def test_a_check_page_charts_its_runs_over_the_range(lab_app: Any) -> None:
    client, _, ids = lab_app
    page = await client.get(f"/ui/checks/{ids['journey']}")  # 7 days by default
    assert page.status_code == 200
    runs = chart_of(page.text)
    assert runs["x"] == [(ids["now"] - h * HOUR) // 1000 for h in (50, 30, 10)]
    charts = {c["title"]: c for c in runs["charts"]}
    assert list(charts) == ["Duration", "Vitals", "LCP by step", "CLS"]
    assert [s["name"] for s in charts["Vitals"]["series"]] == ["LCP", "FCP", "TTFB"]  # no INP: no series
    assert charts["Vitals"]["series"][0]["y"] == [1000.0, 1100.0, 1200.0]
    assert charts["LCP by step"]["series"] == [
        {"name": "home", "y": [1000.0, 1100.0, 1200.0]},
        {"name": "product", "y": [2000.0, 2200.0, 2400.0]},
    ]
    assert "LCP by step: each step's slowest page, the value budgets judge" in unescape(page.text)
    assert charts["CLS"]["series"] == [{"name": "CLS", "y": [0.02, 0.02, 0.02]}]
    assert charts["Duration"]["series"] == [
        {"name": "run (total)", "y": [3500.0, 3800.0, 4100.0]},
        {"name": "home", "y": [1100.0, 1200.0, 1300.0]},
        {"name": "product", "y": [2100.0, 2300.0, 2500.0]},
    ]
    text = unescape(re.sub(r"<[^>]+>", "", page.text))
    assert "3 runs; the values GET /api/v1/checks/" in " ".join(text.split())
    day = await client.get(f"/ui/checks/{ids['journey']}?range=24h")
    assert chart_of(day.text)["x"] == [(ids["now"] - 10 * HOUR) // 1000]
    audit_page = (await client.get(f"/ui/checks/{ids['home audit']}")).text
    audit_charts = {c["title"]: c for c in chart_of(audit_page)["charts"]}
    assert list(audit_charts) == ["Scores", "Metrics", "CLS", "Duration"]
    # Scores 0-100; a category without a score (seo: None) and ones not in the report are left out.
    assert audit_charts["Scores"]["series"] == [
        {"name": "performance", "y": [87.0]},
        {"name": "accessibility", "y": [100.0]},
    ]
    assert audit_charts["Metrics"]["series"] == [
        {"name": "LCP", "y": [2500.0]},
        {"name": "FCP", "y": [900.0]},
    ]
    assert audit_charts["Duration"]["series"] == [{"name": "run (total)", "y": [21000.0]}]
    assert "(scores 0\u2013100)" in unescape(audit_page)


async def test_a_check_page_draws_the_site_s_deploys_in_its_range(lab_app: Any) -> None:
    from app.budgets.store import add_marker

    client, db, ids = lab_app
    await add_marker(
        db=db, site_id=ids["site"], commit="cafe1234beef", branch="main", ts_ms=ids["now"] - 20 * HOUR
    )
    await add_marker(
        db=db, site_id=ids["site"], commit="0ld0ld0ld", branch="main", ts_ms=ids["now"] - 8 * 24 * HOUR
    )
    page = await client.get(f"/ui/checks/{ids['journey']}")  # 7 days: the older deploy is outside
    found = re.search(r'id="chart-data">(.*?)</script>', page.text, re.S)
    assert found is not None
    assert json.loads(found[1])["markers"] == [{"t": (ids["now"] - 20 * HOUR) // 1000, "label": "cafe123"}]
    day = re.search(
        r'id="chart-data">(.*?)</script>',
        (await client.get(f"/ui/checks/{ids['journey']}?range=24h")).text,
        re.S,
    )
    assert day is not None
    assert [m["label"] for m in json.loads(day[1])["markers"]] == ["cafe123"]


async def test_a_check_page_charts_a_custom_range_of_days(lab_app: Any) -> None:
    client, _, ids = lab_app
    old = ids["now"] - 9 * 24 * HOUR  # the one run that day
    day = datetime.fromtimestamp(old / 1000, UTC).date().isoformat()
    page = await client.get(f"/ui/checks/{ids['journey']}?range=custom&since={day}&until={day}")
    assert page.status_code == 200
    assert chart_of(page.text)["x"] == [old // 1000]
    form = re.search(r'<form class="filters" method="get" id="custom-range">(.*?)</form>', page.text, re.S)
    assert form is not None
    assert f'name="since" value="{day}"' in form[1]
    assert f'name="until" value="{day}"' in form[1]
    assert "<strong>custom</strong>" in page.text
    # The default view offers the form empty, with the fixed ranges as links.
    default = (await client.get(f"/ui/checks/{ids['journey']}")).text
    assert 'name="since" value=""' in default
    assert '<a href="?range=30d">30d</a>' in default
    backwards = await client.get(f"/ui/checks/{ids['journey']}?range=custom&since={day}&until=2020-01-01")
    assert backwards.status_code == 400
    assert "since: must be on or before until" in backwards.text


async def test_a_check_page_without_runs_in_the_range_and_a_bad_range(lab_app: Any) -> None:
    client, _, ids = lab_app
    old = await client.get(f"/ui/checks/{ids['journey']}?range=custom&since=2020-01-01&until=2020-01-31")
    assert old.status_code == 200
    assert "No measured runs in this range." in old.text
    assert 'id="chart-data"' not in old.text
    bad = await client.get(f"/ui/checks/{ids['journey']}?range=1y")
    assert bad.status_code == 400
    assert "range" in bad.text


def test_lcp_by_step_is_what_budgets_judge() -> None:
    """Each step's line is the value a lab:LCP budget on that step evaluates (its slowest
    document; a soft navigation does not count), and the chart is left out for a one-step flow."""
    from app.budgets.evaluate import flow_value
    from app.budgets.spec import parse_metric

    two_pages = navigation("https://shop.example/cart", 1500)
    soft = {"url": "https://shop.example/cart#x", "kind": "soft-navigation", "vitals": {"LCP": 9999.0}}
    results = [flow(1000, 2000), flow(1300, 1800)]
    results[1]["steps"][0]["navigations"] += [two_pages, soft]
    for step in (st for r in results for st in r["steps"]):
        step["status"] = "passed"  # budgets on a step take passed steps only
    runs = [CheckRun(check_id=1, status="passed", trigger="schedule", started_ms=i, result=r)
            for i, r in enumerate(results)]  # fmt: skip
    chart = {c["title"]: c for c in check_charts("flow", runs)}["LCP by step"]
    lcp = parse_metric("lab:LCP")
    expected = [
        {"name": step, "y": [flow_value(r, lcp, step) for r in results]} for step in ("home", "product")
    ]
    assert chart["series"] == expected
    assert chart["series"][0]["y"] == [1000.0, 1500.0]
    assert max(max(y) for y in (s["y"] for s in chart["series"])) == flow_value(results[0], lcp, None)
    one_step = [CheckRun(check_id=1, status="passed", trigger="schedule", started_ms=0,
                         result={"status": "passed", "steps": [results[0]["steps"][0]]})]  # fmt: skip
    assert [c["title"] for c in check_charts("flow", one_step)] == ["Duration", "Vitals", "CLS"]


def test_a_step_vital_metric_and_a_step_named_like_one() -> None:
    from app.budgets.compare import lab_value

    result = flow(1000, 2000)
    assert lab_value(result, "step:product:LCP") == 2000.0
    assert lab_value(result, "step:product:TTFB") == 80.0
    assert lab_value(result, "step:product") == 2100.0  # its duration
    result["steps"][0]["name"] = "home:LCP"  # an existing step's name wins: its duration
    assert lab_value(result, "step:home:LCP") == 1100.0
    assert lab_value(result, "step:nope:LCP") is None


def test_check_charts_take_the_newest_run_s_steps_first() -> None:
    def run(*steps: str) -> CheckRun:
        result = {"steps": [{"name": n, "duration_ms": 100.0 * (i + 1)} for i, n in enumerate(steps)]}
        return CheckRun(check_id=1, status="passed", trigger="schedule", started_ms=0, result=result)

    [duration] = check_charts("flow", [run("home", "cart"), run("cart", "pay")])
    assert [s["name"] for s in duration["series"]] == ["cart", "pay", "home"]
    assert duration["series"][2]["y"] == [100.0, None]  # the newest run had no "home" step
    many = check_charts("flow", [run(*[f"s{i}" for i in range(MAX_STEP_SERIES + 3)])])
    assert len(many[0]["series"]) == MAX_STEP_SERIES
    assert check_charts("flow", []) == []
    assert check_charts("unknown kind", [run("home")]) == []


async def test_the_compare_page_puts_each_check_s_medians_beside_the_field(lab_app: Any) -> None:
    client, _, ids = lab_app
    page = await client.get(
        f"/ui/sites/{ids['site']}/compare"
    )  # the last 7 days (B) against the 7 before (A)
    assert page.status_code == 200
    rows = {
        (row[0], row[1]): row[2:]
        for row in (
            [" ".join(unescape(re.sub(r"<[^>]+>", "", c)).split()) for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", tr, re.S)]
            for tr in re.findall(r'<tr data-check=[^>]*>(.*?)</tr>', page.text, re.S)
        )
    }  # fmt: skip
    # journey: one run 9 days ago (A), three in the last week (B); the audit only in B.
    assert rows[("journey", "LCP")] == ["9.00 s", "1.10 s", "\u22127.90 s (\u221288 %)", "1", "3"]
    assert rows[("home audit", "LCP")] == ["\u2013", "2.50 s", "\u2013", "0", "1"]
    assert ("home audit", "TTFB") not in rows
    mobile = await client.get(f"/ui/sites/{ids['site']}/compare?device=mobile")
    assert 'data-check="journey"' not in mobile.text
    assert 'data-check="home audit"' in mobile.text
    nothing = await client.get(f"/ui/sites/{ids['site']}/compare?device=tablet")
    assert 'id="lab-compare"' not in nothing.text
