"""Dashboard view helpers: number formats, ratings, sparklines, page-group ordering, views."""

from __future__ import annotations

import pytest
from litestar.exceptions import HTTPException

from app.field.rollups import DAY
from app.ui import format
from app.ui.data import parse_view


def test_values_and_ratings_follow_the_web_vitals_thresholds() -> None:
    assert format.value("LCP", 2500) == "2.50 s"
    assert format.value("INP", 199.6) == "200 ms"
    assert format.value("CLS", 0.1) == "0.100"
    assert format.value("LCP", None) == format.NO_VALUE
    assert [format.rating_of("LCP", v) for v in (2500, 2500.1, 4000, 4000.1, None)] == [
        "good", "needs_improvement", "needs_improvement", "poor", "none"]  # fmt: skip
    assert format.rating_of("CLS", 0.26) == "poor"


def test_sparkline_scales_to_the_poor_threshold_and_skips_gaps() -> None:
    points = format.sparkline("LCP", [1000.0, None, 4000.0], width=100, height=28)
    pairs = [tuple(map(float, p.split(","))) for p in points.split()]
    assert [x for x, _ in pairs] == [0.0, 100.0]
    assert pairs[1][1] == pytest.approx(2.0)  # 4000 ms is the top of the scale
    assert pairs[0][1] > pairs[1][1]
    assert format.sparkline("LCP", [1000.0]) == ""


def test_worst_first_ranks_by_the_vital_furthest_past_good() -> None:
    rows = [
        {"group": "/a", "views": 5, "LCP": 2000.0, "INP": 100.0, "CLS": 0.05},
        {"group": "/b", "views": 9, "LCP": 2000.0, "INP": 600.0, "CLS": 0.05},  # INP 3x good
        {"group": "/c", "views": 1, "LCP": 5000.0, "INP": None, "CLS": 0.05},  # LCP 2x good
    ]
    assert [r["group"] for r in format.sort_groups(rows, "worst", True)] == ["/b", "/c", "/a"]
    assert [r["group"] for r in format.sort_groups(rows, "INP", False)] == ["/a", "/b", "/c"]
    assert [r["group"] for r in format.sort_groups(rows, "views", True)] == ["/b", "/a", "/c"]


def test_views_parse_ranges_and_keep_filters_in_the_url() -> None:
    now = 1_800_000_000_000
    view = parse_view({"range": "30d", "device": "mobile", "group": "/cart", "metric": "INP"}, now=now)
    assert view.until_ms - view.since_ms == 30 * DAY
    assert view.bucket == "day"
    assert view.query() == {"range": "30d", "group": "/cart", "device": "mobile", "metric": "INP"}
    assert parse_view({"range": "24h"}, now=now).bucket == "hour"
    custom = parse_view({"range": "custom", "since": "2026-11-01", "until": "2026-11-02"}, now=now)
    assert custom.until_ms - custom.since_ms == 2 * DAY
    assert custom.query()["until"] == "2026-11-02"
    for bad, field in (({"range": "1y"}, "range:"), ({"range": "custom", "since": "2026-11-01"}, "since:"),
                       ({"metric": "FID"}, "metric:")):  # fmt: skip
        with pytest.raises(HTTPException) as err:
            parse_view(bad, now=now)
        assert err.value.status_code == 400
        assert str(err.value.detail).startswith(field)


def test_a_change_is_signed_coloured_and_not_read_below_the_sketch_resolution() -> None:
    assert format.change("LCP", 2490.0, 2586.0) == ("+96 ms (+4 %)", "poor")
    assert format.change("INP", 300.0, 240.0) == ("\u2212" + "60 ms (\u221220 %)", "good")
    assert format.change("CLS", 0.0, 0.05) == ("+0.050", "poor")  # no percentage of nothing
    # Rollup p75s are each within ~1 % of the exact one: closer than 2 % is no readable change.
    assert format.change("FCP", 1580.0, 1580.0) == ("within \u00b12 %", "muted")
    assert format.change("FCP", 1580.0, 1605.0) == ("within \u00b12 %", "muted")
    assert format.change("FCP", 1580.0, 1620.0)[1] == "poor"
    assert format.change("LCP", None, 2500.0) == ("\u2013", "")


def test_a_budget_amount_is_shown_in_its_unit() -> None:
    assert (format.amount(3150.0, "ms"), format.amount(25_000.0, "bytes"), format.amount(81_408.0, "MiB")) == (
        "3.15 s", "24.4 KB", "81,408 MiB",
    )  # fmt: skip
    assert (format.amount(0.116, ""), format.amount(0.93, "score"), format.amount(None, "ms")) == (
        "0.116",
        "0.93 score",
        "\u2013",
    )


def test_a_schedule_reads_as_people_say_it() -> None:
    assert [format.schedule(s, None) for s in (300, 3600, 7200, 86_400, 90, 45)] == [
        "every 5 min", "every 1 h", "every 2 h", "every 1 d", "every 90 s", "every 45 s",
    ]  # fmt: skip
    assert format.schedule(None, "0 * * * *") == "cron 0 * * * *"
    assert format.schedule(None, None) == "manual"
