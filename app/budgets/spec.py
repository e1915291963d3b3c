"""fieldlab's budget file (YAML): field, lab-flow and Lighthouse budgets in one place.

```yaml
version: 1
defaults: {aggregation: median, window: 7d, min_samples: 100}
budgets:
  - metric: field:LCP          # p75 LCP of real users on mobile product pages
    stat: p75
    page_group: product
    device: mobile
    warn: 2000
    fail: 2500
  - metric: lab:step-duration  # a flow step
    step: checkout
    fail: 3000
  - metric: lab:bytes:script   # flows and Lighthouse runs
    fail: 300000
    overrides:
      - {url: "/admin/", fail: 600000}
  - metric: lighthouse:category:performance
    warn: 0.95
    fail: 0.9
```

Limits are maxima except for scores (``lighthouse:category:*``, ``lighthouse:score:*``), which
are minima. Units: milliseconds, bytes, counts; CLS and scores are unitless.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from app.budgets.source import Document, convert

Aggregation = Literal["median", "optimistic", "pessimistic", "median-run"]
Stat = Literal["p50", "p75", "p90", "p95"]
Device = Literal["mobile", "tablet", "desktop"]

FIELD_METRICS = ("LCP", "INP", "CLS", "FCP", "TTFB")
LAB_VITALS = ("LCP", "CLS", "INP", "TBT", "FCP", "TTFB")
RESOURCE_TYPES = ("document", "script", "stylesheet", "image", "font", "xhr", "media", "other")
LAB_COUNTERS = ("bytes", "requests")
LAB_OTHER = ("step-duration", "third-party-bytes", "third-party-requests")
_WINDOW = re.compile(r"^(\d+)\s*(m|h|d)$")
_WINDOW_S = {"m": 60, "h": 3600, "d": 86400}
MAX_BUDGETS = 1000  # a generated file with more than this is a mistake, not a budget


class Override(msgspec.Struct, forbid_unknown_fields=True):
    """Different levels (or ``off``) for the URLs matching ``url`` (a regex searched in the URL)
    or for the page group ``page_group``. The first matching override wins."""

    url: str | None = None
    page_group: str | None = None
    warn: float | None = None
    fail: float | None = None
    off: bool = False


class Budget(msgspec.Struct, forbid_unknown_fields=True):
    metric: str
    warn: float | None = None
    fail: float | None = None
    id: str | None = None
    name: str | None = None
    # field
    stat: Stat = "p75"
    window: str | None = None
    page_group: str | None = None  # None: the whole site; "*": every page group separately
    device: Device | None = None
    min_samples: int | None = None
    # lab and Lighthouse
    step: str | None = None
    url: str | None = None  # regex: only URLs it matches (searched, as LHCI's matchingUrlPattern)
    aggregation: Aggregation | None = None
    min_runs: int = 1
    overrides: list[Override] = []


class Defaults(msgspec.Struct, forbid_unknown_fields=True):
    aggregation: Aggregation = "median"
    window: str = "7d"
    min_samples: int = 100


class BudgetFile(msgspec.Struct, forbid_unknown_fields=True):
    budgets: list[Budget]
    version: int = 1
    defaults: Defaults = msgspec.field(default_factory=Defaults)


@dataclass(frozen=True)
class Metric:
    """A parsed ``metric:``: ``source`` field/lab/lighthouse, ``name`` (e.g. LCP, bytes,
    category), ``arg`` (resource type, category or audit id)."""

    source: str
    name: str
    arg: str | None = None

    @property
    def minimum(self) -> bool:
        return self.source == "lighthouse" and self.name in ("category", "score")

    @property
    def unit(self) -> str:
        if self.source == "lighthouse" or self.name == "CLS":
            return ""  # scores and CLS are unitless; an audit's unit comes from its report
        if self.name in ("bytes", "third-party-bytes"):
            return "B"
        if self.name in ("requests", "third-party-requests"):
            return "requests"
        return "ms"


def parse_metric(text: str) -> Metric:
    """``field:LCP``, ``lab:step-duration``, ``lab:bytes:script``, ``lighthouse:audit:ID`` …;
    ValueError says what is allowed."""
    source, _, rest = text.partition(":")
    name, _, arg = rest.partition(":")
    if source == "field" and name in FIELD_METRICS and not arg:
        return Metric("field", name)
    if source == "lab":
        if name in LAB_VITALS + LAB_OTHER and not arg:
            return Metric("lab", name)
        if name in LAB_COUNTERS and (not arg or arg in RESOURCE_TYPES):
            return Metric("lab", name, arg or None)
    if source == "lighthouse" and name in ("category", "audit", "score") and re.fullmatch(r"[a-z0-9-]+", arg):
        return Metric("lighthouse", name, arg)
    raise ValueError(
        f"unknown metric {text!r}: use field:{{{'|'.join(FIELD_METRICS)}}}, "
        f"lab:{{{'|'.join(LAB_VITALS + LAB_OTHER)}}}, lab:{{bytes|requests}}[:TYPE] "
        f"(TYPE one of {', '.join(RESOURCE_TYPES)}), lighthouse:category:ID, "
        "lighthouse:audit:ID (numericValue) or lighthouse:score:ID"
    )


def window_seconds(text: str) -> int:
    found = _WINDOW.match(text.strip())
    if not found or int(found.group(1)) <= 0:
        raise ValueError(f"window must look like 30m, 24h or 7d, not {text!r}")
    return int(found.group(1)) * _WINDOW_S[found.group(2)]


@dataclass(frozen=True)
class Spec:
    """A validated budget file."""

    budgets: list[Budget]
    defaults: Defaults
    path: str = ""

    def metric(self, budget: Budget) -> Metric:
        return parse_metric(budget.metric)


def _check_levels(
    doc: Document, where: tuple[str | int, ...], warn: float | None, fail: float | None, minimum: bool
) -> None:
    if warn is None and fail is None:
        raise doc.error(where, "give a fail level, a warn level, or both")
    if warn is not None and fail is not None and (warn < fail if minimum else warn > fail):
        rule = "at least" if minimum else "at most"
        raise doc.error((*where, "warn"), f"warn must be {rule} fail ({fail:g}): it is the earlier alarm")


def _check_regex(doc: Document, where: tuple[str | int, ...], pattern: str | None) -> None:
    if pattern is None:
        return
    try:
        re.compile(pattern)
    except re.error as exc:
        raise doc.error(where, f"not a valid regular expression: {exc}") from None


def load_spec(doc: Document) -> Spec:
    """Validate a parsed fieldlab budget file; BudgetFileError names the line and field."""
    if not isinstance(doc.data, dict):
        raise doc.error((), "a fieldlab budget file is a mapping with a `budgets:` list")
    parsed = convert(doc, doc.data, BudgetFile)
    if parsed.version != 1:
        raise doc.error(("version",), "only version 1 is known")
    if len(parsed.budgets) > MAX_BUDGETS:
        raise doc.error(("budgets",), f"at most {MAX_BUDGETS} budgets per file")
    try:
        window_seconds(parsed.defaults.window)
    except ValueError as exc:
        raise doc.error(("defaults", "window"), str(exc)) from None
    seen: dict[str, int] = {}
    for i, budget in enumerate(parsed.budgets):
        at: tuple[str | int, ...] = ("budgets", i)
        try:
            metric = parse_metric(budget.metric)
        except ValueError as exc:
            raise doc.error((*at, "metric"), str(exc)) from None
        _check_levels(doc, at, budget.warn, budget.fail, metric.minimum)
        _check_regex(doc, (*at, "url"), budget.url)
        if metric.source == "field":
            for name in ("step", "url", "aggregation"):
                if getattr(budget, name) is not None:
                    raise doc.error((*at, name), "applies to lab and Lighthouse budgets, not field ones")
            if budget.window is not None:
                try:
                    window_seconds(budget.window)
                except ValueError as exc:
                    raise doc.error((*at, "window"), str(exc)) from None
            if budget.min_samples is not None and budget.min_samples < 1:
                raise doc.error((*at, "min_samples"), "must be at least 1")
        else:
            for name in ("window", "page_group", "device", "min_samples"):
                if getattr(budget, name) is not None:
                    raise doc.error((*at, name), "applies to field budgets only")
            if budget.step is not None and metric.source != "lab":
                raise doc.error((*at, "step"), "applies to lab budgets only")
            if budget.min_runs < 1:
                raise doc.error((*at, "min_runs"), "must be at least 1")
        for j, override in enumerate(budget.overrides):
            ot = (*at, "overrides", j)
            if (override.url is None) == (override.page_group is None):
                raise doc.error(ot, "an override names either `url` or `page_group`")
            if override.page_group is not None and metric.source != "field":
                raise doc.error((*ot, "page_group"), "page-group overrides apply to field budgets")
            _check_regex(doc, (*ot, "url"), override.url)
            if not override.off:
                _check_levels(
                    doc, ot,
                    override.warn if override.warn is not None else budget.warn,
                    override.fail if override.fail is not None else budget.fail, metric.minimum,
                )  # fmt: skip
        key = budget_key(budget)
        if key in seen:
            raise doc.error(at, f"same budget as budgets[{seen[key]}] ({key}); give one an `id`")
        seen[key] = i
    return Spec(parsed.budgets, parsed.defaults, doc.path)


def budget_key(budget: Budget) -> str:
    """The stable part of a budget's verdict ids (``id`` when given)."""
    if budget.id:
        return budget.id
    metric = parse_metric(budget.metric)
    if metric.source == "field":
        return f"{budget.metric}:{budget.stat}:{budget.page_group or 'all'}:{budget.device or 'all'}"
    return f"{budget.metric}:{budget.step or 'all'}" + (f":{budget.url}" if budget.url else "")


def describe(budget: Budget) -> str:
    if budget.name:
        return budget.name
    metric = parse_metric(budget.metric)
    if metric.source == "field":
        where = " ".join(x for x in (budget.page_group, budget.device) if x)
        return f"{budget.stat} {metric.name}" + (f" ({where})" if where else "")
    label = budget.metric.split(":", 1)[1]
    return f"{label} [{budget.step}]" if budget.step else label


def is_fieldlab_file(data: Any) -> bool:
    return isinstance(data, dict) and "budgets" in data
