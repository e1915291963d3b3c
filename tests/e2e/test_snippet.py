"""fieldlab.js in real Chromium: one page per behaviour, each beacon checked against the server's
own schema and, on the same page load, against Google web-vitals' attribution build.

How the page gets hidden: headless Chromium never changes ``document.visibilityState`` on its own
(switching tabs, minimising the window, ``Page.setWebLifecycleState`` and
``Emulation.setFocusEmulationEnabled`` were all tried: no ``visibilitychange``). Navigating away
does fire ``visibilitychange`` → hidden (when nothing else is pending) and ``pagehide``, and
closing the tab fires ``pagehide``; those are the real paths used here. The hidden → visible →
hidden sequence (re-send with the same id) is driven by overriding ``visibilityState`` and
dispatching the event, which the snippet handles like the real one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import msgspec
import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from app.ingest.decode import Client, Limits, SiteRules, decode_beacon
from app.ingest.schemas import PageView
from tests.e2e.snippet_pages import ROOT, SITE_KEY, PageServer, html, snippet_tag

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.asyncio(loop_scope="session")]

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-gpu",
]
DESKTOP_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36"
)
BEACON = "/api/v1/beacon"


@pytest.fixture(scope="module")
def server() -> Iterator[PageServer]:
    # The committed build is what users get; tests/unit/test_snippet_build.py checks it
    # matches the source (run `make snippet` after changing rum-snippet/).
    assert (ROOT / "static" / "fieldlab.js").is_file(), "static/fieldlab.js missing: make snippet"
    with PageServer() as srv:
        yield srv


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        # Playwright turns the back/forward cache off by default; these tests need it.
        b = await p.chromium.launch(
            executable_path=CHROMIUM, args=ARGS, ignore_default_args=["--disable-back-forward-cache"]
        )
        yield b
        await b.close()


@pytest_asyncio.fixture(loop_scope="session")
async def context(browser: Browser, server: PageServer) -> AsyncIterator[BrowserContext]:
    server.clear()
    ctx = await browser.new_context(user_agent=DESKTOP_UA)
    yield ctx
    await ctx.close()


@pytest_asyncio.fixture(loop_scope="session")
async def page(context: BrowserContext) -> AsyncIterator[Page]:
    pg = await context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.errors = errors  # type: ignore[attr-defined]
    yield pg


# --- helpers -----------------------------------------------------------------------------------


async def posts(
    server: PageServer, path: str, count: int = 1, *, page: str = "", wait: float = 10.0
) -> list[Any]:
    """Bodies POSTed to `path` from pages under /p/<page> (a page of an earlier test that is
    closed late may still send its beacon)."""
    prefix = f"{server.url}/p/{page}"
    deadline = time.monotonic() + wait
    got: list[Any] = []
    while time.monotonic() < deadline:
        got = [r.json() for r in server.recorded(path)]
        got = [b for b in got if b.get("url", prefix).startswith(prefix)]
        if len(got) >= count:
            return got
        await asyncio.sleep(0.05)
    raise AssertionError(f"expected {count} POST(s) to {path} from {prefix}, got {got}")


async def open_page(page: Page, server: PageServer, name: str, *, vitals: bool = True) -> None:
    await page.goto(f"{server.url}/p/{name}")
    await page.wait_for_function("window.fieldlab" + (" && window.webVitals" if vitals else ""))


async def leave(page: Page, server: PageServer) -> None:
    """Navigate away: the page gets hidden (visibilitychange, pagehide) and is usually bfcached."""
    await page.goto(f"{server.url}/p/blank")


async def set_hidden(page: Page, hidden: bool) -> None:
    await page.evaluate(
        """h => { Object.defineProperty(document, 'visibilityState', {value: h ? 'hidden' : 'visible',
                  configurable: true});
                  document.dispatchEvent(new Event('visibilitychange')); }""",
        hidden,
    )


def check_format(beacon: dict[str, Any]) -> PageView:
    """What the server accepts (its own decoder and limits), plus the snippet's promises."""
    pv = msgspec.convert(beacon, PageView)
    rows = decode_beacon(
        msgspec.json.encode(beacon),
        limits=Limits(),
        site=SiteRules(id=1),
        client=Client(user_agent=DESKTOP_UA),
        now_ms=int(time.time() * 1000),
    )
    assert len(rows.measurements) == len(beacon["metrics"])
    assert len(rows.errors) == len(beacon.get("errors", []))
    assert beacon["v"] == 1
    assert set(beacon) <= set(PageView.__struct_fields__)
    assert isinstance(beacon["ts"], int)
    assert beacon["ts"] > 1_600_000_000_000

    def no_nulls(x: Any) -> None:
        assert x is not None
        if isinstance(x, dict):
            for v in x.values():
                no_nulls(v)
        if isinstance(x, list):
            for v in x:
                no_nulls(v)

    no_nulls(beacon)
    for attr in beacon.get("attribution", {}).values():
        for k, v in attr.items():
            assert isinstance(v, str | int | float) or (k == "loaf" and isinstance(v, list)), (k, v)
    assert len(msgspec.json.encode(beacon)) < 16_384
    return pv


def near(a: float, b: float, tol: float) -> bool:
    return abs(a - b) <= tol


def assert_matches_web_vitals(beacon: dict[str, Any], wv: dict[str, Any], paint_tol: float = 1) -> None:
    m = beacon["metrics"]
    assert set(m) == set(wv) - {"url"}, (m, wv)
    for name in ("LCP", "FCP", "TTFB"):
        if name in wv:
            tol = 1 if name == "TTFB" else paint_tol
            assert near(m[name], wv[name]["value"], tol), (name, m[name], wv[name])
    if "CLS" in wv:
        assert near(m["CLS"], wv["CLS"]["value"], 0.001), (m["CLS"], wv["CLS"])
    if "INP" in wv:
        assert m["INP"] == wv["INP"]["value"], (m["INP"], wv["INP"])
    for name in ("LCP", "INP", "CLS"):
        if name in wv:
            assert wv[name]["nav"] == beacon["nav"]


# --- tests -------------------------------------------------------------------------------------


async def test_lcp_image_matches_web_vitals(page: Page, server: PageServer) -> None:
    await open_page(page, server, "lcp")
    await page.wait_for_function("(window.__wv.LCP || {}).url && window.__wv.TTFB")
    await leave(page, server)
    [beacon] = await posts(server, BEACON, page="lcp")
    [wv] = await posts(server, "/wv", page="lcp")
    check_format(beacon)
    assert beacon["nav"] == "navigate"
    assert beacon["url"] == f"{server.url}/p/lcp"
    assert_matches_web_vitals(beacon, wv)
    lcp, wlcp = beacon["attribution"]["LCP"], wv["LCP"]
    assert lcp["element"] == wlcp["target"] == "#hero-box>img.hero.main"
    assert lcp["url"] == wlcp["url"]
    assert "/img/hero.png" in lcp["url"]
    for key in ("ttfb", "loadDelay", "loadDuration", "renderDelay"):
        assert near(lcp[key], wlcp[key], 1), (key, lcp, wlcp)
    assert lcp["loadDuration"] >= 350  # the image is served 400 ms late
    assert near(
        lcp["ttfb"] + lcp["loadDelay"] + lcp["loadDuration"] + lcp["renderDelay"],
        beacon["metrics"]["LCP"],
        0.01,
    )
    ctx = beacon["context"]
    assert ctx["vw"] == 1280
    assert ctx["vh"] == 720
    assert ctx["dpr"] == 1
    assert isinstance(ctx.get("ect"), str)
    assert page.errors == []  # type: ignore[attr-defined]


@pytest.mark.parametrize("stop", ["click", "key", "hidden"])
async def test_lcp_stops_at_first_input_or_hidden(page: Page, server: PageServer, stop: str) -> None:
    await open_page(page, server, "late")
    await page.wait_for_function("window.__wv.LCP")
    if stop == "click":
        await page.click("#intro")
    elif stop == "key":
        await page.keyboard.press("x")
    else:
        await set_hidden(page, True)
        await set_hidden(page, False)
    await page.evaluate("addLate()")
    await page.wait_for_function(
        "document.getElementById('late') && document.getElementById('late').complete"
    )
    late_at = await page.evaluate("window.__lateAt")
    await page.wait_for_timeout(300)
    await leave(page, server)
    beacon = (await posts(server, BEACON, page="late"))[-1]
    wv = (await posts(server, "/wv", page="late"))[-1]
    check_format(beacon)
    assert_matches_web_vitals(beacon, wv)
    assert beacon["attribution"]["LCP"]["element"] == wv["LCP"]["target"] == "#intro"
    assert beacon["metrics"]["LCP"] < late_at


async def test_a_page_left_before_load_still_reports_ttfb(page: Page, server: PageServer) -> None:
    """web-vitals reports TTFB after the load event, so a visitor who gives up on a slow page
    reports none; fieldlab takes the navigation entry's responseStart when the page is left."""
    await page.goto(f"{server.url}/p/bounce", wait_until="commit")
    await page.wait_for_function("window.fieldlab && performance.getEntriesByType('paint').length > 0")
    assert await page.evaluate("document.readyState") != "complete"
    response_start = await page.evaluate("performance.getEntriesByType('navigation')[0].responseStart")
    await leave(page, server)
    beacon = (await posts(server, BEACON, page="bounce"))[-1]
    check_format(beacon)
    assert near(beacon["metrics"]["TTFB"], response_start, 1), (beacon["metrics"], response_start)
    assert beacon["metrics"]["FCP"] >= beacon["metrics"]["TTFB"]
    assert "LCP" in beacon["metrics"]


async def test_cls_takes_the_largest_session_window(page: Page, server: PageServer) -> None:
    await open_page(page, server, "cls")
    await page.wait_for_function("document.title == 'done'", timeout=10_000)
    shifts = await page.evaluate(
        """() => new Promise(r => new PerformanceObserver(l => r(l.getEntries().map(
             e => [e.startTime, e.value, e.hadRecentInput]))).observe({type: 'layout-shift', buffered: true}))"""
    )
    await leave(page, server)
    [beacon] = await posts(server, BEACON, page="cls")
    [wv] = await posts(server, "/wv", page="cls")
    check_format(beacon)
    assert_matches_web_vitals(beacon, wv)

    # Independent oracle: session windows (gap < 1 s, span < 5 s); the largest one wins.
    windows: list[list[float]] = []
    for start, value, recent in shifts:
        if recent:
            continue
        w = windows[-1] if windows else None
        if w and start - w[1] < 1000 and start - w[0] < 5000:
            w[1], w[2] = start, w[2] + value
        else:
            windows.append([start, start, value])
    assert len(windows) == 3, shifts
    assert near(beacon["metrics"]["CLS"], max(w[2] for w in windows), 0.0001)
    assert beacon["metrics"]["CLS"] < sum(w[2] for w in windows) - 0.001

    cls = beacon["attribution"]["CLS"]
    assert cls["target"] == wv["CLS"]["target"]
    assert cls["target"]
    assert near(cls["time"], wv["CLS"]["time"], 1)
    assert 1700 < cls["time"] < 2800  # the largest shift is in the second window
    assert 0 < cls["value"] <= beacon["metrics"]["CLS"]


async def test_inp_slow_click_and_key_match_web_vitals(page: Page, server: PageServer) -> None:
    await open_page(page, server, "inp")
    await page.click("#slow")
    await page.click(".quick")
    await page.wait_for_function("window.__wv.INP && window.__wv.INP.value >= 200")
    # web-vitals processes event entries in an idle callback; let it settle before leaving.
    await page.wait_for_timeout(300)
    await leave(page, server)
    [beacon] = await posts(server, BEACON, page="inp")
    [wv] = await posts(server, "/wv", page="inp")
    check_format(beacon)
    assert_matches_web_vitals(beacon, wv)
    inp = beacon["attribution"]["INP"]
    assert inp["target"] == wv["INP"]["target"] == "#slow"
    assert inp["type"] == wv["INP"]["type"] == "pointer"
    for key in ("inputDelay", "processing", "presentation", "time"):
        assert near(inp[key], wv["INP"][key], 0.01), (key, inp, wv["INP"])
    assert inp["processing"] >= 190
    assert near(inp["inputDelay"] + inp["processing"] + inp["presentation"], beacon["metrics"]["INP"], 8)
    loaf = inp["loaf"]
    assert 1 <= len(loaf) <= 3
    assert set(loaf[0]) == {"src", "invoker", "dur"}
    assert loaf[0]["dur"] >= 190, loaf
    assert "slow" in loaf[0]["invoker"], loaf


async def test_inp_fast_first_input(page: Page, server: PageServer) -> None:
    """Below the 40 ms threshold only the first-input entry is seen; web-vitals reports it."""
    await open_page(page, server, "inp")
    await page.click(".quick")
    await page.wait_for_function("window.__wv.INP")
    await page.wait_for_timeout(300)
    await leave(page, server)
    [beacon] = await posts(server, BEACON, page="inp")
    [wv] = await posts(server, "/wv", page="inp")
    assert_matches_web_vitals(beacon, wv)
    assert beacon["metrics"]["INP"] < 40
    assert beacon["attribution"]["INP"]["target"] == wv["INP"]["target"] == "html>body>button.btn.quick"


async def test_inp_keyboard(context: BrowserContext, server: PageServer) -> None:
    server.pages["keys"] = html(
        '<input id="field" class="in"><p id="out"></p><script>'
        "function busy(ms){var t=performance.now();while(performance.now()-t<ms){}}"
        "document.getElementById('field').addEventListener('keydown',function(){busy(250)});</script>"
    )
    page = await context.new_page()
    await open_page(page, server, "keys")
    await page.focus("#field")
    await page.keyboard.press("a")
    await page.wait_for_function("window.__wv.INP && window.__wv.INP.value >= 250")
    await page.wait_for_timeout(300)
    await leave(page, server)
    [beacon] = await posts(server, BEACON, page="keys")
    [wv] = await posts(server, "/wv", page="keys")
    check_format(beacon)
    assert_matches_web_vitals(beacon, wv)
    inp = beacon["attribution"]["INP"]
    assert inp["type"] == wv["INP"]["type"] == "keyboard"
    assert inp["target"] == wv["INP"]["target"] == "#field"


async def test_bfcache_restore_is_a_new_page_view(page: Page, server: PageServer) -> None:
    await open_page(page, server, "bfcache")
    await page.wait_for_function("window.__wv.LCP && window.__wv.TTFB")
    await leave(page, server)
    await page.go_back(wait_until="commit")
    restored = await page.wait_for_function(
        "window.__wv.FCP && window.__wv.FCP.nav == 'back-forward-cache' && window.__wv.LCP.nav == 'back-forward-cache'",
        timeout=5000,
    )
    assert restored, "the page was not restored from the back/forward cache"
    await page.click("#slow")
    await page.wait_for_function("window.__wv.INP && window.__wv.INP.nav == 'back-forward-cache'")
    await page.wait_for_timeout(300)
    await leave(page, server)
    first, second = await posts(server, BEACON, 2, page="bfcache")
    wv_first, wv_second = await posts(server, "/wv", 2, page="bfcache")
    for b in (first, second):
        check_format(b)
    assert first["nav"] == "navigate"
    assert second["nav"] == "back-forward-cache"
    assert first["id"] != second["id"]
    assert second["ts"] > first["ts"]
    assert_matches_web_vitals(first, wv_first)
    # After a restore FCP and LCP are "now" in the second animation frame. Both libraries read
    # performance.now() in their own rAF callback of the same frame; web-vitals' run first (its
    # listeners were added first), so fieldlab's reading is later by their callbacks' run time —
    # a few ms, more on a busy machine (seen: 8.3 ms). Neither value is "more right".
    assert_matches_web_vitals(second, wv_second, paint_tol=25)
    assert second["metrics"]["LCP"] >= wv_second["LCP"]["value"] - 1
    m = second["metrics"]
    assert m["TTFB"] == 0
    assert 0 < m["FCP"] < 500
    assert 0 < m["LCP"] < 500
    assert m["INP"] >= 120
    assert second["attribution"]["INP"]["target"] == "#slow"
    assert "LCP" not in second["attribution"]  # no LCP entry after a restore, only the frame time
    assert len(server.recorded(BEACON)) == 2  # hidden + pagehide for one view: one beacon


async def test_resend_with_same_id_when_values_change_after_hidden(page: Page, server: PageServer) -> None:
    await open_page(page, server, "inp", vitals=False)
    await page.wait_for_timeout(200)
    await set_hidden(page, True)
    [first] = await posts(server, BEACON, page="inp")
    assert "INP" not in first["metrics"]
    await set_hidden(page, True)  # nothing changed: nothing sent
    await set_hidden(page, False)
    await page.click("#slow")
    await page.wait_for_timeout(400)
    await set_hidden(page, True)
    _, second = await posts(server, BEACON, 2, page="inp")
    check_format(second)
    assert second["id"] == first["id"]
    assert second["metrics"]["INP"] >= 200
    assert second["metrics"]["LCP"] == first["metrics"]["LCP"]
    await page.wait_for_timeout(300)
    assert len(server.recorded(BEACON)) == 2


async def test_closing_the_tab_sends_the_beacon(context: BrowserContext, server: PageServer) -> None:
    page = await context.new_page()
    await open_page(page, server, "inp", vitals=False)
    await page.click("#slow")
    await page.wait_for_timeout(300)  # let the interaction paint
    await page.close()
    [beacon] = await posts(server, BEACON, page="inp")
    check_format(beacon)
    assert beacon["metrics"]["INP"] >= 200
    assert "LCP" in beacon["metrics"]


async def test_soft_navigation_starts_a_new_page_view(page: Page, server: PageServer) -> None:
    await open_page(page, server, "spa")
    await page.evaluate("window.fieldlab.page(location.pathname)")  # same URL: not a new view
    await page.click("#work")
    await page.wait_for_timeout(400)
    await page.click("#next")
    [hard] = await posts(server, BEACON, page="spa")  # sent at once, while the page is still visible
    check_format(hard)
    assert hard["nav"] == "navigate"
    assert hard["url"] == f"{server.url}/p/spa"
    assert hard["metrics"]["INP"] >= 150
    assert hard["attribution"]["INP"]["target"] == "#work"
    await page.click("#work")
    await page.wait_for_timeout(400)
    await leave(page, server)
    _, soft = await posts(server, BEACON, 2, page="spa")
    check_format(soft)
    assert soft["nav"] == "soft"
    assert soft["url"] == f"{server.url}/p/spa/next?x=1"
    assert soft["id"] != hard["id"]
    assert soft["ts"] > hard["ts"]
    assert set(soft["metrics"]) == {"INP", "CLS"}
    assert soft["metrics"]["INP"] >= 150
    assert soft["attribution"]["INP"]["target"] == "#work"


async def test_js_errors_are_reported(page: Page, server: PageServer) -> None:
    await open_page(page, server, "errors")
    await page.wait_for_function("document.title == 'done'")
    await leave(page, server)
    [beacon] = await posts(server, BEACON, page="errors")
    check_format(beacon)
    assert "errors" in beacon, server.posts
    errors = beacon["errors"]
    assert len(errors) == 10
    boom = errors[0]
    assert "boom" in boom["msg"]
    assert len(boom["msg"]) <= 1000
    assert len(boom["stack"]) <= 1000
    assert boom["src"] == f"{server.url}/p/errors"
    assert boom["line"] > 0
    assert boom["col"] > 0
    assert errors[1]["msg"] == "nope"
    assert "Error: nope" in errors[1]["stack"]
    assert errors[2] == {"msg": "plain string", "ts": errors[2]["ts"]}
    assert all("null" in e["msg"] for e in errors[3:])
    assert all(0 < e["ts"] < 5000 for e in errors)


async def test_never_throws_without_apis(context: BrowserContext, server: PageServer) -> None:
    server.pages["noapi"] = html(
        "<p>no APIs</p><script>(function w(){window.fieldlab?setTimeout(function(){throw new Error("
        "'page error')}):setTimeout(w,10)})()</script>",
        head="<script>delete window.PerformanceObserver; delete Navigator.prototype.sendBeacon;</script>",
        vitals=False,
    )
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    await open_page(page, server, "noapi", vitals=False)
    await page.wait_for_timeout(200)
    await leave(page, server)
    [beacon] = await posts(server, BEACON, page="noapi")
    check_format(beacon)
    assert errors == ["page error"]  # the page's own error only
    assert "TTFB" in beacon["metrics"]
    assert "FCP" not in beacon["metrics"]
    assert beacon["errors"][0]["msg"].endswith("page error")
    rec = server.recorded(BEACON)[0]
    assert rec.content_type == "text/plain"  # the fetch() fallback (sendBeacon adds ;charset=UTF-8)


async def test_fetch_fallback_when_send_beacon_refuses(context: BrowserContext, server: PageServer) -> None:
    server.pages["refuse"] = html(
        "<p>queue full</p>",
        head="<script>navigator.sendBeacon = function () { return false; };</script>",
        vitals=False,
    )
    page = await context.new_page()
    await open_page(page, server, "refuse", vitals=False)
    await leave(page, server)
    [rec] = await asyncio.to_thread(server.wait_for, BEACON)
    assert rec.content_type == "text/plain"
    assert rec.query == {"site": [SITE_KEY]}
    check_format(rec.json())


async def test_no_cookies_or_storage(context: BrowserContext, server: PageServer) -> None:
    server.pages["storage"] = html(
        '<button id="b">b</button><script>window.onerror=null;</script>',
        head="""<script>
        window.__used = [];
        ['getItem', 'setItem', 'removeItem', 'key', 'clear'].forEach(function (m) {
          var f = Storage.prototype[m];
          Storage.prototype[m] = function () { window.__used.push('storage.' + m); return f.apply(this, arguments); };
        });
        var d = Object.getOwnPropertyDescriptor(Document.prototype, 'cookie');
        Object.defineProperty(Document.prototype, 'cookie', {configurable: true,
          get: function () { window.__used.push('cookie.get'); return d.get.call(this); },
          set: function (v) { window.__used.push('cookie.set'); d.set.call(this, v); }});
        var o = indexedDB.open.bind(indexedDB);
        indexedDB.open = function () { window.__used.push('indexedDB'); return o.apply(null, arguments); };
        ['localStorage', 'sessionStorage'].forEach(function (k) {
          var g = Object.getOwnPropertyDescriptor(window, k).get;
          Object.defineProperty(window, k, {configurable: true,
            get: function () { window.__used.push(k); return g.call(window); }});
        });
        </script>""",
    )
    page = await context.new_page()
    await open_page(page, server, "storage")
    await page.click("#b")
    await page.wait_for_timeout(200)
    await page.evaluate("window.fieldlab.page('/p/storage/2')")  # flush while visible
    await set_hidden(page, True)
    await posts(server, BEACON, 2, page="storage")
    assert await page.evaluate("window.__used") == []
    assert await context.cookies() == []


async def test_sample_zero_sends_nothing(context: BrowserContext, server: PageServer) -> None:
    server.pages["sample0"] = html(
        '<button id="b">b</button>', vitals=False, tag=snippet_tag(**{"data-sample": "0"})
    )
    page = await context.new_page()
    await open_page(page, server, "sample0", vitals=False)
    await page.click("#b")
    await page.evaluate("window.fieldlab.page('/p/sample0/next')")
    await leave(page, server)
    await page.wait_for_timeout(700)
    assert server.recorded(BEACON) == []


async def test_endpoint_from_script_origin_and_overrides(context: BrowserContext, server: PageServer) -> None:
    other = server.url.replace("127.0.0.1", "localhost")  # same server, another origin
    server.pages["xorigin"] = html(
        "<p>x</p>",
        vitals=False,
        tag=f'<script async src="{other}/fieldlab.js" data-site="k 1" data-page-group="checkout"></script>',
    )
    server.pages["custom"] = html(
        "<p>y</p>", vitals=False, tag=snippet_tag(**{"data-endpoint": f"{server.url}/custom/collect"})
    )
    page = await context.new_page()
    await open_page(page, server, "xorigin", vitals=False)
    await open_page(page, server, "custom", vitals=False)
    await leave(page, server)
    [rec] = await asyncio.to_thread(server.wait_for, BEACON)
    assert rec.host == other.removeprefix("http://")
    assert rec.query == {"site": ["k 1"]}
    assert rec.json()["group"] == "checkout"
    [custom] = await asyncio.to_thread(server.wait_for, "/custom/collect")
    assert custom.query == {"site": [SITE_KEY]}
    assert "group" not in custom.json()
