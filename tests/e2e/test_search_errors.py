"""End to end: errors thrown on a real page in real Chromium reach fieldlab through fieldlab.js
and are searchable by a word of their message within seconds, grouped with their repeats — on
SQLite and PostgreSQL, against a real server process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread
from typing import Any

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser, async_playwright

from tests.conftest import ADMIN, BROWSER_UA, LiveServer, free_port

pytestmark = [pytest.mark.browser, pytest.mark.slow]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--disable-gpu", f"--user-agent={BROWSER_UA}"]  # fmt: skip
APP_JS = b"""
function addToBasket(n) { throw new TypeError("Cannot add item " + n + " to basket 'b" + n + "' (quota exceeded)"); }
function applyCoupon() { throw new TypeError("Cannot add item 1 to basket 'c' (quota exceeded)"); }
document.getElementById("add").onclick = function () { addToBasket(Math.floor(Math.random() * 1000)); };
document.getElementById("coupon").onclick = function () { applyCoupon(); };
"""


class ShopPages:
    """The site owner's pages on their own origin: the tag, two buttons whose handlers throw."""

    def __init__(self, fieldlab_url: str) -> None:
        self.key = "pending"
        self.fieldlab_url = fieldlab_url
        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        pages = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/static/app"):
                    body, kind = APP_JS, "text/javascript"
                else:
                    tag = f'<script async src="{pages.fieldlab_url}/fieldlab.js" data-site="{pages.key}"></script>'
                    body = (f"<!doctype html><meta charset=utf-8><title>shop</title><link rel=icon href=data:,>{tag}"
                            "<h1>Checkout</h1><button id=add>Add</button><button id=coupon>Coupon</button>"
                            "<script src=/static/app.5e1f09ab.js defer></script>").encode()  # fmt: skip
                    kind = "text/html; charset=utf-8"
                self.send_response(200)
                self.send_header("content-type", kind)
                self.end_headers()
                self.wfile.write(body)

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


@pytest_asyncio.fixture(loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        await b.close()


async def _groups(c: httpx.AsyncClient, site_id: int, q: str) -> list[dict[str, Any]]:
    r = await c.get("/api/v1/logs/groups", params={"q": q, "site": site_id})
    assert r.status_code == 200, r.text
    groups: list[dict[str, Any]] = r.json()["groups"]
    return groups


async def test_thrown_errors_are_searchable_within_seconds_grouped_with_repeats(
    live_server: LiveServer, browser: Browser
) -> None:
    repeats = 3
    with ShopPages(live_server.url) as shop:
        async with httpx.AsyncClient(
            base_url=live_server.url, headers={"authorization": f"Bearer {ADMIN}"}
        ) as c:
            site = (await c.post("/api/v1/sites", json={"name": "shop", "origins": [shop.origin]})).json()
            shop.key = site["key"]
            context = await browser.new_context(user_agent=BROWSER_UA)
            page = await context.new_page()
            for i in range(repeats):
                await page.goto(f"{shop.origin}/checkout/{i + 1}")
                await page.wait_for_function("window.fieldlab")
                await page.wait_for_function("!!document.getElementById('add').onclick")
                await page.click("#add")
                if i == 0:
                    await page.click("#coupon")  # same words, another function: another group
                await page.goto("about:blank")  # hidden + pagehide: the beacon leaves
            sent = time.monotonic()
            groups: list[dict[str, Any]] = []
            while time.monotonic() - sent < 20:
                groups = await _groups(c, site["id"], "quota")
                if sum(g["count"] for g in groups) >= repeats + 1:
                    break
                await asyncio.sleep(0.25)
            elapsed = time.monotonic() - sent
            await context.close()
    by_frame = {g["top_frame"]: g for g in groups}
    assert set(by_frame) == {"addToBasket@/static/app.<hex>.js", "applyCoupon@/static/app.<hex>.js"}, groups
    basket = by_frame["addToBasket@/static/app.<hex>.js"]
    assert basket["count"] == repeats
    assert basket["page_groups"] == [{"value": "/checkout/:id", "count": repeats}]
    assert basket["browsers"][0]["value"] == "chrome"
    assert "addToBasket" in basket["sample_stacks"][0]
    assert by_frame["applyCoupon@/static/app.<hex>.js"]["count"] == 1
    # Beacon, group commit and an indexing pass (every FIELDLAB_SEARCH_INDEX_INTERVAL_S = 3 s).
    assert elapsed < 10, f"searchable after {elapsed:.1f} s"
    print(f"searchable {elapsed:.2f} s after the last page view ended")
