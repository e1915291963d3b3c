"""End to end: a page on one origin loads fieldlab.js from a real fieldlab server on another,
real Chromium measures, the beacon crosses origins, the server stores it, and the summary shows
it — on SQLite and on PostgreSQL. Also the demo shop `make run` serves."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser, async_playwright

from app.config import Settings
from tests.conftest import ADMIN, BROWSER_UA, ROOT, LiveServer, free_port

pytestmark = [pytest.mark.browser, pytest.mark.slow]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--disable-gpu"]  # fmt: skip


class ShopPages:
    """The site owner's pages, on their own origin, carrying the one-line tag."""

    def __init__(self, fieldlab_url: str, key: str) -> None:
        tag = f'<script async src="{fieldlab_url}/fieldlab.js" data-site="{key}"></script>'
        self.html = (
            "<!doctype html><html><head><meta charset=utf-8><title>shop</title>"
            f"<link rel=icon href=data:,>{tag}</head><body>"
            "<h1 id=title style='font-size:64px'>Product 42</h1>"
            "<button id=buy onclick='var t=performance.now();while(performance.now()-t<120){}'>Buy</button>"
            "</body></html>"
        ).encode()
        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        pages = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/html; charset=utf-8")
                self.end_headers()
                self.wfile.write(pages.html)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> ShopPages:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def demo_server(settings: Settings, tmp_path: Path) -> Iterator[LiveServer]:
    server = LiveServer(replace(settings, demo=True), tmp_path / "server.log")
    server.start()
    yield server
    server.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        # The UA flag, not only the context's: beacons sent while a page unloads leave from the
        # browser process with its default UA, which says HeadlessChrome (a bot to fieldlab).
        b = await p.chromium.launch(executable_path=CHROMIUM, args=[*ARGS, f"--user-agent={BROWSER_UA}"])
        yield b
        await b.close()


async def _summary_count(server: LiveServer, site_id: int, metric: str, want: int) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    async with httpx.AsyncClient(base_url=server.url, headers={"authorization": f"Bearer {ADMIN}"}) as c:
        while True:
            body: dict[str, Any] = (await c.get(f"/api/v1/sites/{site_id}/summary")).json()
            if body["metrics"][metric]["count"] >= want or time.monotonic() > deadline:
                return body
            await asyncio.sleep(0.2)


async def test_real_page_views_reach_the_summary(live_server: LiveServer, browser: Browser) -> None:
    with ShopPages(live_server.url, "pending") as shop:
        async with httpx.AsyncClient(base_url=live_server.url) as c:
            r = await c.post("/api/v1/sites", json={"name": "shop", "origins": [shop.origin]},
                             headers={"authorization": f"Bearer {ADMIN}"})  # fmt: skip
            site = r.json()
        shop.html = shop.html.replace(b'data-site="pending"', f'data-site="{site["key"]}"'.encode())
        context = await browser.new_context(user_agent=BROWSER_UA)
        page = await context.new_page()
        for _ in range(2):
            await page.goto(f"{shop.origin}/product/42?session=secret")
            await page.wait_for_function("window.fieldlab")
            await page.click("#buy")
            await page.wait_for_timeout(300)
            await page.goto("about:blank")  # hidden + pagehide: the snippet sends its beacon
        # Wait for the beacons before closing: a closing context may drop one still in flight.
        body = await _summary_count(live_server, site["id"], "INP", 2)
        await context.close()
    metrics = body["metrics"]
    assert metrics["FCP"]["count"] == 2
    assert metrics["TTFB"]["count"] == 2
    assert metrics["LCP"]["count"] == 2
    assert metrics["INP"]["count"] == 2
    assert metrics["INP"]["p50"] >= 100  # the 120 ms handler
    async with httpx.AsyncClient(base_url=live_server.url, headers={"authorization": f"Bearer {ADMIN}"}) as c:
        top = (await c.get(f"/api/v1/sites/{site['id']}/attribution?metric=INP")).json()
        page_summary = (await c.get(f"/api/v1/sites/{site['id']}/summary?page=/product/7")).json()
    assert top["items"][0]["item"] == "#buy"
    assert page_summary["metrics"]["LCP"]["count"] == 2  # /product/42 grouped as /product/:id


async def test_demo_shop_reports_to_the_demo_site(demo_server: LiveServer, browser: Browser) -> None:
    seeded = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", "demo", "seed", "--no-history", env={**demo_server.env(), "FIELDLAB_PORT": str(demo_server.settings.port)},
        cwd=ROOT,
    )  # fmt: skip
    assert await seeded.wait() == 0
    async with httpx.AsyncClient(base_url=demo_server.url, headers={"authorization": f"Bearer {ADMIN}"}) as c:
        demo = next(s for s in (await c.get("/api/v1/sites")).json() if s["name"] == "demo")
    context = await browser.new_context(user_agent=BROWSER_UA)
    page = await context.new_page()
    await page.goto(f"{demo_server.url}/demo/product/1")
    await page.wait_for_function("window.fieldlab")
    await page.click("#add")
    await page.wait_for_timeout(1200)  # the late banner shifts the layout
    await page.goto(f"{demo_server.url}/demo/")
    await page.wait_for_function("window.fieldlab")
    # Leave only after the first paint: a page hidden before it has no FCP to report.
    await page.wait_for_function("performance.getEntriesByName('first-contentful-paint').length > 0")
    await page.goto("about:blank")
    body = await _summary_count(demo_server, demo["id"], "FCP", 2)
    await context.close()
    assert body["metrics"]["FCP"]["count"] == 2
    assert body["metrics"]["INP"]["count"] >= 1
    assert body["metrics"]["CLS"]["count"] >= 1
