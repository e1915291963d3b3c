"""``evaluate()``: every kind of budget, each verdict (pass, warn, fail, insufficient-data) with
its actual value, limit and margin; aggregation over runs; overrides; purity."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from app.budgets.evaluate import Budgets, Data, FieldStat, evaluate, field_requests, judge
from app.budgets.source import parse_text
from app.budgets.spec import Spec, load_spec
from app.budgets.verdict import Verdict


def spec(yaml_text: str) -> Budgets:
    return Budgets(spec=load_spec(parse_text(yaml_text, "b.yml")))


def by_id(verdicts: list[Verdict]) -> dict[str, Verdict]:
    out = {v.budget_id: v for v in verdicts}
    assert len(out) == len(verdicts), "budget ids must be unique"
    return out


# --- judging -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "minimum", "expected"),
    [
        (100.0, False, ("pass", 300.0, 200.0)),
        (250.0, False, ("warn", 200.0, -50.0)),
        (200.0, False, ("pass", 300.0, 100.0)),  # at the warn level is still within it
        (301.0, False, ("fail", 300.0, -1.0)),
        (0.95, True, ("pass", 0.5, 0.45)),
        (0.6, True, ("warn", 0.8, -0.2)),
        (0.4, True, ("fail", 0.5, -0.1)),
    ],
)
def test_judge_bands(value: float, minimum: bool, expected: tuple[str, float, float]) -> None:
    warn, fail = (0.8, 0.5) if minimum else (200.0, 300.0)
    status, limit, margin = judge(value, warn=warn, fail=fail, minimum=minimum)
    assert (status, limit) == expected[:2]
    assert margin == pytest.approx(expected[2])


# --- field -----------------------------------------------------------------------------------

FIELD = """
defaults: {window: 7d, min_samples: 100}
budgets:
  - metric: field:LCP
    page_group: product
    device: mobile
    warn: 2000
    fail: 2500
  - metric: field:INP
    stat: p95
    page_group: "*"
    fail: 300
    overrides:
      - {page_group: search, fail: 500}
      - {page_group: admin, off: true}
  - metric: field:CLS
    fail: 0.1
    window: 24h
    min_samples: 1000
  - metric: field:TTFB
    fail: 800
"""


def stat(metric: str, group: str | None, p75: float, count: int = 500, **kw: Any) -> FieldStat:
    values = {"p50": p75 * 0.8, "p75": p75, "p90": p75 * 1.2, "p95": p75 * 1.5}
    return FieldStat(metric=metric, window_s=kw.pop("window_s", 604800), count=count, values=values,
                     page_group=group, **kw)  # fmt: skip


def test_field_budgets() -> None:
    stats = [
        stat("LCP", "product", 2200, device="mobile"),
        stat("LCP", "product", 9999, device="desktop"),  # another device: ignored
        stat("INP", "search", 300),  # p95 450: within the search override (500)
        stat("INP", "checkout", 180),  # p95 270: pass
        stat("INP", "home", 250),  # p95 375: fail
        stat("INP", "admin", 900),  # switched off
        stat("CLS", None, 0.05, count=40, window_s=86400),  # too few samples
    ]
    v = by_id(evaluate(Data(field=stats), spec(FIELD)))
    lcp = v["field:LCP:p75:product:mobile"]
    assert (lcp.status, lcp.actual, lcp.limit, lcp.margin, lcp.samples, lcp.unit) == (
        "warn",
        2200,
        2000,
        -200,
        500,
        "ms",
    )
    assert v["field:INP:p95:*:all@search"].status == "pass"
    assert v["field:INP:p95:*:all@search"].limit == 500
    assert v["field:INP:p95:*:all@checkout"].margin == pytest.approx(30)
    home = v["field:INP:p95:*:all@home"]
    assert (home.status, home.actual, home.limit) == ("fail", 375, 300)
    assert not any(k.endswith("@admin") for k in v)
    cls = v["field:CLS:p75:all:all"]
    assert (cls.status, cls.actual, cls.samples) == ("insufficient-data", 0.05, 40)
    assert "1000 needed" in cls.detail
    ttfb = v["field:TTFB:p75:all:all"]
    assert (ttfb.status, ttfb.samples, ttfb.actual) == ("insufficient-data", 0, None)


def test_field_budgets_need_field_data() -> None:
    assert evaluate(Data(lighthouse=[]), spec(FIELD)) == []  # not measured here: no verdicts


def test_field_requests_list_what_the_server_must_query() -> None:
    budgets = spec(FIELD).spec
    assert isinstance(budgets, Spec)
    assert field_requests(budgets) == [
        ("LCP", "product", "mobile", 604800), ("INP", "*", None, 604800), ("CLS", None, None, 86400),
        ("TTFB", None, None, 604800),
    ]  # fmt: skip


# --- lab flows -----------------------------------------------------------------------------


def flow(duration: float, *, lcp: float = 1000, checkout_ok: bool = True, base: str = "https://shop.example",
         script: int = 100_000, third: int = 5_000, inp: float | None = 80) -> dict[str, Any]:  # fmt: skip
    def resources(script_bytes: int) -> dict[str, Any]:
        return {"by_type": {"script": {"count": 2, "bytes": script_bytes}, "image": {"count": 3, "bytes": 50_000}},
                "total_count": 6, "total_bytes": script_bytes + 60_000, "third_party_count": 1,
                "third_party_bytes": third}  # fmt: skip

    steps = [
        {"name": "home", "status": "passed", "duration_ms": duration / 2, "resources": resources(script),
         "navigations": [{"url": "/", "kind": "navigation", "vitals": {"LCP": lcp, "CLS": 0.01, "INP": None}}]},
        {"name": "checkout", "status": "passed" if checkout_ok else "failed", "duration_ms": duration / 2,
         "resources": resources(0),
         "navigations": [{"url": "/", "kind": "timespan", "vitals": {"CLS": 0.2, "INP": inp}},
                         {"url": "/checkout", "kind": "navigation", "vitals": {"LCP": lcp / 2, "CLS": 0.0}}]},
    ]  # fmt: skip
    status = "passed" if checkout_ok else "failed"
    return {"status": status, "base_url": base, "duration_ms": duration + 500, "steps": steps}


FLOWS = """
defaults: {aggregation: median}
budgets:
  - {metric: "lab:step-duration", step: checkout, warn: 1000, fail: 1500}
  - {metric: "lab:step-duration", fail: 5000}
  - {metric: "lab:LCP", fail: 1500}
  - {metric: "lab:LCP", step: checkout, fail: 400, aggregation: optimistic}
  - {metric: "lab:CLS", step: checkout, fail: 0.1}
  - {metric: "lab:INP", fail: 200, aggregation: pessimistic}
  - {metric: "lab:TBT", fail: 200}
  - {metric: "lab:bytes:script", fail: 150000}
  - {metric: "lab:bytes", fail: 1000000}
  - {metric: "lab:requests:image", fail: 5}
  - {metric: "lab:third-party-bytes", fail: 8000, aggregation: median-run}
  - {metric: "lab:requests", fail: 100, min_runs: 3}
"""


def test_flow_budgets() -> None:
    runs = [
        flow(1800, lcp=1200, inp=90),
        flow(2600, lcp=1700, inp=250, third=9000),
        flow(2000, lcp=1400, inp=120),
    ]
    v = by_id(evaluate(Data(flows=runs), spec(FLOWS)))
    at = "@flow:https://shop.example"
    step = v[f"lab:step-duration:checkout{at}"]  # median of 900, 1300, 1000
    assert (step.status, step.actual, step.limit, step.margin, step.samples) == ("pass", 1000, 1500, 500, 3)
    assert "median of 3 run(s): 900, 1300, 1000" in step.detail
    whole = v[f"lab:step-duration:all{at}"]
    assert (whole.actual, whole.status) == (2000, "pass")
    assert v[f"lab:LCP:all{at}"].actual == 1400  # worst document of the flow, median over runs
    assert v[f"lab:LCP:all{at}"].status == "pass"
    checkout_lcp = v[f"lab:LCP:checkout{at}"]  # optimistic: the best run (600)
    assert (checkout_lcp.actual, checkout_lcp.status, checkout_lcp.margin) == (600, "fail", -200)
    assert v[f"lab:CLS:checkout{at}"].actual == 0.2  # the step's timespan shift counts
    inp = v[f"lab:INP:all{at}"]  # pessimistic: the worst run
    assert (inp.actual, inp.status) == (250, "fail")
    assert not any(k.startswith("lab:TBT") for k in v)  # flows cannot measure TBT
    assert v[f"lab:bytes:script:all{at}"].actual == 100_000
    assert v[f"lab:bytes:all{at}"].actual == 220_000
    assert v[f"lab:requests:image:all{at}"].actual == 6
    assert v[f"lab:requests:image:all{at}"].status == "fail"
    third = v[f"lab:third-party-bytes:all{at}"]  # median run by duration is the 2000 ms one
    assert (third.actual, third.samples, third.status) == (10_000, 1, "fail")
    assert v[f"lab:requests:all{at}"].status == "pass"


def test_flow_runs_that_fail_give_insufficient_data() -> None:
    runs = [flow(1000, checkout_ok=False), flow(1000, checkout_ok=False)]
    v = by_id(evaluate(Data(flows=runs), spec(FLOWS)))
    step = v["lab:step-duration:checkout@flow:https://shop.example"]
    assert (step.status, step.actual, step.samples) == ("insufficient-data", None, 0)
    assert "2 of 2 run(s) gave no value" in step.detail
    assert v["lab:requests:all@flow:https://shop.example"].status == "insufficient-data"  # min_runs 3
    assert by_id(evaluate(Data(flows=[]), spec(FLOWS)))["lab:bytes:all@flow"].status == "insufficient-data"


# --- Lighthouse ----------------------------------------------------------------------------


def lhr(url: str, perf: float, lcp: float, tbt: float = 100, script: int = 200_000) -> dict[str, Any]:
    return {
        "finalUrl": url, "lighthouseVersion": "12.2.3",
        "categories": {"performance": {"score": perf}, "seo": {"score": None}},
        "audits": {
            "largest-contentful-paint": {"numericValue": lcp, "numericUnit": "millisecond", "score": 0.5},
            "total-blocking-time": {"numericValue": tbt, "numericUnit": "millisecond"},
            "first-contentful-paint": {"numericValue": lcp / 2}, "interactive": {"numericValue": lcp * 2},
            "total-byte-weight": {"numericValue": script + 1000, "numericUnit": "byte"},
            "uses-http2": {"score": 0},
            "resource-summary": {"details": {"items": [
                {"resourceType": "total", "requestCount": 9, "transferSize": script + 1000},
                {"resourceType": "script", "requestCount": 4, "transferSize": script},
                {"resourceType": "third-party", "requestCount": 0, "transferSize": 0}]}},
        },
    }  # fmt: skip


LIGHTHOUSE = """
budgets:
  - {metric: "lighthouse:category:performance", warn: 0.9, fail: 0.8}
  - {metric: "lighthouse:category:seo", fail: 0.9}
  - {metric: "lighthouse:audit:total-byte-weight", fail: 250000, url: "/a$"}
  - {metric: "lighthouse:score:uses-http2", fail: 1}
  - {metric: "lab:TBT", fail: 150, aggregation: optimistic, overrides: [{url: "/b$", fail: 1000}]}
  - {metric: "lab:bytes:script", fail: 300000, overrides: [{url: "/b$", off: true}]}
  - {metric: "lab:third-party-requests", fail: 0}
  - {metric: "lab:INP", fail: 200}
  - {metric: "lab:LCP", step: home, fail: 1}
"""


def test_lighthouse_budgets() -> None:
    a, b = "https://s.example/a", "https://s.example/b"
    reports = [lhr(a, 0.92, 2000, tbt=300), lhr(a, 0.85, 2500, tbt=200), lhr(a, 0.79, 3000, tbt=250),
               lhr(b, 0.5, 900, tbt=900, script=900_000)]  # fmt: skip
    v = by_id(evaluate(Data(lighthouse=reports), spec(LIGHTHOUSE)))
    perf_a = v[f"lighthouse:category:performance:all@lighthouse:{a}"]  # median of 0.92 0.85 0.79
    assert (perf_a.status, perf_a.actual, perf_a.limit, perf_a.unit) == ("warn", 0.85, 0.9, "")
    assert perf_a.margin == pytest.approx(-0.05)
    assert v[f"lighthouse:category:performance:all@lighthouse:{b}"].status == "fail"
    assert v[f"lighthouse:category:seo:all@lighthouse:{a}"].status == "insufficient-data"  # score null
    weight = v[f"lighthouse:audit:total-byte-weight:all:/a$@lighthouse:{a}"]
    assert (weight.actual, weight.status, weight.unit) == (201_000, "pass", "B")
    assert not any(k.startswith("lighthouse:audit:total-byte-weight") and k.endswith(b) for k in v)
    assert v[f"lighthouse:score:uses-http2:all@lighthouse:{b}"].status == "fail"
    tbt = v[f"lab:TBT:all@lighthouse:{a}"]  # optimistic: the smallest TBT
    assert (tbt.actual, tbt.status, tbt.margin) == (200, "fail", -50)
    assert v[f"lab:TBT:all@lighthouse:{b}"].status == "pass"  # overridden to 1000
    assert v[f"lab:bytes:script:all@lighthouse:{a}"].status == "pass"
    assert f"lab:bytes:script:all@lighthouse:{b}" not in v  # switched off for /b
    assert v[f"lab:third-party-requests:all@lighthouse:{a}"].actual == 0
    assert not any(k.startswith(("lab:INP", "lab:LCP:home")) for k in v)  # no INP or steps in LH


def test_median_run_picks_the_representative_report() -> None:
    a = "https://s.example/a"
    reports = [lhr(a, 0.9, 1000), lhr(a, 0.5, 2000), lhr(a, 0.7, 5000)]
    budgets = spec(
        'budgets: [{metric: "lighthouse:category:performance", fail: 0.6, aggregation: median-run}]'
    )
    [verdict] = evaluate(Data(lighthouse=reports), budgets)
    assert (verdict.actual, verdict.samples, verdict.status) == (0.5, 1, "fail")  # FCP/TTI median is run 2


def test_lhci_configs_become_verdicts() -> None:
    a = "https://s.example/a"
    reports = [lhr(a, 0.9, 1000), lhr(a, 0.7, 2000)]
    options = {"assertions": {
        "categories:performance": ["warn", {"minScore": 0.95}], "largest-contentful-paint": ["error", {"maxNumericValue": 1500}],
        "uses-http2": "error", "total-blocking-time": ["error", {"maxNumericValue": 500}],
    }}  # fmt: skip
    v = by_id(evaluate(Data(lighthouse=reports), Budgets(lhci=options)))
    perf = v[f"lhci:categories.performance:minScore@{a}"]  # optimistic by default: 0.9
    assert (perf.status, perf.actual, perf.limit) == ("warn", 0.9, 0.95)
    assert perf.margin == pytest.approx(-0.05)
    lcp = v[f"lhci:largest-contentful-paint:maxNumericValue@{a}"]
    assert (lcp.status, lcp.actual, lcp.margin) == ("pass", 1000, 500)
    assert v[f"lhci:uses-http2:minScore@{a}"].status == "fail"
    assert v[f"lhci:total-blocking-time:maxNumericValue@{a}"].status == "pass"
    assert evaluate(Data(flows=[]), Budgets(lhci=options)) == []  # no reports were measured


def test_evaluate_is_pure() -> None:
    reports = [lhr("https://s.example/a", 0.9, 1000), lhr("https://s.example/a", 0.8, 1100)]
    runs = [flow(1000), flow(1200)]
    data = Data(
        lighthouse=copy.deepcopy(reports), flows=copy.deepcopy(runs), field=[stat("LCP", "product", 1)]
    )
    for budgets in (spec(LIGHTHOUSE), spec(FLOWS), spec(FIELD)):
        first = evaluate(data, budgets)
        assert first
        assert first == evaluate(data, budgets)
    assert data.lighthouse == reports
    assert data.flows == runs
