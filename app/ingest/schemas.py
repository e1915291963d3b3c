"""Wire formats the beacon endpoint accepts, as msgspec Structs.

Two formats:

* ``PageView`` — fieldlab.js's own: one object per page view with all its metrics, their
  attribution, context and JS errors. Re-sent with the same ``id`` when values change.
* ``WebVitalsMetric`` — Google web-vitals' ``Metric`` object (one, or an array), so a site
  already calling ``sendBeacon(url, JSON.stringify(metric))`` can point it at fieldlab as-is.

Static bounds (finite, non-negative, ranges, enums) are in the types; limits an operator may
tune (string length, counts) are checked after decoding against Settings, see ``decode.py``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

METRICS = ("LCP", "INP", "CLS", "FCP", "TTFB")
MetricName = Literal["LCP", "INP", "CLS", "FCP", "TTFB"]
NavType = Literal["navigate", "reload", "back-forward", "back-forward-cache", "prerender", "restore", "soft"]
# An hour is far beyond any real LCP/INP; bounding values also rules out inf and NaN.
Millis = Annotated[float, Meta(ge=0, le=3_600_000)]
# msgspec decodes 1e999 to inf; the bound turns that into a validation error naming the field.
Finite = Annotated[float, Meta(ge=-1e12, le=1e15)]
PageViewId = Annotated[str, Meta(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
AttrValue = str | Finite | bool | list[dict[str, str | Finite]]


class Context(msgspec.Struct, omit_defaults=True):
    vw: Annotated[int, Meta(ge=0, le=100_000)] | None = None  # viewport width, CSS px
    vh: Annotated[int, Meta(ge=0, le=100_000)] | None = None
    dm: Annotated[float, Meta(ge=0, le=1024)] | None = None  # navigator.deviceMemory, GiB
    ect: str | None = None  # navigator.connection.effectiveType
    dpr: Annotated[float, Meta(ge=0, le=16)] | None = None


class JsErrorIn(msgspec.Struct, omit_defaults=True):
    msg: str = ""
    src: str = ""
    line: Annotated[int, Meta(ge=0, le=10_000_000)] = 0
    col: Annotated[int, Meta(ge=0, le=10_000_000)] = 0
    stack: str = ""
    ts: Finite | None = None  # ms since page-view start


class Metrics(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    """Metric values of one page view: ms, except CLS (unitless). A Struct rather than a map so
    a bad value is reported by name (``$.metrics.LCP``) and an unknown metric is refused."""

    LCP: Finite | None = None
    INP: Finite | None = None
    CLS: Finite | None = None
    FCP: Finite | None = None
    TTFB: Finite | None = None


Attribution = dict[str, AttrValue]


class Attributions(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    LCP: Attribution | None = None
    INP: Attribution | None = None
    CLS: Attribution | None = None
    FCP: Attribution | None = None
    TTFB: Attribution | None = None


class PageView(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    """fieldlab.js's page-view beacon, format version 1. Unknown fields are refused: the
    snippet and the server ship together, so one is a typo or another format."""

    id: PageViewId
    url: str
    metrics: Metrics = msgspec.field(default_factory=Metrics)
    nav: NavType = "navigate"
    ts: Annotated[int, Meta(ge=0)] | None = None  # epoch ms of page-view start
    v: Literal[1] = 1
    attribution: Attributions = msgspec.field(default_factory=Attributions)
    context: Context = msgspec.field(default_factory=Context)
    group: str | None = None  # data-page-group override
    errors: list[JsErrorIn] = []


class WebVitalsMetric(msgspec.Struct):
    """Google web-vitals ``Metric`` (v3-v6). Unknown fields (``entries`` …) are ignored."""

    name: MetricName
    value: Finite
    id: PageViewId
    navigationType: NavType = "navigate"
    rating: str | None = None
    delta: Finite | None = None
    url: str | None = None  # not part of web-vitals; fieldlab accepts it when added
    attribution: dict[str, Any] | None = None


# web-vitals attribution field -> fieldlab's attribution key, per metric.
WEB_VITALS_ATTRIBUTION: dict[str, dict[str, str]] = {
    "LCP": {
        "target": "element",
        "url": "url",
        "timeToFirstByte": "ttfb",
        "resourceLoadDelay": "loadDelay",
        "resourceLoadDuration": "loadDuration",
        "elementRenderDelay": "renderDelay",
    },
    "INP": {
        "interactionTarget": "target",
        "interactionType": "type",
        "interactionTime": "time",
        "inputDelay": "inputDelay",
        "processingDuration": "processing",
        "presentationDelay": "presentation",
    },
    "CLS": {"largestShiftTarget": "target", "largestShiftTime": "time", "largestShiftValue": "value"},
    "FCP": {"timeToFirstByte": "ttfb", "firstByteToFCP": "firstByteToFCP"},
    "TTFB": {
        "waitingDuration": "waiting",
        "dnsDuration": "dns",
        "connectionDuration": "connection",
        "requestDuration": "request",
    },
}
