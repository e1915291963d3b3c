"""Pure pieces of the lab half: per-step vitals from collector snapshots, parties, resources."""

from __future__ import annotations

import pytest

from probes.collect import Resources, site
from probes.vitals import Snapshot, cls, inp, step_vitals


def test_cls_takes_the_largest_session_window() -> None:
    assert cls([]) == 0
    # Two windows: [0.1, 0.1] (gap < 1 s) = 0.2 and, after a 1.5 s gap, [0.15] alone.
    assert cls([(100, 0.1), (900, 0.1), (2400, 0.15)]) == pytest.approx(0.2)
    # A window never spans more than 5 s, even with small gaps.
    shifts = [(t, 0.05) for t in range(0, 7000, 500)]
    assert cls(shifts) == pytest.approx(0.5)
    # Only the shifts inside the window count.
    assert cls([(100, 0.3), (5000, 0.05)], start=1000) == pytest.approx(0.05)


def test_inp_is_the_98th_percentile_like_web_vitals() -> None:
    assert inp([], 0) is None
    assert inp([], 3) == 16.0  # interactions, none over the 16 ms threshold: an upper bound
    few = [(10.0, 80.0, 1), (20.0, 200.0, 2), (30.0, 120.0, 3)]
    assert inp(few, 3) == 200
    many = [(float(i), float(i), i) for i in range(1, 121)]
    assert inp(many, 120) == 118  # 120 interactions: skip the 2 longest
    assert inp(few, 3, start=15, end=25) == 200
    assert inp(few, 3, start=25) == 120


def snap(doc: str, now: float, **kw: object) -> Snapshot:
    return Snapshot(doc=doc, url=f"http://t/{doc}", now=now, **kw)  # type: ignore[arg-type]


def test_step_vitals_navigation_and_timespan() -> None:
    # The step starts on document A (loaded earlier), clicks (an interaction and a shift in
    # the step), navigates to B, which loads and shifts.
    a_start = snap(
        "a", 1000, ttfb=5, fcp=50, lcp=80, shifts=[(200, 0.3)], interactions=[(100, 40, 1)], count=1
    )
    a_final = snap(
        "a", 1500, ttfb=5, fcp=50, lcp=80, shifts=[(200, 0.3), (1200, 0.02)],
        interactions=[(100, 40, 1), (1100, 180, 2)], count=2,
    )  # fmt: skip
    b_end = snap("b", 700, ttfb=12, fcp=90, lcp=300, shifts=[(400, 0.1)], count=0)
    a_nav, b_nav = step_vitals(a_start, [a_final], b_end)
    assert a_nav.kind == "timespan"
    assert a_nav.vitals == {"CLS": 0.02, "INP": 180.0}  # only what happened during the step
    assert a_nav.interactions == 1
    assert b_nav.kind == "navigation"
    assert b_nav.vitals == {"TTFB": 12, "FCP": 90, "LCP": 300, "CLS": 0.1, "INP": None}


def test_step_vitals_quiet_timespan_is_left_out() -> None:
    a = snap("a", 1000, fcp=50, count=1, interactions=[(100, 40, 1)])
    assert step_vitals(a, [], snap("a", 2000, fcp=50, count=1, interactions=[(100, 40, 1)])) == []
    assert step_vitals(None, [], None) == []
    (only,) = step_vitals(None, [], snap("b", 10, ttfb=1))
    assert only.kind == "navigation"


@pytest.mark.parametrize(
    ("host", "party"),
    [
        ("www.shop.example", "shop.example"),
        ("cdn.shop.example", "shop.example"),
        ("static.shop.co.uk", "shop.co.uk"),
        ("a.b.example.com.au", "example.com.au"),
        ("127.0.0.1", "127.0.0.1"),
        ("localhost", "localhost"),
        ("[::1]", "[::1]"),
        ("Example.COM.", "example.com"),
    ],
)
def test_site_is_the_registrable_domain(host: str, party: str) -> None:
    assert site(host) == party


def test_resources_totals_and_third_party_share() -> None:
    r = Resources()
    r.add("document", 1000, None)
    r.add("script", 3000, "cdn.other.example")
    r.add("script", 0, None)
    assert r.by_type["script"] == {"count": 2, "bytes": 3000}
    assert (r.total_count, r.total_bytes) == (3, 4000)
    assert (r.third_party_count, r.third_party_bytes, r.third_party_share) == (1, 3000, 0.75)
    assert r.third_party_hosts == ["cdn.other.example"]
