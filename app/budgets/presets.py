"""The assertion presets of Lighthouse CI 0.14.0 (``lighthouse:all``, ``lighthouse:recommended``,
``lighthouse:no-pwa``) as data.

The audit lists are what @lhci/utils 0.14.0 ships; ``tests/unit/test_budgets_lhci.py`` compares
them with the installed package so an upgrade that changes them is noticed. Order matters only
for the order of results, never for verdicts.
"""

from __future__ import annotations

import copy
from typing import Any

# Audits that lighthouse:all switches off: navigation-mode n/a, diagnostics, invisible data.
_ALL_OFF = [
    "interaction-to-next-paint",
    "uses-responsive-images-snapshot",
    "work-during-interaction",
    "critical-request-chains",
    "final-screenshot",
    "js-libraries",
    "largest-contentful-paint-element",
    "layout-shifts",
    "main-thread-tasks",
    "network-requests",
    "network-rtt",
    "network-server-latency",
    "resource-summary",
    "screenshot-thumbnails",
    "script-treemap-data",
    "third-party-summary",
    "total-blocking-time",
    "user-timings",
    "diagnostics",
    "metrics",
]

# Everything else lighthouse:all asserts at level error with the default (minScore 0.9).
_ALL_ERROR = [
    "aria-allowed-attr",
    "aria-allowed-role",
    "aria-command-name",
    "aria-conditional-attr",
    "aria-deprecated-role",
    "aria-dialog-name",
    "aria-hidden-body",
    "aria-hidden-focus",
    "aria-input-field-name",
    "aria-meter-name",
    "aria-progressbar-name",
    "aria-prohibited-attr",
    "aria-required-attr",
    "aria-required-children",
    "aria-required-parent",
    "aria-roles",
    "aria-text",
    "aria-toggle-field-name",
    "aria-tooltip-name",
    "aria-treeitem-name",
    "aria-valid-attr-value",
    "aria-valid-attr",
    "bf-cache",
    "bootup-time",
    "button-name",
    "color-contrast",
    "crawlable-anchors",
    "csp-xss",
    "cumulative-layout-shift",
    "definition-list",
    "document-title",
    "dom-size",
    "duplicate-id-aria",
    "duplicated-javascript",
    "efficient-animated-content",
    "empty-heading",
    "errors-in-console",
    "first-contentful-paint",
    "first-meaningful-paint",
    "font-display",
    "font-size",
    "form-field-multiple-labels",
    "frame-title",
    "geolocation-on-start",
    "heading-order",
    "html-has-lang",
    "html-lang-valid",
    "html-xml-lang-mismatch",
    "http-status-code",
    "identical-links-same-purpose",
    "image-alt",
    "image-aspect-ratio",
    "image-redundant-alt",
    "image-size-responsive",
    "input-button-name",
    "input-image-alt",
    "inspector-issues",
    "is-crawlable",
    "is-on-https",
    "label-content-name-mismatch",
    "landmark-one-main",
    "largest-contentful-paint",
    "lcp-lazy-loaded",
    "legacy-javascript",
    "link-in-text-block",
    "link-name",
    "link-text",
    "long-tasks",
    "mainthread-work-breakdown",
    "max-potential-fid",
    "meta-description",
    "meta-refresh",
    "meta-viewport",
    "modern-image-formats",
    "no-document-write",
    "non-composited-animations",
    "notification-on-start",
    "object-alt",
    "offscreen-images",
    "paste-preventing-inputs",
    "prioritize-lcp-image",
    "redirects-http",
    "render-blocking-resources",
    "robots-txt",
    "select-name",
    "server-response-time",
    "skip-link",
    "speed-index",
    "table-duplicate-name",
    "table-fake-caption",
    "target-size",
    "td-has-header",
    "td-headers-attr",
    "th-has-data-cells",
    "third-party-cookies",
    "third-party-facades",
    "total-byte-weight",
    "unminified-css",
    "unminified-javascript",
    "unsized-images",
    "unused-css-rules",
    "unused-javascript",
    "uses-http2",
    "uses-long-cache-ttl",
    "uses-optimized-images",
    "uses-passive-event-listeners",
    "uses-rel-preconnect",
    "uses-responsive-images",
    "uses-text-compression",
    "valid-lang",
    "valid-source-maps",
    "video-caption",
    "accesskeys",
    "bypass",
    "canonical",
    "charset",
    "deprecations",
    "dlitem",
    "doctype",
    "hreflang",
    "interactive",
    "label",
    "list",
    "listitem",
    "redirects",
    "tabindex",
    "viewport",
]

# lighthouse:recommended on top of all: flaky metrics warn; audits whose score is flaky but
# whose list of offenders is not are judged by maxLength 0; a few opinionated ones warn or off.
_RECOMMENDED: dict[str, tuple[str, dict[str, Any]]] = {
    **{a: ("warn", {}) for a in ["bootup-time", "cumulative-layout-shift", "first-contentful-paint", "first-meaningful-paint", "largest-contentful-paint", "mainthread-work-breakdown", "max-potential-fid", "speed-index", "interactive"]},
    **{a: ("warn", {"maxLength": 0}) for a in ("duplicated-javascript", "legacy-javascript")},
    **{a: ("error", {"maxLength": 0}) for a in ["efficient-animated-content", "offscreen-images", "unminified-css", "unminified-javascript", "unused-css-rules", "unused-javascript", "uses-optimized-images", "uses-rel-preconnect", "uses-responsive-images", "uses-text-compression"]},
    "uses-http2": ("off", {}),
    "long-tasks": ("off", {}),
    "dom-size": ("warn", {}),
    "is-on-https": ("warn", {}),
    "modern-image-formats": ("warn", {"maxLength": 0}),
    "render-blocking-resources": ("warn", {"maxLength": 0}),
    "server-response-time": ("warn", {}),
    "uses-long-cache-ttl": ("warn", {"maxLength": 0}),
}  # fmt: skip


def _all() -> dict[str, Any]:
    return {a: ["off", {}] for a in _ALL_OFF} | {a: ["error", {}] for a in _ALL_ERROR}


def _recommended() -> dict[str, Any]:
    return _all() | {a: [level, dict(opts)] for a, (level, opts) in _RECOMMENDED.items()}


def _no_pwa() -> dict[str, Any]:
    # The PWA audits are gone from Lighthouse 12; the preset still switches these two off.
    return _recommended() | {"is-on-https": "off", "viewport": "off"}


PRESETS = {"lighthouse:all": _all, "lighthouse:recommended": _recommended, "lighthouse:no-pwa": _no_pwa}


def preset_assertions(name: str) -> dict[str, Any]:
    """A fresh copy of a preset's ``assertions`` (callers merge into it)."""
    return copy.deepcopy(PRESETS[name]())


def known_audits() -> set[str]:
    """Audit ids lighthouse:all names; LHCI says "not a known audit" for others that did not run."""
    return set(_ALL_OFF) | set(_ALL_ERROR)
