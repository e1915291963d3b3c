"""Pure normalisation: stored URLs, page groups, device, browser, connection."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from app.ingest.decode import SiteRules
from app.ingest.normalise import (
    BadUrl,
    _rule_matches,
    browser_family,
    connection_type,
    default_page_group,
    device_class,
    grouped_by_rules,
    page_group,
    rule_pairs,
    strip_url,
    validate_rule_pattern,
)

UA = {
    "iphone": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Mobile/15E148 Safari/604.1",
    "iphone-chrome": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "CriOS/130.0.6723.90 Mobile/15E148 Safari/604.1",
    "iphone-firefox": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "FxiOS/132.0 Mobile/15E148 Safari/605.1.15",
    "android-phone": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0.0.0 Mobile Safari/537.36",
    "android-samsung": "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
    "android-tablet": "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0.0.0 Safari/537.36",
    "ipad": "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Mobile/15E148 Safari/604.1",
    "kindle": "Mozilla/5.0 (Linux; Android 9; KFTRWI) AppleWebKit/537.36 (KHTML, like Gecko) Silk/120.3.1 "
    "like Chrome/120.0.6099.230 Safari/537.36",
    "desktop-chrome": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0.0.0 Safari/537.36",
    "desktop-firefox": "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
    "desktop-safari": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15",
    "desktop-edge": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0.0.0 Safari/537.36 Edg/130.0.0.0",
    "desktop-opera": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0.0.0 Safari/537.36 OPR/115.0.0.0",
}


# --- strip_url ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "allow", "stored", "path"),
    [
        ("https://shop.example/a?email=x%40y.z&token=abc", (), "https://shop.example/a", "/a"),
        ("https://shop.example/a?q=shoes&utm_source=g&sid=1", ("q",), "https://shop.example/a?q=shoes", "/a"),
        ("https://shop.example/a?q=1&x=2&q=3", ("q",), "https://shop.example/a?q=1&q=3", "/a"),
        ("https://shop.example/a?page=&x=1", ("page",), "https://shop.example/a?page=", "/a"),
        ("https://shop.example/a?q=red+shoes", ("q",), "https://shop.example/a?q=red+shoes", "/a"),
        ("https://shop.example/a#section-2", (), "https://shop.example/a", "/a"),
        ("https://shop.example/a?q=1#frag", ("q",), "https://shop.example/a?q=1", "/a"),
        ("https://user:pass@shop.example/account", (), "https://shop.example/account", "/account"),
        ("https://user@shop.example:8443/x", (), "https://shop.example:8443/x", "/x"),
        ("http://localhost:3000/dev?debug=1", (), "http://localhost:3000/dev", "/dev"),
        ("http://shop.example:80/a", (), "http://shop.example:80/a", "/a"),
        ("https://Shop.EXAMPLE/Path/Case", (), "https://shop.example/Path/Case", "/Path/Case"),
        ("https://shop.example", (), "https://shop.example/", "/"),
        ("https://shop.example?x=1", (), "https://shop.example/", "/"),
        ("  https://shop.example/trim  ", (), "https://shop.example/trim", "/trim"),
        ("https://shop.example/p/1/", (), "https://shop.example/p/1/", "/p/1/"),
    ],
)
def test_strip_url(url: str, allow: tuple[str, ...], stored: str, path: str) -> None:
    assert strip_url(url, allow) == (stored, path)


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "ftp://shop.example/file",
        "data:text/html,hi",
        "file:///etc/passwd",
        "/relative/path",
        "relative",
        "//shop.example/scheme-relative",
        "https://",
        "https:///no-host",
        "",
    ],
)
def test_strip_url_refuses_non_absolute_http(url: str) -> None:
    with pytest.raises(BadUrl, match="absolute http"):
        strip_url(url)


def test_strip_url_refuses_unparseable() -> None:
    with pytest.raises(BadUrl):
        strip_url("http://[::1/broken")


# --- default page groups ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "group"),
    [
        ("/", "/"),
        ("", "/"),
        ("/product/123", "/product/:id"),
        ("/product/456/", "/product/:id"),
        ("/product/123/reviews/9", "/product/:id/reviews/:id"),
        ("/orders/2024-01-15", "/orders/:id"),
        ("/price/1.5", "/price/:id"),
        ("/u/550e8400-e29b-41d4-a716-446655440000", "/u/:id"),
        ("/u/550E8400E29B41D4A716446655440000", "/u/:id"),
        ("/commit/3f9a2b7c", "/commit/:id"),
        ("/commit/3f9a2b7c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a", "/commit/:id"),
        ("/s/abcDEF123ghiJKL456", "/s/:id"),
        ("/reset/Zm9vYmFyXzEyMzQ1Njc4OQ", "/reset/:id"),
        ("/international-shipping", "/international-shipping"),
        ("/about-us", "/about-us"),
        ("/v2", "/v2"),
        ("/v2/items/42", "/v2/items/:id"),
        ("/api/v1/products", "/api/v1/products"),
        ("/abcdefghijklmnopqrstuvwxyz", "/abcdefghijklmnopqrstuvwxyz"),  # long, but a word: no digit
        ("/deadbeef", "/deadbeef"),  # hex letters only: a word
        ("/order/a1b2", "/order/a1b2"),  # short: not an id
        ("/static/app.3f9a2b7c.js", "/static/app.3f9a2b7c.js"),
        ("/a//b", "/a/b"),
    ],
)
def test_default_page_group(path: str, group: str) -> None:
    assert default_page_group(path) == group
    assert page_group(path) == group  # no rules, no override: the default


# --- site rules ---------------------------------------------------------------------------

RULES = (
    {"pattern": "/product/special", "group": "Special offer"},
    {"pattern": "/product/*", "group": "Product"},
    {"pattern": "/product/*/reviews", "group": "Reviews"},  # not shadowed: "*" is one segment
    {"pattern": "/u/:name/settings"},
    {"pattern": "/blog/**", "group": "Blog"},
    {"pattern": "/docs/**"},
    {"pattern": "", "group": "ignored: empty pattern"},
)


@pytest.mark.parametrize(
    ("path", "group"),
    [
        ("/product/special", "Special offer"),  # first match wins over the wildcard below it
        ("/product/123", "Product"),
        ("/product/abc", "Product"),
        ("/product/123/reviews", "Reviews"),
        ("/product", "/product"),  # '*' needs a segment; default grouping then
        ("/product/1/2", "/product/:id/:id"),
        ("/u/jo/settings", "/u/:name/settings"),  # no group: the pattern is the group
        ("/u/jo", "/u/jo"),
        ("/blog", "Blog"),  # '**' matches nothing too
        ("/blog/2024/01/hello", "Blog"),
        ("/docs/a/b", "/docs/**"),
        ("/blogs/x", "/blogs/x"),
        ("/", "/"),
        ("/other/77", "/other/:id"),
    ],
)
def test_page_group_with_site_rules(path: str, group: str) -> None:
    assert page_group(path, RULES) == group


def test_first_matching_rule_wins() -> None:
    rules = [{"pattern": "/a/*", "group": "first"}, {"pattern": "/a/b", "group": "second"}]
    assert page_group("/a/b", rules) == "first"
    assert page_group("/a/b", list(reversed(rules))) == "second"


def test_empty_group_falls_back_to_pattern() -> None:
    assert page_group("/x/1", [{"pattern": "/x/*", "group": ""}]) == "/x/*"


@pytest.mark.parametrize("path", ["/product/special", "/blog/x", "/nothing/123", "/"])
def test_override_wins_over_rules_and_default(path: str) -> None:
    assert page_group(path, RULES, "Landing") == "Landing"


def test_empty_override_is_ignored() -> None:
    assert page_group("/product/9", RULES, "") == "Product"
    assert page_group("/product/9", RULES, None) == "Product"


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("/", None),
        ("/a", None),
        ("/product/*", None),
        ("/u/:name/settings", None),
        ("/blog/**", None),
        ("/blog/**/", None),
        ("product/*", "must start with '/'"),
        ("", "must start with '/'"),
        ("*", "must start with '/'"),
        ("/**/x", "'**' may only be the last segment"),
        ("/a/**/b/**", "'**' may only be the last segment"),
    ],
)
def test_validate_rule_pattern(pattern: str, reason: str | None) -> None:
    assert validate_rule_pattern(pattern) == reason


# --- device, browser, connection ------------------------------------------------------------


@pytest.mark.parametrize(
    ("ua", "device"),
    [
        ("iphone", "mobile"),
        ("iphone-chrome", "mobile"),
        ("iphone-firefox", "mobile"),
        ("android-phone", "mobile"),
        ("android-samsung", "mobile"),
        ("android-tablet", "tablet"),
        ("ipad", "tablet"),
        ("kindle", "tablet"),
        ("desktop-chrome", "desktop"),
        ("desktop-firefox", "desktop"),
        ("desktop-safari", "desktop"),
        ("desktop-edge", "desktop"),
    ],
)
def test_device_class_from_user_agent(ua: str, device: str) -> None:
    assert device_class(UA[ua]) == device
    # a known UA is believed over the viewport (desktop windows can be narrow)
    assert device_class(UA[ua], 320) == device
    assert device_class(UA[ua], 2560) == device


@pytest.mark.parametrize(
    ("width", "device"),
    [(None, "desktop"), (0, "desktop"), (320, "mobile"), (767, "mobile"), (768, "tablet"),
     (1099, "tablet"), (1100, "desktop"), (2560, "desktop")],
)  # fmt: skip
@pytest.mark.parametrize("ua", ["MyApp/1.0", ""])
def test_device_class_unknown_user_agent_goes_by_viewport(ua: str, width: int | None, device: str) -> None:
    assert device_class(ua, width) == device


@pytest.mark.parametrize(
    ("ua", "family"),
    [
        ("desktop-chrome", "chrome"),
        ("android-phone", "chrome"),
        ("iphone-chrome", "chrome"),
        ("desktop-firefox", "firefox"),
        ("iphone-firefox", "firefox"),
        ("desktop-safari", "safari"),
        ("iphone", "safari"),
        ("ipad", "safari"),
        ("desktop-edge", "edge"),
        ("desktop-opera", "opera"),
        ("android-samsung", "samsung"),
    ],
)
def test_browser_family(ua: str, family: str) -> None:
    assert browser_family(UA[ua]) == family


@pytest.mark.parametrize("ua", ["", "curl/8.5.0", "MyApp/1.0"])
def test_browser_family_other(ua: str) -> None:
    assert browser_family(ua) == "other"


@pytest.mark.parametrize(
    ("ect", "stored"),
    [("slow-2g", "slow-2g"), ("2g", "2g"), ("3g", "3g"), ("4g", "4g"), ("5g", "unknown"), ("wifi", "unknown"),
     ("4G", "unknown"), ("", "unknown"), (None, "unknown")],
)  # fmt: skip
def test_connection_type(ect: str | None, stored: str) -> None:
    assert connection_type(ect) == stored


@pytest.mark.parametrize("url", ["https://shop.example:99999/", "https://shop.example:port/"])
def test_strip_url_refuses_bad_port(url: str) -> None:
    with pytest.raises(BadUrl):
        strip_url(url)


def test_strip_url_keeps_ipv6_brackets() -> None:
    assert strip_url("http://[::1]:8080/a?x=1") == ("http://[::1]:8080/a", "/a")


def test_cubot_phones_are_not_bots() -> None:
    from app.ingest.normalise import is_bot

    ua = "Mozilla/5.0 (Linux; Android 12; CUBOT X50) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36"
    assert not is_bot(ua)
    assert is_bot("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)")


def test_fieldlab_lab_runs_are_kept_out_of_field_data() -> None:
    """The probes' browsers (flows) and Lighthouse say so in their user agents; a lab page view
    of a page that carries the snippet must not count as a real user's."""
    from app.ingest.normalise import is_bot
    from probes.throttling import DEVICES

    for device in DEVICES.values():
        ua = device.context_options("131")["user_agent"]
        assert "Headless" not in ua
        assert is_bot(ua), ua
    lighthouse = ("Mozilla/5.0 (Linux; Android 11; moto g power (2022)) AppleWebKit/537.36 (KHTML, like Gecko) "
                  "Chrome/131.0.0.0 Mobile Safari/537.36 Chrome-Lighthouse")  # fmt: skip
    assert is_bot(lighthouse)


def _uncached_page_group(path: str, rules: Sequence[dict[str, str]]) -> str:
    """The rule walk as written before results were memoised: the reference for the cache."""
    for rule in rules:
        pattern = rule.get("pattern", "")
        if pattern and _rule_matches(pattern, path):
            return rule.get("group") or pattern
    return default_page_group(path)


def test_memoised_page_groups_match_the_plain_rule_walk() -> None:
    paths = ["/product/special", "/product/9", "/product/9/reviews", "/u/x/settings", "/blog", "/docs/a",
             "/a/b", "/x/1", "/", "/nothing/123", "/product"]  # fmt: skip
    rule_sets = [RULES, [{"pattern": "/a/*", "group": "first"}, {"pattern": "/a/b", "group": "second"}],
                 [{"pattern": "/x/*", "group": ""}], []]  # fmt: skip
    for _ in range(2):  # the second round is answered from the cache
        for rules in rule_sets:
            pairs = rule_pairs(rules)
            for path in paths:
                assert grouped_by_rules(path, pairs) == _uncached_page_group(path, rules)
                assert page_group(path, rules) == _uncached_page_group(path, rules)
    # Same path, changed rules: a different key, never the stale answer.
    assert grouped_by_rules("/a/b", rule_pairs([{"pattern": "/a/b", "group": "new"}])) == "new"


def test_site_rules_carry_their_rules_in_the_cached_form() -> None:
    rules = SiteRules(id=1, page_groups=tuple(RULES))
    assert rules.group_rules == rule_pairs(RULES)
    assert rules == SiteRules(id=1, page_groups=tuple(RULES))
