"""decode_beacon: both wire formats to rows, and every way a body is refused (pure, no I/O)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.ingest.decode import BeaconRejected, Client, Limits, Rows, SiteRules, decode_beacon
from app.ingest.schemas import WEB_VITALS_ATTRIBUTION

NOW = 1_700_000_000_000
DAY = 86_400_000
SITE = SiteRules(
    id=7,
    page_groups=({"pattern": "/product/*", "group": "/product/:id"},),
    query_allowlist=("variant",),
)
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0.0.0 Safari/537.36"
)
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0"
SAFARI = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15"
)
BROWSER = Client(
    user_agent=CHROME, referer="https://shop.example/product/9?utm=x#top", origin="https://shop.example"
)
PV: dict[str, Any] = {"id": "pv-1", "url": "https://shop.example/a"}
WV: dict[str, Any] = {"name": "LCP", "value": 1200, "id": "v5-1"}


def decode(
    body: Any,
    *,
    limits: Limits | None = None,
    client: Client = BROWSER,
    site: SiteRules = SITE,
    now_ms: int = NOW,
) -> Rows:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return decode_beacon(raw, limits=limits or Limits(), site=site, client=client, now_ms=now_ms)


# --- fieldlab.js page views -----------------------------------------------------------------


def test_full_page_view_becomes_one_row_per_metric_and_error() -> None:
    ts = NOW - 60_000
    body = {
        "v": 1,
        "id": "pv.abc_123-x",
        "url": "https://user:secret@shop.example/product/123?email=a%40b.c&variant=red#reviews",
        "nav": "reload",
        "ts": ts,
        "metrics": {"LCP": 2100.5, "INP": 180, "CLS": 0.03, "FCP": 900, "TTFB": 120},
        "attribution": {
            "LCP": {"element": "#hero > img", "url": "https://cdn.example/hero.jpg", "renderDelay": 40.5},
            "INP": {"target": "button.buy", "type": "pointer", "frames": [{"dur": 52, "script": "app.js"}]},
        },
        "context": {"vw": 390, "vh": 844, "dm": 4, "ect": "4g", "dpr": 3},
        "errors": [
            {"msg": "TypeError: x is undefined", "src": "https://shop.example/app.js", "line": 10, "col": 5,
             "stack": "at f (app.js:10:5)", "ts": 1500},
            {"msg": "second"},
        ],
    }  # fmt: skip
    rows = decode(body, client=Client(user_agent=IPHONE))

    assert [m["metric"] for m in rows.measurements] == ["LCP", "INP", "CLS", "FCP", "TTFB"]
    lcp = rows.measurements[0]
    assert lcp == {
        "site_id": 7,
        "url": "https://shop.example/product/123?variant=red",
        "page_group": "/product/:id",
        "device": "mobile",
        "browser": "safari",
        "is_bot": False,
        "pageview_id": "pv.abc_123-x",
        "ts": ts,
        "received_ms": NOW,
        "nav": "reload",
        "connection": "4g",
        "metric": "LCP",
        "value": 2100.5,
        "attribution": {"element": "#hero > img", "url": "https://cdn.example/hero.jpg", "renderDelay": 40.5},
    }
    by_metric = {m["metric"]: m for m in rows.measurements}
    assert by_metric["INP"]["attribution"] == body["attribution"]["INP"]  # type: ignore[index]
    assert by_metric["CLS"]["value"] == 0.03
    assert by_metric["CLS"]["attribution"] is None
    assert all(isinstance(m["value"], float) for m in rows.measurements)
    for m in rows.measurements:  # everything but the metric itself is shared by the page view
        assert {k: v for k, v in m.items() if k not in ("metric", "value", "attribution")} == {
            k: v for k, v in lcp.items() if k not in ("metric", "value", "attribution")
        }

    assert len(rows.errors) == 2
    first, second = rows.errors
    assert first == {
        "site_id": 7,
        "pageview_id": "pv.abc_123-x",
        "seq": 0,
        "ts": ts + 1500,
        "message": "TypeError: x is undefined",
        "source": "https://shop.example/app.js",
        "line": 10,
        "col": 5,
        "stack": "at f (app.js:10:5)",
        "url": "https://shop.example/product/123?variant=red",
        "page_group": "/product/:id",
        "device": "mobile",
        "browser": "safari",
        "is_bot": False,
    }
    assert (second["seq"], second["ts"], second["message"], second["stack"]) == (1, ts, "second", "")


def test_page_view_defaults_and_group_override() -> None:
    rows = decode({**PV, "metrics": {"TTFB": 80}, "group": "Checkout"})
    (m,) = rows.measurements
    assert m["page_group"] == "Checkout"
    assert m["nav"] == "navigate"
    assert m["connection"] == "unknown"
    assert m["ts"] == NOW  # no ts: the server's clock
    assert m["device"] == "desktop"
    assert rows.errors == []


def test_page_view_without_metrics_gives_no_rows() -> None:
    assert decode(PV) == Rows()


def test_page_view_unknown_connection_and_viewport_only_device() -> None:
    rows = decode(
        {**PV, "metrics": {"LCP": 1}, "context": {"vw": 500, "ect": "5g"}},
        client=Client(user_agent="MyApp/1"),
    )
    (m,) = rows.measurements
    assert (m["device"], m["connection"], m["browser"]) == ("mobile", "unknown", "other")


def test_cls_is_not_bounded_by_the_millisecond_ceiling() -> None:
    (m,) = decode({**PV, "metrics": {"CLS": 3_700_000}}).measurements
    assert m["value"] == 3_700_000.0


def test_long_group_override_is_cut_to_the_column_size() -> None:
    (m,) = decode({**PV, "metrics": {"LCP": 1}, "group": "g" * 1000}).measurements
    assert m["page_group"] == "g" * 256


# --- timestamps -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ts", "stored"),
    [
        (NOW - 3 * DAY, NOW),  # a stale clock
        (NOW + 3 * DAY, NOW),  # a clock in the future
        (0, NOW),
        (10**16, NOW),
        (NOW - DAY, NOW - DAY),
        (NOW + DAY, NOW + DAY),
        (NOW - 2 * DAY, NOW - 2 * DAY),  # exactly max_age is still trusted
        (NOW - 2 * DAY - 1, NOW),
        (NOW + 2 * DAY + 1, NOW),
    ],
)
def test_timestamps_outside_max_age_are_clamped_to_now(ts: int, stored: int) -> None:
    rows = decode({**PV, "ts": ts, "metrics": {"LCP": 1}, "errors": [{"msg": "e", "ts": 10}]})
    assert rows.measurements[0]["ts"] == stored
    assert rows.measurements[0]["received_ms"] == NOW
    assert rows.errors[0]["ts"] == stored + 10


def test_max_age_comes_from_limits() -> None:
    limits = Limits(max_age_ms=1000)
    assert (
        decode({**PV, "ts": NOW - 1000, "metrics": {"LCP": 1}}, limits=limits).measurements[0]["ts"]
        == NOW - 1000
    )
    assert decode({**PV, "ts": NOW - 1001, "metrics": {"LCP": 1}}, limits=limits).measurements[0]["ts"] == NOW


# --- web-vitals Metric objects ----------------------------------------------------------------


def test_single_web_vitals_metric_with_url() -> None:
    body = {
        **WV,
        "url": "https://shop.example/product/55?session=abc#x",
        "navigationType": "back-forward-cache",
        "rating": "good",
        "delta": 1200,
        "entries": [{"name": "", "entryType": "largest-contentful-paint", "startTime": 1200}],
    }
    (m,) = decode(body).measurements
    assert m == {
        "site_id": 7,
        "url": "https://shop.example/product/55",
        "page_group": "/product/:id",
        "device": "desktop",
        "browser": "chrome",
        "is_bot": False,
        "pageview_id": "v5-1",
        "metric": "LCP",
        "value": 1200.0,
        "ts": NOW,
        "received_ms": NOW,
        "nav": "back-forward-cache",
        "connection": "unknown",
        "attribution": None,
    }


def test_web_vitals_array_gives_one_row_each() -> None:
    body = [
        {"name": "CLS", "value": 0.12, "id": "v5-a", "url": "https://shop.example/cart"},
        {"name": "INP", "value": 240, "id": "v5-b", "url": "https://shop.example/cart"},
        {"name": "TTFB", "value": 300, "id": "v5-c"},
    ]
    rows = decode(body)
    assert [(m["metric"], m["value"], m["pageview_id"]) for m in rows.measurements] == [
        ("CLS", 0.12, "v5-a"),
        ("INP", 240.0, "v5-b"),
        ("TTFB", 300.0, "v5-c"),
    ]
    assert [m["url"] for m in rows.measurements] == [
        "https://shop.example/cart",
        "https://shop.example/cart",
        "https://shop.example/product/9",  # no url: the Referer, without query and fragment
    ]
    assert rows.errors == []


def test_web_vitals_without_url_uses_referer() -> None:
    (m,) = decode(
        WV,
        client=Client(user_agent=CHROME, referer="https://shop.example/p/7?q=1", origin="https://o.example"),
    ).measurements
    assert m["url"] == "https://shop.example/p/7"
    assert m["page_group"] == "/p/:id"


def test_web_vitals_without_url_or_referer_uses_origin() -> None:
    (m,) = decode(WV, client=Client(user_agent=CHROME, origin="https://shop.example")).measurements
    assert m["url"] == "https://shop.example/"
    assert m["page_group"] == "/"


def test_web_vitals_url_field_wins_over_referer() -> None:
    (m,) = decode({**WV, "url": "https://shop.example/checkout"}).measurements
    assert m["url"] == "https://shop.example/checkout"


@pytest.mark.parametrize(("body", "path"), [(WV, "$.url"), ([WV, {**WV, "id": "v5-2"}], "$[0].url")])
def test_web_vitals_without_any_url_is_rejected(body: Any, path: str) -> None:
    with pytest.raises(BeaconRejected, match=r"Referer or Origin") as exc:
        decode(body, client=Client(user_agent=CHROME))
    assert path in str(exc.value)


def test_web_vitals_lcp_attribution_build_is_mapped_and_entries_dropped() -> None:
    attribution = {
        "target": "#hero>img",
        "url": "https://cdn.example/hero.jpg",
        "timeToFirstByte": 100,
        "resourceLoadDelay": 50.5,
        "resourceLoadDuration": 300,
        "elementRenderDelay": 20,
        "navigationEntry": {"name": "https://shop.example/", "entryType": "navigation", "duration": 900},
        "lcpResourceEntry": {"name": "https://cdn.example/hero.jpg", "entryType": "resource"},
        "lcpEntry": {"entryType": "largest-contentful-paint", "size": 12000},
    }
    (m,) = decode({**WV, "attribution": attribution}).measurements
    assert m["attribution"] == {
        "element": "#hero>img",
        "url": "https://cdn.example/hero.jpg",
        "ttfb": 100,
        "loadDelay": 50.5,
        "loadDuration": 300,
        "renderDelay": 20,
    }


@pytest.mark.parametrize("metric", sorted(WEB_VITALS_ATTRIBUTION))
def test_web_vitals_attribution_mapping_per_metric(metric: str) -> None:
    mapping = WEB_VITALS_ATTRIBUTION[metric]
    raw: dict[str, Any] = {theirs: f"v-{theirs}" if i % 2 else i + 0.5 for i, theirs in enumerate(mapping)}
    junk = {
        "navigationEntry": {"entryType": "navigation"},
        "longAnimationFrameEntries": [{"duration": 80}],
        "loadState": "complete",  # a scalar web-vitals sends that fieldlab does not report on
        "largestShiftEntry": None,
    }
    (m,) = decode({**WV, "name": metric, "value": 0.1, "attribution": {**raw, **junk}}).measurements
    assert m["attribution"] == {mapping[theirs]: value for theirs, value in raw.items()}
    assert "loadState" not in m["attribution"]


def test_web_vitals_attribution_non_scalars_and_booleans_are_dropped() -> None:
    body = {
        **WV,
        "name": "TTFB",
        "attribution": {"waitingDuration": 3, "dnsDuration": True, "requestDuration": {"x": 1}},
    }
    assert decode(body).measurements[0]["attribution"] == {"waiting": 3}


@pytest.mark.parametrize("attribution", [{}, {"navigationEntry": {"name": "x"}, "loadState": "complete"}])
def test_web_vitals_attribution_with_nothing_kept_is_none(attribution: dict[str, Any]) -> None:
    assert decode({**WV, "attribution": attribution}).measurements[0]["attribution"] is None


def case(case_id: str, *values: Any, bug: str | None = None) -> Any:
    """A parameter row; ``bug`` marks a known app bug as a strict xfail, so its fix is noticed."""
    marks = [pytest.mark.xfail(strict=True, reason=f"app bug: {bug}")] if bug else []
    return pytest.param(*values, id=case_id, marks=marks)


# --- rejections -----------------------------------------------------------------------------

LONG = "x" * 2049
MANY_METRICS = {"LCP": 1, "INP": 2, "CLS": 0.1}

# id, body, limits, client, text the message must contain
BAD = [
    case("not-json", b"{nope", None, BROWSER, "malformed JSON"),
    case("truncated-json", b'{"id": "a", "url": ', None, BROWSER, "malformed JSON"),
    case("empty", b"", None, BROWSER, "empty body"),
    case("whitespace", b"  \n\t", None, BROWSER, "empty body"),
    case("scalar-number", b"42", None, BROWSER, "$: expected a JSON object"),
    case("scalar-string", b'"hello"', None, BROWSER, "$: expected a JSON object"),
    case("scalar-null", b"null", None, BROWSER, "$: expected a JSON object"),
    case("scalar-bool", b"true", None, BROWSER, "$: expected a JSON object"),
    case("empty-array", b"[]", None, BROWSER, "empty array"),
    case("array-of-scalar", [WV, 3], None, BROWSER, "$[1]"),
    case("pv-missing-id", {"url": "https://shop.example/"}, None, BROWSER, "`id`"),
    case("pv-missing-url", {"id": "a"}, None, BROWSER, "`url`"),
    case("pv-unknown-metric", {**PV, "metrics": {"FID": 10}}, None, BROWSER, "$.metrics"),
    case("pv-string-value", {**PV, "metrics": {"LCP": "1200"}}, None, BROWSER, "$.metrics.LCP"),
    case("pv-bool-value", {**PV, "metrics": {"LCP": True}}, None, BROWSER, "$.metrics.LCP"),
    case("pv-negative", {**PV, "metrics": {"LCP": -1}}, None, BROWSER, "$.metrics.LCP"),
    case("pv-negative-cls", {**PV, "metrics": {"CLS": -0.01}}, None, BROWSER, "$.metrics.CLS"),
    case("pv-over-an-hour", {**PV, "metrics": {"LCP": 3_600_001}}, None, BROWSER, "$.metrics.LCP"),
    case("pv-inp-over-an-hour", {**PV, "metrics": {"INP": 3_600_000.5}}, None, BROWSER, "$.metrics.INP"),
    case("pv-unknown-sixth-metric", {**PV, "metrics": {**MANY_METRICS, "FID": 5}}, None, BROWSER, "$.metrics"),
    case("pv-too-many-errors", {**PV, "errors": [{"msg": "e"}] * 3}, Limits(max_errors=2), BROWSER, "$.errors"),
    case("pv-errors-not-list", {**PV, "errors": {"msg": "e"}}, None, BROWSER, "$.errors"),
    case("pv-long-url", {**PV, "url": "https://shop.example/" + LONG}, None, BROWSER, "$.url"),
    case("pv-long-attribution", {**PV, "attribution": {"LCP": {"element": LONG}}}, None, BROWSER,
     "$.attribution.LCP.element"),
    case("pv-long-attribution-in-list", {**PV, "attribution": {"INP": {"frames": [{"script": LONG}]}}}, None,
     BROWSER, "$.attribution.INP.frames[0].script"),
    case("pv-long-stack", {**PV, "errors": [{"msg": "ok"}, {"stack": LONG}]}, None, BROWSER, "$.errors[1].stack"),
    case("pv-long-message", {**PV, "errors": [{"msg": LONG}]}, None, BROWSER, "$.errors[0].msg"),
    case("pv-long-group", {**PV, "group": LONG}, None, BROWSER, "$.group"),
    case("pv-long-string-small-limit", {**PV, "url": "https://shop.example/abcdef"}, Limits(max_string=20), BROWSER,
     "$.url"),
    case("pv-too-many-attribution-keys", {**PV, "attribution": {"CLS": {f"k{i}": i for i in range(33)}}}, None,
     BROWSER, "$.attribution.CLS"),
    case("pv-attribution-keys-limit", {**PV, "attribution": {"LCP": {"a": 1, "b": 2}}}, Limits(max_attribution_keys=1),
     BROWSER, "$.attribution.LCP"),
    case("pv-bad-id", {**PV, "id": "has space"}, None, BROWSER, "$.id"),
    case("pv-id-too-long", {**PV, "id": "a" * 65}, None, BROWSER, "$.id"),
    case("pv-empty-id", {**PV, "id": ""}, None, BROWSER, "$.id"),
    case("pv-bad-nav", {**PV, "nav": "teleport"}, None, BROWSER, "$.nav"),
    case("pv-bad-version", {**PV, "v": 2}, None, BROWSER, "$.v"),
    case("pv-negative-ts", {**PV, "ts": -5}, None, BROWSER, "$.ts"),
    case("pv-bad-viewport", {**PV, "context": {"vw": -1}}, None, BROWSER, "$.context.vw"),
    case("pv-javascript-url", {**PV, "url": "javascript:alert(1)"}, None, BROWSER, "$.url"),
    case("pv-ftp-url", {**PV, "url": "ftp://shop.example/file"}, None, BROWSER, "$.url"),
    case("pv-data-url", {**PV, "url": "data:text/html,hi"}, None, BROWSER, "$.url"),
    case("pv-relative-url", {**PV, "url": "/product/1"}, None, BROWSER, "$.url"),
    case("pv-scheme-relative-url", {**PV, "url": "//shop.example/a"}, None, BROWSER, "$.url"),
    case("wv-unknown-metric", {**WV, "name": "FID"}, None, BROWSER, "$.name"),
    case("wv-string-value", {**WV, "value": "1200"}, None, BROWSER, "$.value"),
    case("wv-array-string-value", [WV, {**WV, "value": "x"}], None, BROWSER, "$[1].value"),
    case("wv-negative", {**WV, "value": -3}, None, BROWSER, "$.value"),
    case("wv-array-negative", [WV, {**WV, "value": -3}], None, BROWSER, "$[1].value"),
    case("wv-over-an-hour", {**WV, "name": "INP", "value": 3_600_001}, None, BROWSER, "$.value"),
    case("wv-too-many", [WV, WV, WV], Limits(max_metrics=2), BROWSER, "$: 3 metrics"),
    case("wv-bad-id", {**WV, "id": "v5/1"}, None, BROWSER, "$.id"),
    case("wv-array-bad-id", [WV, {**WV, "id": "a b"}], None, BROWSER, "$[1].id"),
    case("wv-bad-nav", {**WV, "navigationType": "warp"}, None, BROWSER, "$.navigationType"),
    case("wv-long-url", {**WV, "url": "https://shop.example/" + LONG}, None, BROWSER, "$.url"),
    case("wv-array-long-url", [WV, {**WV, "url": "https://shop.example/" + LONG}], None, BROWSER, "$[1].url"),
    case("wv-long-attribution", {**WV, "attribution": {"target": LONG}}, None, BROWSER, "$.attribution"),
    case("wv-javascript-url", {**WV, "url": "javascript:void(0)"}, None, BROWSER, "$.url"),
    case("wv-ftp-url", {**WV, "url": "ftp://shop.example/"}, None, BROWSER, "$.url"),
    case("wv-relative-url", {**WV, "url": "cart"}, None, BROWSER, "$.url"),
    case("wv-array-relative-url", [WV, {**WV, "url": "/cart"}], None, BROWSER, "$[1].url"),
    case("wv-bad-referer", WV, None, Client(user_agent=CHROME, referer="android-app://com.example/"), "$.url"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "limits", "client", "needle"), BAD)
def test_bad_bodies_are_rejected_naming_the_field(
    body: Any, limits: Limits | None, client: Client, needle: str
) -> None:
    with pytest.raises(BeaconRejected) as exc:
        decode(body, limits=limits, client=client)
    assert needle in str(exc.value)


INFINITE = [
    case("page-view", b'{"id":"a","url":"https://shop.example/","metrics":{"LCP":1e999}}', "$.metrics.LCP"),
    case(
        "web-vitals",
        b'{"name":"LCP","value":1e999,"id":"v1"}',
        "$.value",
    ),
    case(
        "web-vitals-array",
        b'[{"name":"LCP","value":1,"id":"v1"},{"name":"LCP","value":-1e999,"id":"v2"}]',
        "$[1]",
    ),
]


@pytest.mark.parametrize(("body", "needle"), INFINITE)
def test_infinite_numbers_are_rejected_naming_the_field(body: bytes, needle: str) -> None:
    """JSON has no inf; 1e999 is how one arrives. It must be a 400 naming the field, not a stored inf."""
    with pytest.raises(BeaconRejected) as exc:
        decode(body)
    assert needle in str(exc.value)
    assert "range" in str(exc.value)


@pytest.mark.parametrize("body", [{**PV, "url": "https://shop.example:99999/a", "metrics": {"LCP": 1}},
                                  {**PV, "url": "https://shop.example:abc/a", "metrics": {"LCP": 1}},
                                  {**WV, "url": "http://shop.example:70000/"}])  # fmt: skip
def test_bad_port_is_rejected(body: Any) -> None:
    with pytest.raises(BeaconRejected, match=r"\$\.url"):
        decode(body)


def test_long_referer_url_is_rejected_naming_the_url() -> None:
    client = Client(user_agent=CHROME, referer="https://shop.example/" + "a" * 3000)
    with pytest.raises(BeaconRejected, match=r"\$\.url: URL of \d+ characters"):
        decode(WV, client=client)


# --- bots -----------------------------------------------------------------------------------

BOTS = {
    "headless-chrome": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/130.0.0.0 Safari/537.36",
    "googlebot": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "curl": "curl/8.5.0",
    "empty": "",
    "lighthouse": "Mozilla/5.0 (Linux; Android 11; moto g power (2022)) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0.0.0 Mobile Safari/537.36 Chrome-Lighthouse",
}
HUMANS = {"chrome": CHROME, "firefox": FIREFOX, "safari": SAFARI, "iphone": IPHONE}


@pytest.mark.parametrize("ua", BOTS.values(), ids=BOTS.keys())
def test_bot_user_agents_are_tagged(ua: str) -> None:
    rows = decode({**PV, "metrics": {"LCP": 1}, "errors": [{"msg": "e"}]}, client=Client(user_agent=ua))
    assert rows.measurements[0]["is_bot"] is True
    assert rows.errors[0]["is_bot"] is True
    (wv,) = decode({**WV, "url": "https://shop.example/"}, client=Client(user_agent=ua)).measurements
    assert wv["is_bot"] is True


@pytest.mark.parametrize("ua", HUMANS.values(), ids=HUMANS.keys())
def test_real_browsers_are_not_bots(ua: str) -> None:
    rows = decode({**PV, "metrics": {"LCP": 1}, "errors": [{"msg": "e"}]}, client=Client(user_agent=ua))
    assert rows.measurements[0]["is_bot"] is False
    assert rows.errors[0]["is_bot"] is False
