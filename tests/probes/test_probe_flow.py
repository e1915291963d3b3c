"""The flow runner against real Chromium and pages served by the test."""

from __future__ import annotations

import asyncio
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from probe_helpers import Handler, SiteServer, chromium_pids, policy_for, wait_until_gone, zombies

from probes.browser import BrowserPool
from probes.flow import FlowLoadError, load_flow_file, run_flow

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.serial]

PNG = b"\x89PNG\r\n\x1a\n" + bytes(6000)  # not a valid image; the bytes are what count here

HOME = """<!doctype html><html><head><title>home</title><link rel="stylesheet" href="/style.css">
<script src="/app.js"></script><script src="{tp}/widget.js"></script></head>
<body><h1>Welcome</h1><p>A small page with a paragraph of text.</p>
<img src="{tp}/pix.png" width="10" height="10"><a id="next" href="/product">product</a></body></html>"""

PRODUCT = """<!doctype html><html><head><title>product</title></head><body>
<div id="top"></div><h1>Product</h1><button id="add">Add</button><p id="cart"></p>
<img src="/missing.png">
<script>
  // A layout shift (CLS), a console error, an uncaught error and a fetch, after load.
  setTimeout(() => {
    const d = document.createElement('div');
    d.style.height = '300px'; d.textContent = 'Free shipping';
    document.getElementById('top').append(d);
  }, 300);
  console.error('product: oops');
  setTimeout(() => { throw new Error('late failure'); }, 10);
  fetch('/api/stock').then(r => r.text());
  // A slow click handler (150 ms of main-thread work): the step's INP.
  document.getElementById('add').addEventListener('click', () => {
    const end = performance.now() + 150;
    while (performance.now() < end) {}
    document.getElementById('cart').textContent = 'Added to cart.';
  });
</script></body></html>"""


def serve_shop(site: SiteServer, third: SiteServer) -> None:
    site.html("/", HOME.format(tp=third.url))
    site.html("/product", PRODUCT)
    site.routes["/style.css"] = (200, "text/css", "body{font-family:sans-serif;color:#222}" + " " * 2000)
    site.routes["/app.js"] = (200, "text/javascript", "window.app = 1;" + " " * 3000)
    site.routes["/api/stock"] = (200, "application/json", '{"stock": 3}')
    third.routes["/widget.js"] = (200, "text/javascript", "window.widget = 1;" + " " * 4000)
    third.routes["/pix.png"] = (200, "image/png", PNG)


async def shop_flow(page: Any, step: Any) -> None:
    async with step("home"):
        await page.goto("/")
    async with step("product"):
        await page.click("#next")
        await page.wait_for_selector("text=Free shipping")
        await page.wait_for_timeout(200)  # let the fetch and the late error land in this step
    async with step("add to cart"):
        await page.click("#add")
        await page.wait_for_selector("#cart:has-text('Added to cart.')")


async def test_three_step_flow_timings_vitals_resources_errors(
    pool: BrowserPool, site: SiteServer, third_party: SiteServer, tmp_path: Path
) -> None:
    serve_shop(site, third_party)
    result = await run_flow(
        shop_flow, base_url=site.url, pool=pool, policy=policy_for(site, third_party), artifacts_dir=tmp_path
    )
    r = result.to_dict()
    assert r["status"] == "passed", r["error"]
    assert r["attempts"] == 1
    assert [s["name"] for s in r["steps"]] == ["home", "product", "add to cart"]
    for s in r["steps"]:
        assert s["status"] == "passed"
        assert s["duration_ms"] > 0
        assert s["screenshot"].endswith(".jpg")
        shot = (tmp_path / s["screenshot"]).read_bytes()
        assert shot.startswith(b"\xff\xd8\xff")
        assert shot.endswith(b"\xff\xd9")
        assert len(shot) > 2000  # a rendered page, not a blank frame
    home, product, cart = r["steps"]

    # Lab vitals: load metrics per navigation, CLS of the shifting page, INP of the slow click.
    (nav,) = home["navigations"]
    assert nav["kind"] == "navigation"
    assert nav["url"] == f"{site.url}/"
    for metric in ("TTFB", "FCP", "LCP"):
        assert nav["vitals"][metric] is not None, metric
        assert nav["vitals"][metric] >= 0, metric
    assert nav["vitals"]["FCP"] >= nav["vitals"]["TTFB"]
    product_nav = [n for n in product["navigations"] if n["kind"] == "navigation"]
    assert [n["url"] for n in product_nav] == [f"{site.url}/product"]
    assert product_nav[0]["vitals"]["CLS"] > 0.01
    (span,) = cart["navigations"]
    assert span["kind"] == "timespan"
    assert span["interactions"] >= 1
    assert span["vitals"]["INP"] >= 100

    # Resources by type and third-party share (localhost vs 127.0.0.1).
    res = home["resources"]
    assert res["by_type"]["document"]["count"] == 1
    assert res["by_type"]["script"]["count"] == 2
    assert res["by_type"]["stylesheet"]["count"] == 1
    assert res["by_type"]["image"]["count"] == 1
    assert res["by_type"]["image"]["bytes"] >= len(PNG)
    assert res["by_type"]["script"]["bytes"] >= 7000
    assert res["total_count"] == sum(t["count"] for t in res["by_type"].values())
    assert res["total_bytes"] == sum(t["bytes"] for t in res["by_type"].values())
    assert res["third_party_hosts"] == ["localhost"]
    assert res["third_party_count"] == 2
    assert res["third_party_bytes"] >= len(PNG) + 4000
    assert res["third_party_share"] == pytest.approx(res["third_party_bytes"] / res["total_bytes"], abs=1e-4)
    assert 0.5 < res["third_party_share"] < 1
    assert product["resources"]["by_type"]["xhr"]["count"] == 1
    assert product["resources"]["third_party_share"] == 0

    # Console errors (console.error and uncaught) and failed requests (the 404 image).
    texts = [e["text"] for e in product["console_errors"]]
    assert "product: oops" in texts
    assert any(
        "late failure" in t and e["type"] == "pageerror"
        for t, e in zip(texts, product["console_errors"], strict=True)
    )
    failed = {f["url"]: f for f in product["failed_requests"]}
    assert failed[f"{site.url}/missing.png"]["status"] == 404
    assert not home["console_errors"]
    assert not home["failed_requests"]
    assert r["blocked_requests"] == []
    assert r["artifacts"] == [s["screenshot"] for s in r["steps"]]


async def test_step_ending_on_a_slow_click_still_reports_it(
    pool: BrowserPool, site: SiteServer, tmp_path: Path
) -> None:
    """The browser reports an interaction only once the frame after it is presented, tens of ms
    after the handler ends; a step that ends right on the click must still see its latency
    (before the step end waited for it, about one in four such steps reported only the
    pointerdown's 16 ms)."""
    site.html("/", PRODUCT)

    async def flow(page: Any, step: Any) -> None:
        async with step("open"):
            await page.goto("/")
            # The page's layout shift moves the button 300 ms after load; a click racing it on a
            # busy machine can land beside the button first (a second interaction in the step).
            await page.wait_for_selector("text=Free shipping")
        for n in range(6):
            async with step(f"click {n}"):
                await page.click("#add")

    result = await run_flow(
        flow, base_url=site.url, pool=pool, policy=policy_for(site), artifacts_dir=tmp_path
    )
    assert result.status == "passed", result.error
    clicks = result.steps[1:]
    assert len(clicks) == 6
    for s in clicks:
        (span,) = [n for n in s.navigations if n.kind == "timespan"]
        assert span.interactions == 1, s.name
        assert (span.vitals["INP"] or 0) >= 150, (s.name, span.vitals)


async def test_step_ending_before_the_first_paint_waits_for_it(
    pool: BrowserPool, site: SiteServer, tmp_path: Path
) -> None:
    """Paint timing, like Event Timing, is reported only after a frame is presented: a step that
    ends before the page has painted anything contentful waits (briefly) for its FCP."""
    site.html(
        "/", "<!doctype html><body><script>setTimeout(() => document.body.append('late text'), 250)</script>"
    )

    async def flow(page: Any, step: Any) -> None:
        async with step("open"):
            await page.goto("/")

    result = await run_flow(
        flow, base_url=site.url, pool=pool, policy=policy_for(site), artifacts_dir=tmp_path
    )
    assert result.status == "passed", result.error
    (nav,) = result.steps[0].navigations
    assert nav.vitals["FCP"] is not None
    assert nav.vitals["FCP"] >= 250


async def test_failing_flow_keeps_screenshot_and_trace(
    pool: BrowserPool, site: SiteServer, tmp_path: Path
) -> None:
    site.html("/", "<h1>Hello</h1><p id='price'>12 EUR</p>")

    async def flow(page: Any, step: Any) -> None:
        async with step("open"):
            await page.goto("/")
        async with step("check price"):
            price = await page.inner_text("#price")
            if price != "10 EUR":  # not `assert`: pytest would rewrite its message
                raise AssertionError(f"price is {price}")

    result = await run_flow(
        flow, base_url=site.url, pool=pool, policy=policy_for(site), artifacts_dir=tmp_path
    )
    assert result.status == "failed"
    assert result.attempts == 2  # one retry, failed again: failed, not flaky
    assert result.error == "step 'check price': price is 12 EUR"
    assert len(result.attempt_errors) == 2
    opened, checked = result.steps
    assert (opened.status, checked.status) == ("passed", "failed")
    assert checked.screenshot == "attempt-2/failure.png"
    for n in (1, 2):
        assert f"attempt-{n}/failure.png" in result.artifacts
        assert f"attempt-{n}/trace.zip" in result.artifacts
        assert (tmp_path / f"attempt-{n}/failure.png").read_bytes().startswith(b"\x89PNG")
    # The first attempt's trace is light (the flow's actions with timings and call logs); the
    # retry, made because the check failed, records DOM snapshots and the screencast too.
    light, full = (_trace_events(tmp_path / f"attempt-{n}/trace.zip") for n in (1, 2))
    for events in (light, full):
        read = [e for e in events["before"] if e.get("params", {}).get("selector") == "#price"]
        assert [e["method"] for e in read] == ["innerText"]
        assert any("12 EUR" in e["message"] for e in events["log"])
    assert "frame-snapshot" not in light
    assert "screencast-frame" not in light
    assert full["frame-snapshot"]
    assert full["screencast-frame"]
    # The failed step still reports the page it was on.
    assert [n.url for n in opened.navigations] == [f"{site.url}/"]


def _trace_events(path: Path) -> dict[str, list[dict[str, Any]]]:
    """A trace zip's events by type."""
    by_type: dict[str, list[dict[str, Any]]] = {}
    with zipfile.ZipFile(path) as trace:
        for name in trace.namelist():
            if name.endswith(".trace"):
                for line in trace.read(name).decode().splitlines():
                    if line.strip():
                        event = json.loads(line)
                        by_type.setdefault(event["type"], []).append(event)
    return by_type


async def test_passing_on_retry_is_flaky(pool: BrowserPool, site: SiteServer, tmp_path: Path) -> None:
    def sometimes(h: Handler) -> None:
        ok = site.hits["/"] > 1  # the first visit fails, the second passes
        h.send(200, "text/html", f"<p id='state'>{'ready' if ok else 'broken'}</p>")

    site.routes["/"] = sometimes

    async def flow(page: Any, step: Any) -> None:
        async with step("load"):
            await page.goto("/")
            if await page.inner_text("#state") != "ready":
                raise AssertionError("state is not ready")

    result = await run_flow(
        flow, base_url=site.url, pool=pool, policy=policy_for(site), artifacts_dir=tmp_path
    )
    assert result.status == "flaky"
    assert result.ok
    assert result.attempts == 2
    assert result.error is None
    assert result.attempt_errors == ["attempt 1: step 'load': state is not ready"]
    assert [s.status for s in result.steps] == ["passed"]
    assert "attempt-1/trace.zip" in result.artifacts
    assert "attempt-2/step-01-load.jpg" in result.artifacts
    assert not (tmp_path / "attempt-2/trace.zip").exists()  # traces are kept for failures only


async def test_hung_renderer_times_out_kills_browser_and_next_run_is_fresh(
    site: SiteServer, tmp_path: Path
) -> None:
    """A JavaScript loop hangs the renderer: page.evaluate never returns, only the hard timer
    ends the step; the browser tree is killed, nothing remains, the next run relaunches."""
    site.html("/", "<h1>spin</h1>")
    before = chromium_pids()
    own = BrowserPool()

    async def spin(page: Any, step: Any) -> None:
        async with step("open"):
            await page.goto("/")
        async with step("spin"):
            await page.evaluate("() => { while (true) {} }")

    try:
        result = await run_flow(
            spin, base_url=site.url, pool=own, policy=policy_for(site), artifacts_dir=tmp_path,
            step_timeout_s=2, run_timeout_s=60, retries=0,
        )  # fmt: skip
        assert result.status == "failed"
        assert result.error == "timed out after 2 s in step 'spin'"
        assert [s.status for s in result.steps] == ["passed", "timed-out"]
        assert 2000 <= result.steps[1].duration_ms < 8000
        assert "attempt-1/trace.zip" in result.artifacts  # a hung renderer cannot paint a screenshot
        assert own.pid is None
        assert wait_until_gone(before) == set(), "Chromium processes left after the kill"
        assert not zombies(before)

        generation = own.generation

        async def simple(page: Any, step: Any) -> None:
            async with step("open"):
                await page.goto("/")

        again = await run_flow(
            simple, base_url=site.url, pool=own, policy=policy_for(site), artifacts_dir=tmp_path / "2"
        )
        assert again.status == "passed"
        assert own.generation == generation + 1
    finally:
        await own.close()
    assert wait_until_gone(before) == set(), "Chromium processes left after pool.close()"
    assert not zombies(before)


async def test_server_that_never_answers_times_out_the_step(site: SiteServer, tmp_path: Path) -> None:
    site.html("/", "<h1>home</h1>")
    site.routes["/slow"] = Handler.hang
    before = chromium_pids()
    own = BrowserPool()

    async def flow(page: Any, step: Any) -> None:
        async with step("open"):
            await page.goto("/")
        async with step("slow page"):
            await page.goto("/slow")

    try:
        result = await run_flow(
            flow, base_url=site.url, pool=own, policy=policy_for(site), artifacts_dir=tmp_path,
            step_timeout_s=2, retries=0,
        )  # fmt: skip
        assert result.status == "failed"
        assert result.steps[1].status == "timed-out"
        assert result.error is not None
        assert result.error.startswith("step 'slow page': Page.goto: Timeout 2000ms exceeded")
        assert "attempt-1/failure.png" in result.artifacts
    finally:
        await own.close()
    assert wait_until_gone(before) == set()
    assert not zombies(before)


async def test_run_timeout_kills_and_fails(site: SiteServer, tmp_path: Path) -> None:
    site.html("/", "<h1>home</h1>")
    before = chromium_pids()
    own = BrowserPool()

    async def flow(page: Any, step: Any) -> None:
        async with step("open"):
            await page.goto("/")
        async with step("think"):
            await asyncio.sleep(30)

    try:
        result = await run_flow(
            flow, base_url=site.url, pool=own, policy=policy_for(site), artifacts_dir=tmp_path,
            step_timeout_s=20, run_timeout_s=3, retries=2,
        )  # fmt: skip
        assert result.status == "failed"
        assert result.attempts == 1  # the run's time is up: no retry
        assert result.error == "run timed out after 3 s in step 'think'"
        assert result.steps[1].status == "timed-out"
        assert result.duration_ms < 9000
        assert wait_until_gone(before) == set()
    finally:
        await own.close()


async def test_errors_outside_steps_and_nested_steps(
    pool: BrowserPool, site: SiteServer, tmp_path: Path
) -> None:
    site.html("/", "<h1>home</h1>")

    async def outside(page: Any, step: Any) -> None:
        async with step("open"):
            await page.goto("/")
        raise RuntimeError("boom")

    async def nested(page: Any, step: Any) -> None:
        async with step("outer"), step("inner"):
            pass

    r1 = await run_flow(
        outside,
        base_url=site.url,
        pool=pool,
        policy=policy_for(site),
        artifacts_dir=tmp_path / "a",
        retries=0,
    )
    assert (r1.status, r1.error) == ("failed", "outside any step: boom")
    r2 = await run_flow(
        nested, base_url=site.url, pool=pool, policy=policy_for(site), artifacts_dir=tmp_path / "b", retries=0
    )
    assert r2.status == "failed"
    assert r2.error is not None
    assert "steps cannot be nested" in r2.error


async def test_refused_target_is_an_error_without_a_browser(tmp_path: Path) -> None:
    class NoPool:  # run_flow must not even ask for a browser
        pass

    async def flow(page: Any, step: Any) -> None:
        raise AssertionError("must not run")

    from probes.safety import TargetPolicy

    result = await run_flow(
        flow, base_url="http://10.0.0.1/", pool=NoPool(), policy=TargetPolicy(), artifacts_dir=tmp_path
    )  # type: ignore[arg-type]
    assert result.status == "error"
    assert result.error is not None
    assert "private address" in result.error


def test_load_flow_file(tmp_path: Path) -> None:
    good = tmp_path / "good.py"
    good.write_text("async def flow(page, step):\n    pass\n")
    assert load_flow_file(good).__name__ == "flow"
    for name, text, message in [
        ("nothing.py", "x = 1\n", "defines no `async def flow(page, step)`"),
        ("sync.py", "def flow(page, step):\n    pass\n", "defines no `async def flow(page, step)`"),
        ("broken.py", "def flow(:\n", "cannot load: SyntaxError"),
        ("raises.py", "raise ImportError('no such lib')\n", "cannot load: ImportError: no such lib"),
    ]:
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(FlowLoadError) as info:
            load_flow_file(path)
        assert str(info.value).startswith(f"{path}: ")
        assert message in str(info.value)
    with pytest.raises(FlowLoadError, match="no such flow file"):
        load_flow_file(tmp_path / "missing.py")


async def test_browser_that_cannot_start_is_an_infrastructure_error(site: SiteServer, tmp_path: Path) -> None:
    site.html("/", "<h1>home</h1>")
    broken = tmp_path / "chromium"
    broken.write_text("#!/bin/sh\necho 'cannot open display' >&2\nexit 1\n")
    broken.chmod(0o755)
    own = BrowserPool(str(broken), launch_timeout_s=10)

    async def flow(page: Any, step: Any) -> None:
        async with step("open"):
            await page.goto("/")

    try:
        result = await run_flow(
            flow,
            base_url=site.url,
            pool=own,
            policy=policy_for(site),
            artifacts_dir=tmp_path / "a",
            retries=0,
        )
    finally:
        await own.close()
    assert result.status == "error"
    assert result.error is not None
    assert result.error.startswith("browser: ")
    assert result.steps == []


async def test_concurrent_runs_share_the_warm_browser(
    pool: BrowserPool, site: SiteServer, tmp_path: Path
) -> None:
    site.html("/", "<h1>home</h1><p id='n'></p>")

    def flow_for(n: int) -> Any:
        async def flow(page: Any, step: Any) -> None:
            async with step(f"run {n}"):
                await page.goto("/")
                await page.evaluate(f"document.getElementById('n').textContent = '{n}'")
                assert await page.inner_text("#n") == str(n)  # contexts do not share pages

        return flow

    generation = (await pool.browser()) and pool.generation
    results = await asyncio.gather(*[
        run_flow(flow_for(n), base_url=site.url, pool=pool, policy=policy_for(site), artifacts_dir=tmp_path / str(n))
        for n in range(3)
    ])  # fmt: skip
    assert [r.status for r in results] == ["passed"] * 3
    assert pool.generation == generation  # one browser, three contexts
