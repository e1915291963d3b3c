"""Finding Chromium, device presets, throttling, and the pool's process hygiene."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
from probe_helpers import (
    Handler,
    SiteServer,
    chromium_pids,
    dead_singletons_since,
    policy_for,
    wait_until_gone,
    zombies,
)

from probes import procs
from probes.browser import DEVICES, THROTTLING, BrowserPool, ChromiumNotFound, find_chromium
from probes.throttling import SYNTHETIC_TOKEN

pytestmark = pytest.mark.serial  # counts Chromium processes / runs Lighthouse


def test_find_chromium(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "my-chromium"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("FIELDLAB_CHROMIUM", str(fake))
    assert find_chromium() == str(fake)
    assert find_chromium("/usr/bin/chromium") == "/usr/bin/chromium"  # explicit wins
    monkeypatch.setenv("FIELDLAB_CHROMIUM", str(tmp_path / "nope"))
    with pytest.raises(
        ChromiumNotFound, match=r"^Chromium not found at .*/nope \(FIELDLAB_CHROMIUM\): no such file$"
    ):
        find_chromium()
    (tmp_path / "noexec").write_text("")
    with pytest.raises(ChromiumNotFound, match="not executable"):
        find_chromium(str(tmp_path / "noexec"))
    monkeypatch.delenv("FIELDLAB_CHROMIUM")
    assert os.path.basename(find_chromium()) in ("chromium", "chromium-browser")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ChromiumNotFound, match="on PATH"):
        find_chromium()


def test_presets_match_lighthouse() -> None:
    mobile = THROTTLING["mobile-slow-4g"].network
    assert mobile == {
        "offline": False,
        "latency": 562.5,
        "downloadThroughput": 188743,
        "uploadThroughput": 86400,
    }
    assert THROTTLING["mobile-slow-4g"].cpu_slowdown == 4
    assert THROTTLING["desktop-dense-4g"].network == {
        "offline": False, "latency": 150.0, "downloadThroughput": 1179648, "uploadThroughput": 1179648,
    }  # fmt: skip
    assert THROTTLING["none"].network is None
    assert (DEVICES["mobile"].width, DEVICES["mobile"].device_scale_factor) == (412, 1.75)
    assert (DEVICES["desktop"].width, DEVICES["desktop"].height) == (1350, 940)


@pytest.mark.browser
@pytest.mark.slow
async def test_devices_user_agents_and_unload_beacons(pool: BrowserPool, site: SiteServer) -> None:
    """No 'HeadlessChrome' anywhere: not in the context's UA, and not in a beacon sent while
    the page unloads (which uses the browser's own UA). Both say they are synthetic, so field
    data (fieldlab's own, see tests/unit/test_normalise.py) can leave lab page views out."""
    agents: list[str] = []

    def beacon(h: Handler) -> None:
        agents.append(h.headers.get("user-agent", ""))
        h.send(204, "text/plain", "")

    site.routes["/beacon"] = beacon
    site.html(
        "/",
        "<script>addEventListener('pagehide', () => navigator.sendBeacon('/beacon', 'x'))</script><h1>ua</h1>",
    )
    site.html("/next", "<h1>next</h1>")
    for name, device in DEVICES.items():
        async with pool.context(device=name, base_url=site.url, policy=policy_for(site)) as ctx:
            page = ctx.pages[0]
            await page.goto("/")
            ua, width, dpr, touch = await page.evaluate(
                "[navigator.userAgent, window.outerWidth || innerWidth, devicePixelRatio, navigator.maxTouchPoints > 0]"
            )
            assert "Headless" not in ua
            assert ua.endswith(f" {SYNTHETIC_TOKEN}")
            assert f"Chrome/{pool.version}.0.0.0" in ua
            assert ("Mobile" in ua) is device.is_mobile
            assert dpr == device.device_scale_factor
            assert touch is device.has_touch
            assert width > 0
            await page.goto("/next")  # the first page unloads and sends its beacon
            # Wait inside the context: closing it can drop a beacon still in flight.
            deadline = time.monotonic() + 10
            while len(agents) <= list(DEVICES).index(name) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
    assert len(agents) == 2
    assert all(a and "Headless" not in a and SYNTHETIC_TOKEN in a for a in agents), agents


@pytest.mark.browser
@pytest.mark.slow
async def test_throttling_slows_network_and_cpu(pool: BrowserPool, site: SiteServer) -> None:
    site.html("/", "<h1>t</h1>")
    spin = "() => { const t = performance.now(); let x = 0; for (let i = 0; i < 1e8; i++) x += i; return performance.now() - t; }"
    timings: dict[str, tuple[float, float]] = {}
    for name in ("none", "mobile-slow-4g"):
        async with pool.context(throttling=name, base_url=site.url, policy=policy_for(site)) as ctx:
            page = ctx.pages[0]
            # Chromium applies the emulated latency to the response body: it shows in
            # responseEnd (and paints), not in responseStart. The fastest of three loads, so
            # one stall of a busy machine does not decide (a first load here once took 423 ms).
            loads = []
            for _ in range(3):
                await page.goto("/")
                loads.append(await page.evaluate("performance.getEntriesByType('navigation')[0].responseEnd"))
            timings[name] = (min(loads), min([await page.evaluate(spin) for _ in range(2)]))
    assert timings["mobile-slow-4g"][0] >= 562  # the request latency Lighthouse uses for 150 ms RTT
    assert timings["none"][0] < timings["mobile-slow-4g"][0] / 2  # and none without throttling
    # 4x CPU slowdown (the emulation pauses the main thread, so it is approximate).
    assert timings["mobile-slow-4g"][1] > 2 * timings["none"][1]


@pytest.mark.browser
@pytest.mark.slow
async def test_kill_tree_and_close_leave_no_chromium(site: SiteServer) -> None:
    site.html("/", "<h1>x</h1>")
    before = chromium_pids()
    dirs = procs.singleton_dirs_now()
    pool = BrowserPool()
    try:
        async with pool.context(base_url=site.url, policy=policy_for(site)) as ctx:
            await ctx.pages[0].goto("/")
            assert pool.pid is not None
            tree = {p.pid for p in procs.descendants(pool.pid)} | {pool.pid}
            assert len(tree) >= 3  # browser, zygotes, renderer, ...
            assert tree <= chromium_pids()
            killed = await pool.kill_tree()
        assert tree <= set(killed)
        assert pool.pid is None
        assert wait_until_gone(before) == set()
        assert not zombies(before)
        # Relaunched lazily, with a new generation.
        generation = pool.generation
        async with pool.context(base_url=site.url) as ctx:
            await ctx.pages[0].goto("/")
        assert pool.generation == generation + 1
        # A browser that died on its own is noticed and replaced.
        assert pool.pid is not None
        os.kill(pool.pid, 9)
        await asyncio.sleep(0.5)
        async with pool.context(base_url=site.url) as ctx:
            await ctx.pages[0].goto("/")
        assert pool.generation == generation + 2
    finally:
        await pool.close()
    assert wait_until_gone(before) == set()
    assert not zombies(before)
    assert dead_singletons_since(dirs) == set()  # SIGKILL leaves /tmp/org.chromium.Chromium.*


async def test_killing_or_closing_one_pool_leaves_another_alone(site: SiteServer) -> None:
    """Each pool kills only its own browser tree, though all of them (and a Lighthouse audit's
    Chromium) are Chromium processes below this same Python process."""
    site.html("/", "<h1>x</h1>")
    before = chromium_pids()
    keep, other = BrowserPool(), BrowserPool()
    try:
        for pool in (keep, other):
            async with pool.context(base_url=site.url) as ctx:
                await ctx.pages[0].goto("/")
        assert keep.pid is not None
        kept_pid = keep.pid
        await other.kill_tree()
        async with other.context(base_url=site.url) as ctx:  # relaunched
            await ctx.pages[0].goto("/")
        await other.close()
        # The kept browser's main process still runs. (Not its whole tree: a closed context's
        # renderer may exit on its own at any moment.)
        assert kept_pid in chromium_pids()
        assert keep.pid == kept_pid
        async with keep.context(base_url=site.url) as ctx:
            await ctx.pages[0].goto("/")
        assert keep.generation == 1  # the same browser served it: never relaunched
    finally:
        await keep.close()
        await other.close()
    assert wait_until_gone(before) == set()
