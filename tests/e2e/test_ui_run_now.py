"""Checks in the dashboard, end to end: an admin presses "Run now" in real Chromium, the server
runs a real Playwright flow against its own demo shop, and the run page shows the step
waterfall, lab vitals and the step screenshots."""

from __future__ import annotations

import asyncio
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from playwright.async_api import Browser

from app.config import Settings
from app.db import Database
from app.demo import seed_demo_site
from tests.conftest import ADMIN, ROOT, LiveServer
from tests.e2e.test_ui import VIEWPORT, browser, shot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.slow]
__all__ = ["browser"]  # the fixture, shared with test_ui.py


class DemoServer(LiveServer):
    """The server with its demo shop, allowed to check its own address, keeping artifacts in
    the test's directory."""

    def __init__(self, settings: Settings, log_path: Path, data_dir: Path) -> None:
        super().__init__(settings, log_path)
        self.data_dir = data_dir

    def env(self) -> dict[str, str]:
        env = super().env()
        env.update(FIELDLAB_DEMO="1", FIELDLAB_DATA_DIR=str(self.data_dir),
                   FIELDLAB_ALLOW_TARGET_HOSTS=f"127.0.0.1:{self.settings.port}")  # fmt: skip
        return env


@pytest.fixture
def demo_server(sqlite_template: Path, tmp_path: Path) -> Iterator[DemoServer]:
    path = tmp_path / "fieldlab.db"
    shutil.copy(sqlite_template, path)
    settings = Settings(database_url=f"sqlite+aiosqlite:///{path}", admin_token=ADMIN,
                        static_dir=str(ROOT / "static"), site_cache_ttl_s=0.0, data_dir=str(tmp_path / "data"))  # fmt: skip
    server = DemoServer(settings, tmp_path / "server.log", tmp_path / "data")

    async def prepare() -> None:
        db = Database(settings)
        try:
            await seed_demo_site(db=db, host="127.0.0.1", port=server.settings.port)
        finally:
            await db.dispose()

    asyncio.run(prepare())
    server.start()
    yield server
    server.stop()


async def test_run_now_shows_the_run_with_waterfall_and_screenshots(
    demo_server: DemoServer, browser: Browser
) -> None:
    steps = yaml.safe_load((ROOT / "probes" / "examples" / "homepage.yml").read_text())
    async with httpx.AsyncClient(base_url=demo_server.url, headers={"authorization": f"Bearer {ADMIN}"}) as c:
        r = await c.post("/api/v1/checks", json={"name": "demo shop", "kind": "flow", "target": demo_server.url,
                                                 "steps": steps})  # fmt: skip
        assert r.status_code == 201, r.text
        check_id = r.json()["id"]
    context = await browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    page = await context.new_page()
    await sign_in(page, demo_server.url, ADMIN)
    await page.click("header nav >> text=Checks")
    await page.click("#checks >> text=demo shop")
    await page.wait_for_url(re.compile(rf"/ui/checks/{check_id}$"))
    await page.click("text=Run now")
    await page.wait_for_url(re.compile(r"/ui/runs/\d+$"))
    deadline = time.monotonic() + 90
    while "running" in await page.locator("h1 .badge").inner_text() and time.monotonic() < deadline:
        await asyncio.sleep(1)
        await page.reload()
    assert await page.locator("h1 .badge").inner_text() == "passed", await page.content()
    names = await page.locator("#steps tbody tr").evaluate_all("rows => rows.map(r => r.dataset.step)")
    assert names == ["home", "product", "add to cart"]
    widths = await page.locator(".waterfall span").evaluate_all("bars => bars.map(b => b.offsetWidth)")
    assert all(w >= 2 for w in widths)
    assert await page.locator("#lab-vitals tbody tr").count() >= 1
    images = page.locator("img.shot")
    if await images.count():
        await images.first.scroll_into_view_if_needed()
        await page.wait_for_function("() => [...document.images].every(i => i.complete)")
        assert await images.first.evaluate("img => img.naturalWidth") > 0
    await shot(page, "run")
    await page.goto(f"{demo_server.url}/ui/checks")
    assert await page.locator('#checks tr[data-check="demo shop"] .badge').inner_text() == "passed"
    await shot(page, "checks")
    await context.close()
