"""The spare context a warm BrowserPool prepares between runs: isolated, guarded, disposed of."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from probe_helpers import SiteServer, chromium_pids, policy_for, wait_until_gone, zombies

from probes.browser import BrowserPool
from probes.flow import run_flow
from probes.safety import TargetPolicy

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.serial]


def _serve(site: SiteServer) -> None:
    site.html("/", "<h1>home</h1>")
    # An image from a port the policy does not allow: refused, listed in blocked_requests.
    site.html("/leak", "<h1>leak</h1><img src='http://127.0.0.1:9/pixel.png'>")


class Visits:
    """A flow that reports what it finds of earlier runs, then leaves traces of its own."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.contexts: list[Any] = []

    async def __call__(self, page: Any, step: Any) -> None:
        async with step("visit"):
            await page.goto("/")
            self.contexts.append(page.context)
            self.seen.append(
                {
                    "cookies": await page.context.cookies(),
                    "storage": await page.evaluate("() => ({...localStorage})"),
                    "history": await page.evaluate("() => history.length"),
                }
            )
            await page.evaluate(
                "() => { localStorage.setItem('run', 'earlier'); document.cookie = 'run=earlier; max-age=3600'; }"
            )
            await page.goto("/leak")


async def _run(pool: BrowserPool, flow: Any, site: SiteServer, policy: TargetPolicy, out: Path) -> Any:
    result = await run_flow(flow, base_url=site.url, pool=pool, policy=policy, artifacts_dir=out, retries=0)
    assert result.status == "passed", result.error
    return result


async def test_prepared_context_is_fresh_guarded_and_closed(site: SiteServer, tmp_path: Path) -> None:
    _serve(site)
    before = chromium_pids()
    policy = policy_for(site)
    pool = BrowserPool()
    flow = Visits()
    try:
        await _run(pool, flow, site, policy, tmp_path / "1")
        assert pool._spare is None  # one run says nothing about the next: nothing prepared
        await _run(pool, flow, site, policy, tmp_path / "2")
        assert pool._spare is not None  # the same kind twice in a row: the next is prepared
        spare = await asyncio.wait_for(asyncio.shield(pool._spare[1]), 30)
        third = await _run(pool, flow, site, policy, tmp_path / "3")
        assert flow.contexts[2] is spare.ctx  # the third run got the prepared context ...
        # ... which had never been used: nothing of the runs before it is in there.
        for seen in flow.seen:  # (about:blank, then this page: as in any new context)
            assert seen == {"cookies": [], "storage": {}, "history": 2}
        assert len({id(c) for c in flow.contexts}) == 3
        # The spare's own guard and proxy enforced the policy and reported to this run.
        assert third.blocked_requests == ["http://127.0.0.1:9/pixel.png"]
        assert [s.status for s in third.steps] == ["passed"]
        assert (tmp_path / "3" / third.steps[0].screenshot).stat().st_size > 0

        # Another kind of run (another device) does not get it; the unused spare is closed.
        assert pool._spare is not None
        unused = await asyncio.wait_for(asyncio.shield(pool._spare[1]), 30)
        mobile = await run_flow(
            flow, base_url=site.url, pool=pool, policy=policy, device="mobile",
            artifacts_dir=tmp_path / "4", retries=0,
        )  # fmt: skip
        assert mobile.status == "passed", mobile.error
        assert flow.contexts[3] is not unused.ctx
        await asyncio.wait_for(asyncio.gather(*pool._chores), 30)
        assert pool._browser is not None
        assert unused.ctx not in pool._browser.contexts
        assert pool._spare is None

        # A killed browser takes its spare along; the next runs relaunch and work.
        await _run(pool, flow, site, policy, tmp_path / "5")
        await _run(pool, flow, site, policy, tmp_path / "6")
        assert pool._spare is not None
        generation = pool.generation
        await pool.kill_tree()
        assert pool._spare is None
        await _run(pool, flow, site, policy, tmp_path / "7")
        assert pool.generation == generation + 1
    finally:
        await pool.close()
    assert pool._spare is None
    assert not pool._chores
    assert wait_until_gone(before) == set()
    assert not zombies(before)


async def test_no_spare_when_prewarm_is_off(site: SiteServer, tmp_path: Path) -> None:
    _serve(site)
    pool = BrowserPool(prewarm=False)
    try:
        for n in range(2):
            await _run(pool, Visits(), site, policy_for(site), tmp_path / str(n))
        assert pool._spare is None
    finally:
        await pool.close()
