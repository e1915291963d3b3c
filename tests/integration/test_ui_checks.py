"""The dashboard's Checks pages on SQLite and PostgreSQL: list with status, run history, run
detail (waterfall, lab vitals, resources, console errors, screenshots, artifacts), Run now for
admins only, and what a site-limited sign-in may see. Runs are stored as the probes write them
(probes.results dataclasses through app.checks.finish_run)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app import checks as check_data
from app.config import Settings
from app.db import Database
from app.server import create_app
from app.sites import create_site, create_token
from probes.collect import Resources
from probes.lighthouse import summarise
from probes.results import FlowResult, StepResult
from probes.vitals import Navigation
from tests.conftest import ADMIN
from tests.integration.ui_data import csrf_of, sign_in

Client = AsyncTestClient[Litestar]
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def flow_result(start: int) -> dict[str, Any]:
    resources = Resources()
    resources.add("script", 40_000, None)
    resources.add("image", 120_000, "cdn.example")
    steps = [
        StepResult(name="home", started_at=start, duration_ms=800.0, screenshot="home.png",
                   navigations=[Navigation(url="https://shop.example/", kind="navigation",
                                           vitals={"TTFB": 90.0, "FCP": 400.0, "LCP": 1200.0, "CLS": 0.01})],
                   resources=resources),
        StepResult(name="add to cart", status="failed", started_at=start + 800, duration_ms=1200.0,
                   error="locator #buy not found",
                   console_errors=[{"type": "pageerror", "text": "TypeError: cart is undefined", "url": None}]),
    ]  # fmt: skip
    result = FlowResult(status="failed", started_at=start, base_url="https://shop.example", device="desktop",
                        throttling="none", duration_ms=2000.0, attempts=1, steps=steps, artifacts=["trace.zip"])  # fmt: skip
    return result.to_dict()


@pytest.fixture
async def checks_app(
    settings: Settings, tmp_path: Path
) -> AsyncIterator[tuple[Client, Database, dict[str, int]]]:
    settings = replace(settings, data_dir=str(tmp_path / "data"), scheduler=False)
    app = create_app(settings)
    db = Database(settings)
    shop = await create_site(db=db, name="shop", origins=["https://shop.example"])
    other = await create_site(db=db, name="other", origins=["https://other.example"])
    assert shop.id is not None
    ids: dict[str, int] = {"shop": shop.id}
    for name, site in (("shop flow", shop), ("other audit", other)):
        async with db.write() as session:
            check = check_data.Check(name=name, kind="flow", target="https://shop.example", site_id=site.id,
                                     interval_s=300, created_ms=0)  # fmt: skip
            session.add(check)
        assert check.id is not None
        ids[name] = check.id
    ok = await check_data.start_run(db=db, check_id=ids["shop flow"], trigger="schedule")
    assert ok.id is not None
    await check_data.finish_run(
        db=db, run_id=ok.id, status="passed", result={"steps": [], "status": "passed"}
    )
    run = await check_data.start_run(db=db, check_id=ids["shop flow"], trigger="manual")
    assert run.id is not None
    await check_data.finish_run(db=db, run_id=run.id, status="failed", result=flow_result(run.started_ms),
                                error="step 'add to cart' failed")  # fmt: skip
    ids["run"] = run.id
    artifacts = tmp_path / "data" / "artifacts" / str(run.id)
    artifacts.mkdir(parents=True)
    (artifacts / "home.png").write_bytes(PNG)
    (artifacts / "trace.zip").write_bytes(b"PK\x05\x06" + b"\x00" * 18)
    (artifacts / "secret.txt").write_text("not listed in the result")
    async with AsyncTestClient(app=app, base_url="http://127.0.0.1:8000") as client:
        client.follow_redirects = False
        yield client, db, ids
    await db.dispose()


async def test_checks_list_history_and_run_detail(checks_app: Any) -> None:
    client, _, ids = checks_app
    await sign_in(client, ADMIN)
    listing = (await client.get("/ui/checks")).text
    assert re.search(r'data-check="shop flow">.*?badge poor">failed<', listing, re.S)
    assert "never run" in listing  # the other check
    history = (await client.get(f"/ui/checks/{ids['shop flow']}")).text
    assert history.count('<a href="/ui/runs/') == 2
    assert "Run now" in history
    detail = await client.get(f"/ui/runs/{ids['run']}")
    assert detail.status_code == 200
    text = detail.text
    assert re.search(r'data-step="home">.*?800 ms.*?width: 40\.0%', text, re.S)
    assert re.search(r'data-step="add to cart">.*?left: 40\.0%; width: 60\.0%', text, re.S)
    assert "locator #buy not found" in text
    assert "1.20 s" in text  # lab LCP of the home step
    assert "TypeError: cart is undefined" in text
    assert "156.2 KB" in text  # 40 000 + 120 000 bytes
    shot = await client.get(f"/ui/runs/{ids['run']}/artifacts/home.png")
    assert shot.status_code == 200
    assert shot.headers["content-type"] == "image/png"
    trace = await client.get(f"/ui/runs/{ids['run']}/artifacts/trace.zip")
    assert trace.status_code == 200
    assert trace.headers["content-disposition"].startswith("attachment")
    for bad in ("secret.txt", "../../../etc/passwd", "%2e%2e/secret.txt"):
        assert (await client.get(f"/ui/runs/{ids['run']}/artifacts/{bad}")).status_code == 404, bad
    assert (await client.get("/ui/runs/999999")).status_code == 404


async def test_run_now_is_for_admins_and_site_limits_apply(checks_app: Any) -> None:
    client, db, ids = checks_app
    _, read = await create_token(db=db, scope="read", site_id=ids["shop"])
    await sign_in(client, read)
    listing = (await client.get("/ui/checks")).text
    assert 'data-check="shop flow"' in listing
    assert 'data-check="other audit"' not in listing
    assert (await client.get(f"/ui/checks/{ids['other audit']}")).status_code == 403
    history = await client.get(f"/ui/checks/{ids['shop flow']}")
    assert "Run now" not in history.text
    r = await client.post(f"/ui/checks/{ids['shop flow']}/run", data={"_csrf_token": csrf_of(history.text)})
    assert r.status_code == 403
    runs = await check_data.list_runs(db=db, check_id=ids["shop flow"])
    assert len(runs) == 2  # nothing started


async def test_page_groups_show_the_latest_lab_numbers_beside_the_field(checks_app: Any) -> None:
    client, _, ids = checks_app
    await sign_in(client, ADMIN)
    page = (await client.get(f"/ui/sites/{ids['shop']}/pages")).text
    row = re.search(r'<tr data-group="/">(.*?)</tr>', page, re.S)
    assert row, "the lab-only route gets a row"
    lab = re.search(r"<td data-lab>(.*?)</td>", row[1], re.S)
    assert lab
    assert f'href="/ui/runs/{ids["run"]}"' in lab[1]
    text = re.sub(r"<[^>]+>", "", lab[1])
    assert "LCP 1.20 s" in text
    assert "CLS 0.010" in text


async def test_a_lighthouse_run_shows_scores_metrics_in_units_and_resources(checks_app: Any) -> None:
    """Stored as the scheduler stores an audit (probes.lighthouse.summarise of the LHR): scores
    in Lighthouse's colours, metric values in ms (CLS unitless), resource-summary rows."""
    client, db, ids = checks_app
    lhr = {
        "categories": {"performance": {"score": 0.87}, "accessibility": {"score": 1.0}},
        "audits": {
            "largest-contentful-paint": {"numericValue": 975.3488000000001},
            "first-contentful-paint": {"numericValue": 1658.17},
            "cumulative-layout-shift": {"numericValue": 0.01234},
            "resource-summary": {"details": {"items": [
                {"resourceType": "script", "label": "Script", "requestCount": 3, "transferSize": 25_000},
                {"resourceType": "total", "label": "Total", "requestCount": 9, "transferSize": 1_200_000},
            ]}},
        },
    }  # fmt: skip
    run = await check_data.start_run(db=db, check_id=ids["shop flow"], trigger="manual")
    assert run.id is not None
    await check_data.finish_run(
        db=db, run_id=run.id, status="passed",
        result={"status": "passed", **summarise(lhr), "preset": "mobile", "benchmark_index": 812.4, "cpu_slowdown": 4,
                "warnings": ["The tested device appears to have a slower CPU than  Lighthouse expects."]},
    )  # fmt: skip
    await sign_in(client, ADMIN)
    page = (await client.get(f"/ui/runs/{run.id}")).text
    host = re.search(r'<p id="lighthouse-host"[^>]*>(.*?)</p>', page, re.S)
    assert host
    assert "benchmarkIndex 812, CPU slowdown 4\u00d7" in host[1]
    assert re.search(r'<ul id="lighthouse-warnings"><li>The tested device appears to have a slower CPU', page)
    # A mobile audit on this host stands for a phone 1.8x slower than Lighthouse's reference.
    hint = re.search(r'<p id="lighthouse-host-hint"[^>]*>(.*?)</p>', page, re.S)
    assert hint
    assert "a phone 1.8x slower" in hint[1]
    assert "FIELDLAB_LIGHTHOUSE_MOBILE_CPU_SLOWDOWN=2.2 calibrates it" in hint[1]
    assert 'id="lighthouse-calibration"' not in page  # no run was made to measure the host
    assert 'id="generated"' not in page  # a real run
    assert '<td>performance</td><td class="num needs_improvement">87</td>' in page
    assert '<td>accessibility</td><td class="num good">100</td>' in page
    rows = dict(re.findall(r'<tr data-audit="[^"]+"><td>([^<]+)</td><td class="num">([^<]+)</td>', page))
    assert rows["Largest Contentful Paint"] == "975 ms"
    assert rows["First Contentful Paint"] == "1.66 s"
    assert rows["Cumulative Layout Shift"] == "0.012"
    assert rows["Total Blocking Time"] == "\u2013"  # not in this report
    assert '<tr data-type="script"><td>Script</td><td class="num">3</td><td class="num">24.4 KB</td>' in page
    assert '<tr data-type="total"><td>Total</td><td class="num">9</td><td class="num">1.1 MB</td>' in page


async def test_a_run_that_only_measured_the_host_is_named(checks_app: Any) -> None:
    """FIELDLAB_LIGHTHOUSE_MOBILE_CPU_SLOWDOWN=auto on a host not yet measured: the first run
    measured it at 4x and was not counted; the page says which run and why."""
    client, db, ids = checks_app
    run = await check_data.start_run(db=db, check_id=ids["shop flow"], trigger="manual")
    assert run.id is not None
    runs = [{"index": 0, "calibration": True}, {"index": 1, "calibration": False}]
    await check_data.finish_run(
        db=db, run_id=run.id, status="passed",
        result={"status": "passed", "scores": {"performance": 0.9}, "preset": "mobile", "runs": runs,
                "benchmark_index": 790.0, "cpu_slowdown": 2.1},
    )  # fmt: skip
    await sign_in(client, ADMIN)
    page = (await client.get(f"/ui/runs/{run.id}")).text
    note = re.search(r'<p id="lighthouse-calibration"[^>]*>(.*?)</p>', page, re.S)
    assert note
    assert note[1].startswith("Run 1 measured this host at Lighthouse's 4\u00d7 and was not counted")
    assert 'id="lighthouse-host-hint"' not in page  # 2.1x fits a host of benchmarkIndex 790


async def test_a_generated_demo_run_says_so(checks_app: Any) -> None:
    client, db, ids = checks_app
    run = await check_data.start_run(db=db, check_id=ids["shop flow"], trigger="demo", status="passed")
    await sign_in(client, ADMIN)
    page = (await client.get(f"/ui/runs/{run.id}")).text
    assert re.search(r'<p class="muted" id="generated">Generated demo history .*nothing ran', page)
