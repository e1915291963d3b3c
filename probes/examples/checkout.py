"""The shape of a typical flow (issue #5): each ``step`` is timed and gets its own lab vitals,
resource breakdown, errors and screenshot. ``page`` has the target as its base URL, so paths
are relative to ``--url``.

    fieldlab check run probes/examples/checkout.py --url https://staging.example
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.async_api import Page

    from probes.flow import StepFn


async def flow(page: Page, step: StepFn) -> None:
    async with step("home"):
        await page.goto("/")
    async with step("search"):
        await page.fill("#q", "shoes")
        await page.press("#q", "Enter")
        await page.wait_for_selector(".results")
    async with step("product"):
        await page.click(".results a >> nth=0")
        await page.wait_for_load_state("load")
    async with step("add to cart"):
        await page.click("#add")
        await page.wait_for_selector("#cart:has-text('Added')")
