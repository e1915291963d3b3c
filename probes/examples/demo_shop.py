"""A flow against fieldlab's own demo shop (``FIELDLAB_DEMO=1``; ``make run`` schedules it).

Try it: ``fieldlab check run probes/examples/demo_shop.py --url http://127.0.0.1:8000 --allow-private``
(the demo runs on loopback, which targets may only reach when private addresses are allowed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.async_api import Page

    from probes.flow import StepFn


async def flow(page: Page, step: StepFn) -> None:
    async with step("home"):
        await page.goto("/demo/")
        await page.wait_for_selector("h1")
    async with step("product"):
        await page.goto("/demo/product/1")
        # The page shifts its layout after 800 ms (a CLS example): wait until it has.
        await page.wait_for_selector("text=128 reviews")
    async with step("add to cart"):
        # A deliberately slow click handler: this step's INP is the demo's interaction cost.
        await page.click("#add")
        await page.wait_for_selector("#cart:has-text('Added to cart.')")
        text = await page.inner_text("#cart")
        assert text == "Added to cart.", f"#cart says {text!r}"
