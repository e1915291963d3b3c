"""The dashboard in real Chromium against a real `fieldlab serve` with seeded field data:
sign-in, every page renders, charts draw (canvas pixels), filters change the numbers, tables
work with JavaScript off, a read sign-in cannot change anything, chart code loads only where
charts are, a page viewed before opens offline, and the dashboard reports its own page views to
the built-in "fieldlab" site.

Screenshots of each page go to tests/artifacts/ (git-ignored). UPDATE_SCREENSHOTS=1 also
refreshes docs/trends.png, the README's picture."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright
from playwright.async_api import Error as PlaywrightError

from app.budgets import store
from app.budgets.alerts import AlertPolicy
from app.budgets.verdict import Verdict
from app.config import Settings
from app.db import Database
from app.models import Check, CheckRun
from app.sites import create_site, create_token
from tests.conftest import ADMIN, BROWSER_UA, ROOT, LiveServer
from tests.integration.ui_data import THIRD_PARTY_JS, seed

pytestmark = [pytest.mark.browser, pytest.mark.slow]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--disable-gpu"]  # fmt: skip
ARTIFACTS = ROOT / "tests" / "artifacts"
VIEWPORT = {"width": 1280, "height": 900}

# Pixels of a chart's canvas that are not fully transparent (uPlot's canvas has no background).
PAINTED = """el => {
  const c = el.querySelector('canvas');
  if (!c) return -1;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
  return n;
}"""


async def lab_history(db: Database, site_id: int) -> None:
    """A flow check of the site with a run every 4 hours over the week (lab beside field)."""
    async with db.write() as session:
        check = Check(name="journey", kind="flow", target="https://shop.example", site_id=site_id,
                      interval_s=14_400, created_ms=0)  # fmt: skip
        session.add(check)
    now = int(time.time() * 1000)
    async with db.write() as session:
        session.add_all(
            CheckRun(check_id=check.id, status="passed", trigger="schedule", started_ms=now - i * 14_400_000,
                     result={"steps": [{"name": "home", "navigations": [{"url": "https://shop.example/",
                             "vitals": {"LCP": 1500.0 + 40 * (i % 9), "FCP": 700.0, "CLS": 0.01}}]}]})
            for i in range(42)
        )  # fmt: skip


PAINTED_AS = """(el, rgb) => {
  const c = el.querySelector('canvas');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4) {
    if (d[i + 3] > 200 && Math.abs(d[i] - rgb[0]) < 8 && Math.abs(d[i + 1] - rgb[1]) < 8 && Math.abs(d[i + 2] - rgb[2]) < 8) n++;
  }
  return n;
}"""


class Seeded:
    def __init__(self, server: LiveServer, site_id: int, read_token: str) -> None:
        self.server = server
        self.url = server.url
        self.site_id = site_id
        self.read_token = read_token


@pytest.fixture
def seeded(sqlite_template: Path, tmp_path: Path) -> Iterator[Seeded]:
    """A SQLite server (the browser part needs one backend; the HTML is tested on both in
    tests/integration/test_ui_pages.py) with a week of page views."""
    path = tmp_path / "fieldlab.db"
    shutil.copy(sqlite_template, path)
    settings = Settings(database_url=f"sqlite+aiosqlite:///{path}", admin_token=ADMIN,
                        static_dir=str(ROOT / "static"), site_cache_ttl_s=0.0, data_dir=str(tmp_path / "data"))  # fmt: skip

    async def prepare() -> tuple[int, str]:
        db = Database(settings)
        try:
            site = await create_site(db=db, name="shop", origins=["https://shop.example"])
            assert site.id is not None
            await seed(db, site.id, hours=7 * 24, per_hour=6)
            await store.add_marker(db=db, site_id=site.id, commit="3f2a9c1d", branch="main",
                                   message="lazy-load the hero", ts_ms=int(time.time() * 1000) - 2 * 86_400_000)  # fmt: skip
            failing = Verdict(budget_id="field:shop:LCP:p75", name="LCP p75 at most 2500 ms", status="fail",
                              actual=4700.0, limit=2500.0, margin=-2200.0, unit="ms", samples=1000)  # fmt: skip
            await store.record_verdicts(db=db, scope=f"site:{site.id}", verdicts=[failing],
                                        policy=AlertPolicy(k=1, n=1), payload_for=lambda *_: {})  # fmt: skip
            await lab_history(db, site.id)
            _, read = await create_token(db=db, scope="read", name="viewer")
            return site.id, read
        finally:
            await db.dispose()

    site_id, read = asyncio.run(prepare())
    server = LiveServer(settings, tmp_path / "server.log")
    server.start()
    yield Seeded(server, site_id, read)
    server.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=[*ARGS, f"--user-agent={BROWSER_UA}"])
        yield b
        await b.close()


async def shot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"ui-{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


async def sign_in(page: Page, base: str, token: str) -> None:
    await page.goto(f"{base}/ui/")
    assert page.url.startswith(f"{base}/ui/login")  # sent to sign in first
    await page.fill("input[name=token]", token)
    async with page.expect_navigation():
        await page.click("button[type=submit]")
    assert page.url.rstrip("/") == f"{base}/ui", page.url


async def lcp_p75(page: Page) -> str:
    return (await page.locator('#summary tr[data-metric="LCP"] td').first.inner_text()).strip()


async def test_every_page_renders_and_charts_draw(seeded: Seeded, browser: Browser) -> None:
    context = await browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    page = await context.new_page()
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    await page.goto(f"{seeded.url}/ui/")
    await shot(page, "login")
    await sign_in(page, seeded.url, ADMIN)

    # Overview: each vital with a rating and a sparkline, and no chart code.
    card = page.locator("section.card", has_text="shop")
    for metric in ("LCP", "INP", "CLS"):
        cell = card.locator(f'[data-metric="{metric}"]')
        assert re.search(r"\d", await cell.locator(".value").inner_text())
        assert await cell.locator("svg.spark polyline").count() == 1
    await shot(page, "overview")
    assert not [u for u in requested if "/static/ui/charts." in u]

    # Trends: every chart canvas has paint on it.
    await card.locator("h2 a").click()
    await page.wait_for_url(re.compile(r"/trends"))
    await page.wait_for_selector('[data-chart="LCP"] canvas')
    # Charts far below the fold are drawn when they are scrolled to, not during load.
    assert await page.locator('[data-chart="histogram"] canvas').count() == 0
    for chart in ("LCP", "INP", "CLS", "FCP", "TTFB", "histogram"):
        await page.locator(f'[data-chart="{chart}"]').scroll_into_view_if_needed()
        await page.wait_for_selector(f'[data-chart="{chart}"] canvas')
        painted = await page.locator(f'[data-chart="{chart}"]').evaluate(PAINTED)
        assert painted > 500, f"{chart} chart is blank ({painted} painted pixels)"
    # The check's lab runs are points of their own colour on the LCP chart, in its legend too.
    lab_pixels = await page.locator('[data-chart="LCP"]').evaluate(PAINTED_AS, [194, 65, 12])
    assert lab_pixels > 42, f"no lab points on the LCP chart ({lab_pixels} pixels of their colour)"
    assert "journey (lab)" in await page.locator('[data-chart="LCP"]').inner_text()
    await page.evaluate("scrollTo(0, 0)")
    assert [u for u in requested if "/static/ui/charts." in u]
    everyone = await lcp_p75(page)
    path = await shot(page, "trends")
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        await page.screenshot(path=str(ROOT / "docs" / "trends.png"), full_page=False)
    assert path.stat().st_size > 10_000

    # Filters go into the URL and change the numbers; the view survives a reload.
    await page.select_option("select[name=device]", "mobile")
    await page.select_option("select[name=range]", "24h")
    await page.click("form.filters button[type=submit]")
    await page.wait_for_url(re.compile(r"device=mobile"))
    assert "range=24h" in page.url
    mobile = await lcp_p75(page)
    assert mobile != everyone
    await page.reload()
    assert await lcp_p75(page) == mobile
    assert await page.locator("select[name=device]").input_value() == "mobile"

    # Page groups: worst first, then sortable by a column.
    await page.click("header nav >> text=Page groups")
    await page.wait_for_url(re.compile(r"/pages"))
    groups = await page.locator("#page-groups tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.group)"
    )
    assert groups[0] == "/cart"
    await shot(page, "page-groups")
    await page.click("#page-groups thead >> text=LCP p75")
    await page.wait_for_url(re.compile(r"sort=LCP"))
    values = await page.locator('#page-groups td[data-metric="LCP"]').all_inner_texts()
    millis = [
        float(v.replace(" s", "")) * 1000 if v.endswith(" s") else float(v.replace(" ms", "")) for v in values
    ]
    assert millis == sorted(millis, reverse=True)

    # Attribution: cross-origin and unknown scripts are named as such.
    await page.click("header nav >> text=Attribution")
    await page.wait_for_url(re.compile(r"/attribution"))
    scripts = page.locator('table[data-by="script"]')
    assert (
        await scripts.locator("tr", has_text=THIRD_PARTY_JS)
        .locator(".badge", has_text="cross-origin")
        .count()
        == 1
    )
    assert await scripts.locator("tr", has_text="(unknown)").count() == 1
    await shot(page, "attribution")

    # Compare: before and after the seeded deploy.
    await page.click("header nav >> text=Compare")
    await page.wait_for_url(re.compile(r"/compare"))
    deploy = await page.locator("select[name=deploy] option", has_text="3f2a9c1").get_attribute("value")
    assert deploy
    await page.select_option("select[name=deploy]", deploy)
    await page.click("button:has-text('Compare')")
    await page.wait_for_url(re.compile(r"deploy=\d+"))
    assert re.search(r"\d", await page.locator('#compare tr[data-metric="LCP"] td[data-change]').inner_text())
    await shot(page, "compare")

    # Budgets and alerts (admin): the failing budget, and its badge on the overview.
    await page.click("header nav >> text=Budgets & alerts")
    await page.wait_for_url(re.compile(r"/ui/budgets$"))
    assert (
        await page.locator('#verdicts tr[data-budget="field:shop:LCP:p75"] .badge').inner_text() == "failing"
    )
    await shot(page, "budgets")
    await page.click("#verdicts >> text=LCP p75 at most 2500 ms")
    assert await page.locator("#history tbody tr").count() == 1
    await page.click("header nav >> text=Overview")
    assert await page.locator("section.card", has_text="shop").locator("text=1 budget failing").count() == 1
    await page.click("header nav >> text=Checks")
    await page.wait_for_url(re.compile(r"/ui/checks$"))
    assert await page.locator("#checks").count() == 1

    # A check's page: its runs of the week drawn, one chart per kind of number.
    await page.click("#checks >> text=journey")
    await page.wait_for_url(re.compile(r"/ui/checks/\d+$"))
    titles = await page.locator(".chart-grid figcaption").all_inner_texts()
    assert titles == ["Vitals", "CLS"]  # the seeded runs have no durations
    for i in range(len(titles)):
        chart = page.locator(f'[data-chart="run-{i}"]')
        await chart.scroll_into_view_if_needed()
        await page.wait_for_selector(f'[data-chart="run-{i}"] canvas')
        assert await chart.evaluate(PAINTED) > 500, f"{titles[i]} chart is blank"
    assert "42 runs" in await page.locator("#charted").inner_text()
    await shot(page, "check")
    await context.close()


async def test_numbers_without_javascript(seeded: Seeded, browser: Browser) -> None:
    context = await browser.new_context(viewport=VIEWPORT, java_script_enabled=False)  # type: ignore[arg-type]
    page = await context.new_page()
    await sign_in(page, seeded.url, ADMIN)
    await page.goto(f"{seeded.url}/ui/sites/{seeded.site_id}/trends?range=7d")
    assert re.search(r"\d", await lcp_p75(page))
    assert await page.locator("canvas").count() == 0
    assert await page.locator("#histogram tbody tr.poor").count() >= 1
    await shot(page, "trends-no-js")
    await context.close()


async def test_a_read_sign_in_cannot_change_anything(seeded: Seeded, browser: Browser) -> None:
    context = await browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    page = await context.new_page()
    await sign_in(page, seeded.url, seeded.read_token)
    assert await page.locator("text=Add a site").count() == 0
    post = """async ([withToken]) => {
      const body = new URLSearchParams({name: 'sneaky', origins: 'https://x.example'});
      if (withToken) body.set('_csrf_token', document.querySelector('input[name=_csrf_token]').value);
      const r = await fetch('/ui/sites', {method: 'POST', body});
      return [r.status, await r.text()];
    }"""
    status, text = await page.evaluate(post, [True])
    assert status == 403
    assert "admin token" in text
    status, text = await page.evaluate(post, [False])
    assert status == 403
    assert "CSRF" in text
    async with httpx.AsyncClient(base_url=seeded.url, headers={"authorization": f"Bearer {ADMIN}"}) as c:
        assert "sneaky" not in [s["name"] for s in (await c.get("/api/v1/sites")).json()]
    await context.close()


async def test_the_dashboard_measures_itself(seeded: Seeded, browser: Browser) -> None:
    context = await browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    page = await context.new_page()

    async def view(url: str) -> None:
        # Stay as a visitor would: until the page has painted and the snippet has taken TTFB
        # (just after the load event, as web-vitals does). A script that leaves at the load
        # event itself leaves before either, and such a page view has nothing to report.
        await page.goto(url)
        await page.wait_for_function("performance.getEntriesByType('paint').length > 0")
        await page.wait_for_timeout(100)

    await sign_in(page, seeded.url, ADMIN)
    await view(f"{seeded.url}/ui/sites/{seeded.site_id}/pages")
    await view(f"{seeded.url}/ui/sites/{seeded.site_id}/attribution")
    # The dashboard's service worker controls this page by now: its beacon must not go
    # through the worker (in Chromium one sent while the page unloads was lost now and then).
    await page.wait_for_function("navigator.serviceWorker.controller !== null")
    # Each page view's beacon leaves on pagehide: the next page sends the one before it.
    await view(f"{seeded.url}/ui/")
    deadline = time.monotonic() + 15
    async with httpx.AsyncClient(base_url=seeded.url, headers={"authorization": f"Bearer {ADMIN}"}) as c:
        own: dict[str, Any] = next(
            s for s in (await c.get("/api/v1/sites")).json() if s["name"] == "fieldlab"
        )
        assert own["origins"] == [seeded.url]
        while True:
            summary = (await c.get(f"/api/v1/sites/{own['id']}/summary")).json()["metrics"]
            if summary["TTFB"]["count"] >= 2 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.3)
    await context.close()
    assert summary["TTFB"]["count"] >= 2, summary


async def test_a_page_viewed_before_opens_offline(seeded: Seeded, browser: Browser) -> None:
    context = await browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    page = await context.new_page()
    await sign_in(page, seeded.url, ADMIN)
    trends = f"{seeded.url}/ui/sites/{seeded.site_id}/trends?range=7d"
    await page.goto(trends)
    assert await page.evaluate("() => navigator.serviceWorker.ready.then(r => r.active.state)") == "activated"
    await page.reload()  # now through the worker, which keeps a copy
    assert await page.evaluate("() => navigator.serviceWorker.controller !== null")
    kept = "() => caches.open('fieldlab-pages').then(c => c.keys()).then(k => k.map(r => r.url))"
    deadline = time.monotonic() + 10
    while trends not in await page.evaluate(kept) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    online = await lcp_p75(page)

    await context.set_offline(True)
    await page.reload()
    assert await lcp_p75(page) == online
    assert await page.locator(".offline").count() == 1
    await page.wait_for_selector('[data-chart="LCP"] canvas')  # chart code came from the cache
    assert await page.locator('[data-chart="LCP"]').evaluate(PAINTED) > 500
    await shot(page, "offline")

    # Signing out forgets the saved pages.
    await context.set_offline(False)
    async with page.expect_navigation():
        await page.click("text=Sign out")
    assert await page.evaluate(kept) == []
    await context.set_offline(True)
    with pytest.raises(PlaywrightError):
        await page.goto(trends)
    await context.close()
