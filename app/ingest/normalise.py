"""Pure normalisation of what a beacon says: stored URL, page group, device, browser, bot.

All functions are plain and I/O-free so they are tested directly.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

# --- URLs --------------------------------------------------------------------------------


class BadUrl(ValueError):
    pass


# Pages repeat: the URL and page-group results are memoised (bounded), which saves the URL
# parsing and the id regexes on most beacons. Allowlists must be hashable (SiteRules holds tuples).
@lru_cache(maxsize=2048)
def strip_url(url: str, allowlist: Sequence[str] = ()) -> tuple[str, str]:
    """Return (stored URL, path). Fragments always go; query parameters go unless allowlisted,
    because query strings carry emails, tokens and session ids that must not be stored."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port  # parsed lazily: a bad port ("99999", "abc") raises here
    except ValueError as exc:
        raise BadUrl(str(exc)) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadUrl("must be an absolute http(s) URL")
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k in allowlist]
    path = parts.path or "/"
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    netloc = host if port is None else f"{host}:{port}"  # drops user:password@
    return urlunsplit((parts.scheme, netloc, path, urlencode(kept), "")), path


# --- page groups -------------------------------------------------------------------------

_UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")
_HEX = re.compile(r"^[0-9a-fA-F]{8,}$")
_NUMERIC = re.compile(r"^\d+([.,-]\d+)*$")
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,}$")


def _is_id(segment: str) -> bool:
    if _NUMERIC.match(segment) or _UUID.match(segment):
        return True
    has_digit = any(c.isdigit() for c in segment)
    # Hex hashes and long random tokens, but not long words like "international-shipping".
    return has_digit and (bool(_HEX.match(segment)) or bool(_TOKEN.match(segment)))


@lru_cache(maxsize=2048)
def default_page_group(path: str) -> str:
    """Collapse ids and hashes so /product/123 and /product/456 are one group: /product/:id."""
    segments = [s for s in path.split("/") if s]
    if not segments:
        return "/"
    return "/" + "/".join(":id" if _is_id(s) else s for s in segments)


def _rule_matches(pattern: str, path: str) -> bool:
    want = [s for s in pattern.split("/") if s]
    have = [s for s in path.split("/") if s]
    for i, part in enumerate(want):
        if part == "**":  # the rest of the path, including nothing
            return True
        if i >= len(have):
            return False
        if part == "*" or part.startswith(":"):
            continue
        if part != have[i]:
            return False
    return len(want) == len(have)


def page_group(path: str, rules: Sequence[dict[str, str]] = (), override: str | None = None) -> str:
    """Page-group of a path: the page's own override, else the first matching site rule (its
    ``group``, or the pattern itself), else the default id-collapsing."""
    if override:
        return override
    return grouped_by_rules(path, rule_pairs(rules))


def rule_pairs(rules: Sequence[dict[str, str]]) -> tuple[tuple[str, str], ...]:
    """Site rules as hashable (pattern, group) pairs, the form ``grouped_by_rules`` caches on."""
    return tuple((rule.get("pattern", ""), rule.get("group") or "") for rule in rules)


# Matching splits the path and every pattern; a site's pages repeat, so results are memoised
# per (path, rules): the rules are part of the key, so an edited rule set is never served stale.
@lru_cache(maxsize=4096)
def grouped_by_rules(path: str, rules: tuple[tuple[str, str], ...]) -> str:
    """``page_group`` without an override, for rules given as ``rule_pairs``."""
    for pattern, group in rules:
        if pattern and _rule_matches(pattern, path):
            return group or pattern
    return default_page_group(path)


def validate_rule_pattern(pattern: str) -> str | None:
    """None when the pattern is usable, else the reason."""
    if not pattern.startswith("/"):
        return "must start with '/'"
    parts = [s for s in pattern.split("/") if s]
    if "**" in parts[:-1]:
        return "'**' may only be the last segment"
    return None


# --- user agent ---------------------------------------------------------------------------

# "(?<!cu)bot": CUBOT is a phone brand, not a crawler.
_BOT = re.compile(
    r"(?<!cu)bot|crawl|spider|slurp|headless|lighthouse|pagespeed|phantomjs|puppeteer|playwright|selenium|synthetic|"
    r"webdriver|python|curl|wget|httpclient|go-http-client|java/|okhttp|axios|node-fetch|preview",
    re.IGNORECASE,
)
_TABLET = re.compile(r"ipad|tablet|kindle|silk|playbook|(android(?!.*mobile))", re.IGNORECASE)
_MOBILE = re.compile(r"mobi|iphone|ipod|windows phone|blackberry|opera mini", re.IGNORECASE)
_BROWSERS = (
    ("edge", re.compile(r"Edg(e|A|iOS)?/")),
    ("opera", re.compile(r"OPR/|Opera")),
    ("samsung", re.compile(r"SamsungBrowser/")),
    ("firefox", re.compile(r"Firefox/|FxiOS/")),
    ("chrome", re.compile(r"Chrome/|CriOS/")),
    ("safari", re.compile(r"Safari/")),
)


# The user-agent classifiers are regex scans (~40 us a beacon together) and real traffic has
# few distinct user agents: results are memoised, in bounded caches.
_UA_CACHE = 4096


@lru_cache(maxsize=_UA_CACHE)
def is_bot(user_agent: str) -> bool:
    """Crawlers, headless browsers and HTTP libraries: tagged and kept out of field figures."""
    return not user_agent or bool(_BOT.search(user_agent))


@lru_cache(maxsize=_UA_CACHE)
def device_class(user_agent: str, viewport_width: int | None = None) -> str:
    if _TABLET.search(user_agent):
        return "tablet"
    if _MOBILE.search(user_agent):
        return "mobile"
    if "Mozilla" not in user_agent and viewport_width:  # no usable UA: go by the viewport
        if viewport_width < 768:
            return "mobile"
        if viewport_width < 1100:
            return "tablet"
    return "desktop"


@lru_cache(maxsize=_UA_CACHE)
def browser_family(user_agent: str) -> str:
    for name, pattern in _BROWSERS:
        if pattern.search(user_agent):
            return name
    return "other"


_CONNECTIONS = frozenset({"slow-2g", "2g", "3g", "4g"})


def connection_type(effective_type: str | None) -> str:
    return effective_type if effective_type in _CONNECTIONS else "unknown"
