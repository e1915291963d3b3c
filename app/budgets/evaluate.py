"""The pure evaluator: ``evaluate(data, budgets) -> list[Verdict]``. No I/O, no clock.

``data`` holds what was measured; a source that is ``None`` was not measured here and its
budgets produce no verdicts (``fieldlab gate --lhr`` has no field data), while an empty list
was measured and found nothing (``insufficient-data``).

* **Field** budgets read :class:`FieldStat` rows (a percentile over a window for a page group
  and device, with its sample count); fewer samples than ``min_samples`` is insufficient-data.
* **Lab** budgets read flow results (``FlowResult.to_dict()``) per step, and the same metrics
  from Lighthouse reports when no ``step`` is named; a source that cannot measure a metric at
  all (TBT in a flow, INP or a step duration in a Lighthouse navigation) is skipped.
* **Lighthouse** budgets read category scores, audit scores and audit ``numericValue`` s.

Several runs of one URL are aggregated as LHCI does (``median``, ``optimistic``,
``pessimistic``, ``median-run``). LHCI ``ci.assert`` configs go through :mod:`app.budgets.lhci`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from app.budgets import lhci
from app.budgets.spec import Budget, Metric, Spec, budget_key, describe, parse_metric, window_seconds
from app.budgets.verdict import Status, Verdict
from probes.lighthouse import choose_representative

_UNSUPPORTED = object()  # this source cannot measure this metric: no verdict from it
_LH_VITALS = {
    "LCP": "largest-contentful-paint", "CLS": "cumulative-layout-shift", "TBT": "total-blocking-time",
    "FCP": "first-contentful-paint", "TTFB": "server-response-time",
}  # fmt: skip
_LH_UNITS = {"millisecond": "ms", "byte": "B", "unitless": "", "element": "elements"}


@dataclass(frozen=True)
class FieldStat:
    """Real-user percentiles of one metric over one window (``page_group``/``device`` None: all)."""

    metric: str
    window_s: int
    count: int
    values: Mapping[str, float | None]  # p50, p75, p90, p95
    page_group: str | None = None
    device: str | None = None


@dataclass(frozen=True)
class Data:
    lighthouse: Sequence[Mapping[str, Any]] | None = None  # LHRs, any number of runs per URL
    flows: Sequence[Mapping[str, Any]] | None = None  # FlowResult.to_dict(), several runs
    field: Sequence[FieldStat] | None = None


@dataclass(frozen=True)
class Budgets:
    """What to judge by: a fieldlab budget file and/or an LHCI ``ci.assert`` object (with any
    ``budgetsFile`` already converted into an ``assertMatrix``)."""

    spec: Spec | None = None
    lhci: Mapping[str, Any] | None = None


# --- judging one number -------------------------------------------------------------------


def judge(
    value: float, *, warn: float | None, fail: float | None, minimum: bool
) -> tuple[Status, float | None, float | None]:
    """(status, limit, margin) of ``value`` against the levels; margin > 0 is within budget."""

    def beyond(limit: float) -> bool:
        return value < limit if minimum else value > limit

    def margin(limit: float) -> float:
        return value - limit if minimum else limit - value

    if fail is not None and beyond(fail):
        return "fail", fail, margin(fail)
    if warn is not None and beyond(warn):
        return "warn", warn, margin(warn)
    limit = fail if fail is not None else warn
    return "pass", limit, None if limit is None else margin(limit)


def aggregate(values: Sequence[float], method: str, *, minimum: bool) -> float:
    """LHCI's aggregation: optimistic is the best run, pessimistic the worst (best for a
    maximum is the smallest value), median averages the middle two of an even count."""
    kind = "minScore" if minimum else "maxNumericValue"
    return lhci.aggregate(values, method, kind)


def _levels(
    budget: Budget, *, url: str | None = None, group: str | None = None
) -> tuple[float | None, float | None] | None:
    """(warn, fail) after overrides; None when an override switches the budget off."""
    for override in budget.overrides:
        hit = (override.url is not None and url is not None and re.search(override.url, url)) or (
            override.page_group is not None and override.page_group == group
        )
        if hit:
            if override.off:
                return None
            return (
                override.warn if override.warn is not None else budget.warn,
                override.fail if override.fail is not None else budget.fail,
            )
    return budget.warn, budget.fail


def _verdict(
    budget: Budget, metric: Metric, bid: str, name: str, levels: tuple[float | None, float | None],
    value: float | None, *, samples: int | None, unit: str, detail: str, enough: bool = True,
) -> Verdict:  # fmt: skip
    warn, fail = levels
    if value is None or not enough or (isinstance(value, float) and math.isnan(value)):
        limit = fail if fail is not None else warn
        return Verdict(bid, name, "insufficient-data", value, limit, None, unit, samples, detail)
    status, limit, margin = judge(value, warn=warn, fail=fail, minimum=metric.minimum)
    return Verdict(bid, name, status, value, limit, margin, unit, samples, detail)


# --- field --------------------------------------------------------------------------------


def _field(spec: Spec, budget: Budget, metric: Metric, stats: Sequence[FieldStat]) -> list[Verdict]:
    window = window_seconds(budget.window or spec.defaults.window)
    min_samples = budget.min_samples or spec.defaults.min_samples
    rows = [
        s for s in stats if s.metric == metric.name and s.window_s == window and s.device == budget.device
    ]
    if budget.page_group == "*":
        groups: list[str | None] = [*sorted({s.page_group for s in rows if s.page_group is not None})]
    else:
        groups = [budget.page_group]
    out = []
    for group in groups:
        levels = _levels(budget, group=group)
        if levels is None:
            continue
        bid = budget_key(budget) + (f"@{group}" if budget.page_group == "*" else "")
        name = describe(budget) + (f" [{group}]" if budget.page_group == "*" else "")
        stat = next((s for s in rows if s.page_group == group), None)
        if stat is None:
            out.append(_verdict(budget, metric, bid, name, levels, None, samples=0, unit=metric.unit,
                                detail="no field data for this page group, device and window"))  # fmt: skip
            continue
        value = stat.values.get(budget.stat)
        enough = stat.count >= min_samples
        detail = "" if enough else f"{stat.count} samples, {min_samples} needed"
        out.append(_verdict(budget, metric, bid, name, levels, value, samples=stat.count,
                            unit=metric.unit, detail=detail, enough=enough))  # fmt: skip
    return out


# --- lab: flows ---------------------------------------------------------------------------


def _passed_steps(run: Mapping[str, Any], step: str | None) -> list[Mapping[str, Any]] | None:
    """The steps a value is read from; None when the run cannot give one (the named step did
    not pass, or - for whole-flow values - the run did not pass)."""
    steps = list(run.get("steps") or [])
    if step is not None:
        found = [s for s in steps if s.get("name") == step and s.get("status") == "passed"]
        return found or None
    if run.get("status") not in ("passed", "flaky") or not steps:
        return None
    return steps


DOCUMENT_VITALS = ("LCP", "CLS", "INP", "FCP", "TTFB")


def worst_document(steps: Sequence[Mapping[str, Any]], vital: str) -> float | None:
    """A vital of the steps' slowest document: what a lab budget judges. LCP, FCP and TTFB come
    from full navigations only; CLS and INP also from soft navigations (a route change's
    layout shifts and interactions are the page's)."""
    found = [
        float(v)
        for s in steps
        for nav in s.get("navigations") or []
        if isinstance(v := (nav.get("vitals") or {}).get(vital), int | float)
        and not isinstance(v, bool)
        and (nav.get("kind") == "navigation" or vital in ("CLS", "INP"))
    ]
    return max(found) if found else None


def flow_value(run: Mapping[str, Any], metric: Metric, step: str | None) -> Any:
    """One run's value of a lab metric (None: not available in this run)."""
    if metric.name == "TBT":
        return _UNSUPPORTED  # flows measure no main-thread blocking; use Lighthouse's
    steps = _passed_steps(run, step)
    if steps is None:
        return None
    if metric.name == "step-duration":
        return float(sum(s.get("duration_ms") or 0.0 for s in steps))
    if metric.name in DOCUMENT_VITALS:
        return worst_document(steps, metric.name)
    total = 0.0
    for s in steps:
        res = s.get("resources") or {}
        if metric.name in ("bytes", "requests"):
            field = "bytes" if metric.name == "bytes" else "count"
            total += float(
                ((res.get("by_type") or {}).get(metric.arg) or {}).get(field, 0)
                if metric.arg
                else res.get("total_bytes" if field == "bytes" else "total_count", 0)
            )
        else:
            total += float(
                res.get("third_party_bytes" if metric.name == "third-party-bytes" else "third_party_count", 0)
            )
    return total


def _median_flow(runs: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The run of median total duration (upper median), the flow counterpart of LHCI's median run."""
    ok = [r for r in runs if r.get("status") in ("passed", "flaky")] or list(runs)
    return [sorted(ok, key=lambda r: float(r.get("duration_ms") or 0.0))[len(ok) // 2]] if ok else []


# --- lab and Lighthouse: Lighthouse reports -------------------------------------------------


def _lhr_rows(lhr: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    items = (((lhr.get("audits") or {}).get("resource-summary") or {}).get("details") or {}).get("items")
    return {str(i.get("resourceType")): i for i in items or []}


def lhr_value(lhr: Mapping[str, Any], metric: Metric) -> Any:
    audits = lhr.get("audits") or {}
    if metric.source == "lighthouse":
        if metric.name == "category":
            score = ((lhr.get("categories") or {}).get(metric.arg) or {}).get("score")
        else:
            entry = audits.get(metric.arg) or {}
            score = entry.get("score" if metric.name == "score" else "numericValue")
        return float(score) if isinstance(score, int | float) and not isinstance(score, bool) else None
    if metric.name in _LH_VITALS:
        value = (audits.get(_LH_VITALS[metric.name]) or {}).get("numericValue")
        return float(value) if isinstance(value, int | float) else None
    if metric.name in ("INP", "step-duration") or metric.arg == "xhr":
        return _UNSUPPORTED  # a navigation has no interactions or steps; LH files XHR as "other"
    row_name = {"third-party-bytes": "third-party", "third-party-requests": "third-party"}.get(
        metric.name, metric.arg or "total"
    )
    row = _lhr_rows(lhr).get(row_name)
    field = "transferSize" if metric.name.endswith("bytes") else "requestCount"
    value = (row or {}).get(field)
    if row is None and row_name != "third-party":
        return None
    return float(value or 0)


def _lh_unit(lhrs: Sequence[Mapping[str, Any]], metric: Metric) -> str:
    if metric.source == "lighthouse" and metric.name == "audit":
        for lhr in lhrs:
            unit = ((lhr.get("audits") or {}).get(metric.arg) or {}).get("numericUnit")
            if unit:
                return _LH_UNITS.get(str(unit), str(unit))
    return metric.unit


# --- runs of one URL -------------------------------------------------------------------------


def _runs(
    spec: Spec, budget: Budget, metric: Metric, url: str, runs: Sequence[Mapping[str, Any]],
    read: Callable[[Mapping[str, Any]], Any], pick_median: Callable[[Sequence[Mapping[str, Any]]], list[Mapping[str, Any]]],
    source: str, unit: str,
) -> Verdict | None:  # fmt: skip
    levels = _levels(budget, url=url)
    if levels is None:
        return None
    method = budget.aggregation or spec.defaults.aggregation
    use = pick_median(runs) if method == "median-run" else list(runs)
    raw = [read(r) for r in use]
    if any(v is _UNSUPPORTED for v in raw):
        return None
    values = [float(v) for v in raw if isinstance(v, float) and math.isfinite(v)]
    bid = f"{budget_key(budget)}@{source}:{url}"
    name = f"{describe(budget)} ({source})"
    needed = 1 if method == "median-run" else budget.min_runs
    if len(values) < needed:
        missing = f"{len(raw) - len(values)} of {len(raw)} run(s) gave no value"
        return _verdict(
            budget, metric, bid, name, levels, None, samples=len(values), unit=unit, detail=missing
        )
    value = aggregate(values, method, minimum=metric.minimum)
    shown = ", ".join(f"{v:.6g}" for v in values)
    detail = f"{method} of {len(values)} run(s): {shown}" if len(values) > 1 else ""
    return _verdict(budget, metric, bid, name, levels, value, samples=len(values), unit=unit, detail=detail)


def _by_url(
    items: Sequence[Mapping[str, Any]], key: Callable[[Mapping[str, Any]], str]
) -> dict[str, list[Mapping[str, Any]]]:
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return groups


def _lab_and_lighthouse(spec: Spec, budget: Budget, metric: Metric, data: Data) -> list[Verdict]:
    out: list[Verdict | None] = []

    def wanted(url: str) -> bool:
        return budget.url is None or re.search(budget.url, url) is not None

    if metric.source == "lab" and data.flows is not None:
        groups = _by_url(data.flows, lambda r: str(r.get("base_url") or ""))
        for url, runs in groups.items():
            if wanted(url):
                out.append(_runs(spec, budget, metric, url, runs, lambda r: flow_value(r, metric, budget.step),
                                 _median_flow, "flow", metric.unit))  # fmt: skip
        if not groups:
            out.append(_verdict(budget, metric, f"{budget_key(budget)}@flow", describe(budget),
                                (budget.warn, budget.fail), None, samples=0, unit=metric.unit,
                                detail="no flow runs"))  # fmt: skip
    if data.lighthouse is not None and (metric.source == "lighthouse" or budget.step is None):
        groups = _by_url(data.lighthouse, lhci.final_url)
        for url, lhrs in groups.items():
            if wanted(url):
                out.append(_runs(spec, budget, metric, url, lhrs, lambda lhr: lhr_value(lhr, metric),
                                 lambda rs: [rs[choose_representative(rs)]] if rs else [],
                                 "lighthouse", _lh_unit(lhrs, metric)))  # fmt: skip
        if not groups and metric.source == "lighthouse":
            out.append(_verdict(budget, metric, f"{budget_key(budget)}@lighthouse", describe(budget),
                                (budget.warn, budget.fail), None, samples=0, unit=metric.unit,
                                detail="no Lighthouse reports"))  # fmt: skip
    return [v for v in out if v is not None]


# --- LHCI ---------------------------------------------------------------------------------


def lhci_verdicts(results: Sequence[lhci.AssertionResult], matrix: bool = False) -> list[Verdict]:
    out = []
    for r in results:
        status: Status = "pass" if r.passed else "warn" if r.level == "warn" else "fail"
        actual = None if math.isnan(r.actual) else r.actual
        margin = None
        if actual is not None:
            margin = actual - r.expected if r.name in ("minScore", "auditRan") else r.expected - actual
        where = f"[{r.matrix_index}]" if matrix else ""
        detail = r.message or (
            "values: " + ", ".join(f"{v:.4g}" for v in r.values) if len(r.values) > 1 else ""
        )
        out.append(Verdict(
            f"lhci{where}:{r.key}:{r.name}@{r.url}", f"{r.key} {r.name} {r.operator} {r.expected:g}",
            status, actual, r.expected, margin, "", len(r.values), detail,
        ))  # fmt: skip
    return out


def evaluate(data: Data, budgets: Budgets) -> list[Verdict]:
    """Every verdict of ``budgets`` on ``data`` (pure; same input, same output)."""
    out: list[Verdict] = []
    if budgets.spec is not None:
        spec = budgets.spec
        for budget in spec.budgets:
            metric = parse_metric(budget.metric)
            if metric.source == "field":
                if data.field is not None:
                    out.extend(_field(spec, budget, metric, data.field))
            else:
                out.extend(_lab_and_lighthouse(spec, budget, metric, data))
    if budgets.lhci is not None and data.lighthouse is not None:
        results = lhci.assert_lhrs(budgets.lhci, data.lighthouse)
        out.extend(lhci_verdicts(results, matrix="assertMatrix" in budgets.lhci))
    return out


def field_requests(spec: Spec) -> list[tuple[str, str | None, str | None, int]]:
    """The field stats the spec's budgets need: (metric, page_group, device, window_s), where a
    page group of ``"*"`` asks for every page group. The server queries these, then calls
    :func:`evaluate` with the rows as :class:`FieldStat`."""
    wanted = []
    for budget in spec.budgets:
        metric = parse_metric(budget.metric)
        if metric.source == "field":
            window = window_seconds(budget.window or spec.defaults.window)
            wanted.append((metric.name, budget.page_group, budget.device, window))
    return list(dict.fromkeys(wanted))
