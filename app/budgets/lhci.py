"""Lighthouse CI's ``ci.assert`` semantics (@lhci/cli 0.14.0), reimplemented over plain LHR dicts.

The goal is the same verdict per assertion as ``lhci assert`` on the same reports, quirks
included (a parity test runs both on real reports):

* results are per URL (the LHR's ``finalUrl``), for every entry of ``assertMatrix``;
* an assertion key is kebab-cased, split on ``.``/``:`` into audit id and property; the level and
  options are then looked up under the kebab-cased key, so a camelCase key with no kebab twin
  ends up ``off``;
* a preset is deep-merged under the user's options, arrays element by element, so
  ``["warn", {"minScore": 0.5}]`` over the preset's ``["error", {"maxLength": 0}]`` asserts
  both maxLength and minScore at level warn;
* an assertion with no ``maxLength``/``maxNumericValue`` gets ``minScore: 0.9``; the default
  aggregation is ``optimistic``; ``median-run`` judges the representative run only, except for
  ``categories.*`` which (as in LHCI) looks at every run and takes the maximum;
* an audit missing from any run fails as ``auditRan``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from app.budgets.presets import PRESETS, known_audits, preset_assertions
from probes.lighthouse import choose_representative

LEVELS = ("off", "warn", "error")
AGGREGATIONS = ("median", "optimistic", "pessimistic", "median-run")
OPERATORS = {"auditRan": "==", "minScore": ">=", "maxLength": "<=", "maxNumericValue": "<="}
OPTION_KEYS = ("minScore", "maxLength", "maxNumericValue", "aggregationMethod")


class LhciConfigError(ValueError):
    """An assertion config LHCI would reject (or crash on); the message names the key."""


@dataclass(frozen=True)
class AssertionResult:
    """One row of LHCI's ``assertion-results.json``, plus which matrix entry produced it."""

    url: str
    audit_id: str
    audit_property: str | None
    name: str  # auditRan | minScore | maxLength | maxNumericValue
    level: str  # warn | error
    passed: bool
    actual: float  # NaN when the audit produced no usable value
    expected: float
    values: tuple[float, ...]
    operator: str
    message: str | None = None
    matrix_index: int = 0
    audit_title: str | None = None

    @property
    def key(self) -> str:
        return self.audit_id + (f".{self.audit_property}" if self.audit_property else "")


# --- small JavaScript equivalents -------------------------------------------------------------


def kebab_case(s: str, *, alphanumeric_only: bool = False) -> str:
    out = re.sub(r"([a-z])([A-Z])", r"\1-\2", s)
    if alphanumeric_only:
        out = re.sub(r"-+", "-", re.sub(r"[^a-z0-9]+", "-", out, flags=re.IGNORECASE)).strip("-")
    return out.lower()


def _is_finite(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def merge(base: Any, over: Any) -> Any:
    """@lhci/utils' ``merge``: objects key by key, arrays index by index, else ``over`` wins."""
    if isinstance(base, list):
        if not isinstance(over, list):
            return over
        merged = [merge(b, o) for b, o in zip(base, over, strict=False)]
        return merged + base[len(over) :] + over[len(base) :]
    if isinstance(base, dict):
        if not isinstance(over, dict):
            return over
        out = dict(base)
        for key, value in over.items():
            out[key] = merge(base[key], value) if key in base else value
        return out
    return over


def final_url(lhr: Mapping[str, Any]) -> str:
    return str(lhr.get("finalUrl") or lhr.get("finalDisplayedUrl") or "")


# --- value getters and aggregation ---------------------------------------------------------


def _value(result: Mapping[str, Any], kind: str) -> Any:
    if kind == "minScore":
        score = result.get("score")
        if isinstance(score, int | float) and not isinstance(score, bool):
            return score
        mode = result.get("scoreDisplayMode")
        return 1 if mode == "notApplicable" else 0 if mode == "informative" else None
    if kind == "maxLength":
        details = result.get("details")
        items = details.get("items") if isinstance(details, Mapping) else None
        return len(items) if isinstance(items, list) and items else 0
    return result.get("numericValue")


def aggregate(values: Sequence[float], method: str | None, kind: str) -> float:
    if method == "median":
        ordered = sorted(values)
        mid = (len(ordered) - 1) // 2
        return ordered[mid] if len(ordered) % 2 else (ordered[mid] + ordered[mid + 1]) / 2
    use_min = (method == "optimistic" and kind.startswith("max")) or (
        method == "pessimistic" and kind.startswith("min")
    )
    return min(values) if use_min else max(values)


def _passed(kind: str, actual: float, expected: float) -> bool:
    if kind == "minScore":
        return actual >= expected
    if kind == "auditRan":
        return actual == expected
    return actual <= expected


def _judge(
    results: Sequence[Mapping[str, Any]], method: str | None, kind: str, expected: float
) -> dict[str, Any]:
    values = [_value(r, kind) for r in results]
    finite = [float(v) for v in values if _is_finite(v)]
    row: dict[str, Any] = {"name": kind, "expected": expected, "operator": OPERATORS[kind]}
    pessimistic = method == "pessimistic"
    if (not finite and not pessimistic) or (len(finite) != len(values) and pessimistic):
        if any(v is None for v in values):
            message = f'Audit did not produce a value at all. "{kind}" might not be a valid assertion for this audit.'
        elif pessimistic:
            message = 'Audit failed to produce a valid value. Try using an aggregationMethod other than "pessimistic".'
        else:
            message = "Audit failed to produce a valid value. If this is reproducible, please file an issue on GitHub."
        values_out = tuple(float(v) if _is_finite(v) else math.nan for v in values)
        return row | {"actual": math.nan, "values": values_out, "passed": False, "message": message}
    actual = aggregate(finite, method, kind)
    return row | {"actual": actual, "values": tuple(finite), "passed": _passed(kind, actual, expected)}


def _standard(
    results: Sequence[Mapping[str, Any] | None], options: Mapping[str, Any], audit_id: str | None
) -> list[dict[str, Any]]:
    if any(r is None for r in results):
        unknown = audit_id is not None and audit_id not in known_audits()
        return [{
            "name": "auditRan", "expected": 1.0, "actual": 0.0, "operator": ">=", "passed": False,
            "values": tuple(0.0 if r is None else 1.0 for r in results),
            "message": f'"{audit_id}" is not a known audit.' if unknown else None,
        }]  # fmt: skip
    present = [r for r in results if r is not None]
    method = options.get("aggregationMethod") or "optimistic"
    rows: list[dict[str, Any]] = []
    manual = False
    for kind in ("maxLength", "maxNumericValue"):
        if options.get(kind) is not None:
            manual = True
            rows.append(_judge(present, method, kind, float(options[kind])))
    min_score = options.get("minScore")
    if min_score is None and not manual:
        min_score = 0.9
    if min_score is not None:
        rows.append(_judge(present, method, "minScore", float(min_score)))
    return rows


def _budget_rows(results: Sequence[Mapping[str, Any] | None]) -> list[dict[str, Any]]:
    """The ``performance-budget`` audit (Lighthouse < 12): Lighthouse already judged it, so
    every over-budget row becomes one failed assertion."""
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for result in results:
        items = ((result or {}).get("details") or {}).get("items") or []
        for item in items:
            size_key, count_key = f"{item.get('resourceType')}.size", f"{item.get('resourceType')}.count"
            if item.get("sizeOverBudget") and size_key not in seen:
                actual = item.get("size") or item.get("transferSize")
                row = _judge(
                    [{"numericValue": actual}],
                    "pessimistic",
                    "maxNumericValue",
                    actual - item["sizeOverBudget"],
                )
                rows.append(row | {"audit_property": size_key})
                seen.add(size_key)
            if item.get("countOverBudget") and count_key not in seen:
                found = re.search(r"\d+", str(item["countOverBudget"]))
                if not found:
                    continue
                actual = item.get("requestCount")
                row = _judge(
                    [{"numericValue": actual}], "pessimistic", "maxNumericValue", actual - int(found.group())
                )
                rows.append(row | {"audit_property": count_key})
                seen.add(count_key)
    return rows


def _audit_rows(
    audit_id: str,
    prop: list[str],
    results: list[Any],
    options: Mapping[str, Any],
    lhrs: Sequence[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    if audit_id == "performance-budget":
        return _budget_rows(results)
    if audit_id == "categories" and prop:
        if len(prop) != 1:
            raise LhciConfigError(f'Invalid resource-summary assertion "{".".join(prop)}"')
        cats = [(lhr.get("categories") or {}).get(prop[0]) for lhr in lhrs]
        pseudo = [None if c is None else {"score": c.get("score")} for c in cats]
        return [r | {"audit_property": prop[0]} for r in _standard(pseudo, options, None)]
    if audit_id == "resource-summary" and prop:
        if len(prop) != 2 or prop[1] not in ("size", "count"):
            raise LhciConfigError(f'Invalid resource-summary assertion "{".".join(prop)}"')
        pseudo = []
        for result in results:
            items = ((result or {}).get("details") or {}).get("items")
            item = next((i for i in items or [] if i.get("resourceType") == prop[0]), None)
            primary, backup = ("size", "transferSize") if prop[1] == "size" else ("requestCount", "")
            key = primary if item is not None and primary in item else backup
            pseudo.append(None if item is None or key not in item else {**result, "numericValue": item[key]})
        return [r | {"audit_property": ".".join(prop)} for r in _standard(pseudo, options, None)]
    if audit_id == "user-timings" and prop:
        wanted = kebab_case("-".join(prop), alphanumeric_only=True)
        pseudo = []
        for result in results:
            items = ((result or {}).get("details") or {}).get("items")
            match = next(
                (i for i in items or [] if kebab_case(str(i.get("name")), alphanumeric_only=True) == wanted),
                None,
            )
            if match is None:
                pseudo.append(None)
                continue
            value = match.get("duration") if _is_finite(match.get("duration")) else match.get("startTime")
            pseudo.append({**result, "numericValue": value})
        return [r | {"audit_property": wanted} for r in _standard(pseudo, options, None)]
    return _standard(results, options, audit_id)


# --- configs ------------------------------------------------------------------------------


def normalise(assertion: Any, key: str) -> tuple[str, dict[str, Any]]:
    if not assertion:
        return "off", {}
    options: dict[str, Any] = {}
    if isinstance(assertion, str):
        level = assertion
    elif isinstance(assertion, list) and assertion and isinstance(assertion[0], str):
        level = assertion[0]
        if len(assertion) > 1 and assertion[1]:
            options = assertion[1]
        if not isinstance(options, dict):
            raise LhciConfigError(f"assertions.{key}: options must be an object")
    else:
        raise LhciConfigError(f'assertions.{key}: expected "off"/"warn"/"error" or [level, options]')
    if level not in LEVELS:
        raise LhciConfigError(f"assertions.{key}: level must be off, warn or error, not {level!r}")
    # LHCI would compare against null or a string and quietly pass or fail: refuse instead.
    for name in ("minScore", "maxLength", "maxNumericValue"):
        if name in options and not _is_finite(options[name]):
            raise LhciConfigError(f"assertions.{key}.{name}: expected a number")
    method = options.get("aggregationMethod")
    if method is not None and method not in AGGREGATIONS:
        raise LhciConfigError(f"assertions.{key}.aggregationMethod: must be one of {', '.join(AGGREGATIONS)}")
    return level, options


def _resolve(base: Mapping[str, Any]) -> dict[str, Any]:
    options = {k: v for k, v in base.items() if k != "preset"}
    preset = base.get("preset") or ""
    found = re.search(r"lighthouse:(.*)$", str(preset))
    if found:
        if f"lighthouse:{found.group(1)}" not in PRESETS:
            raise LhciConfigError(
                f"preset: unknown preset {preset!r} (lighthouse:all, lighthouse:recommended, lighthouse:no-pwa)"
            )
        merged = merge({"assertions": preset_assertions(f"lighthouse:{found.group(1)}")}, options)
        return dict(merged)
    return options


def _for_url(
    base: Mapping[str, Any], group: Sequence[Mapping[str, Any]], index: int
) -> list[AssertionResult]:
    options = _resolve(base)
    assertions = options.get("assertions") or {}
    if not isinstance(assertions, dict):
        raise LhciConfigError("assertions: expected an object")
    pattern = options.get("matchingUrlPattern")
    lhrs = [lhr for lhr in group if re.search(str(pattern), final_url(lhr))] if pattern else list(group)
    if not lhrs:
        return []
    median_lhrs = [lhrs[choose_representative(lhrs)]]
    url = final_url(lhrs[0])
    out: list[AssertionResult] = []
    for key in dict.fromkeys(kebab_case(k) for k in assertions):
        audit_id, *prop = [p for p in re.split(r"[.:]", key) if p]
        level, assertion_options = normalise(assertions.get(key), key)
        if level == "off":
            continue
        opts = {"aggregationMethod": options.get("aggregationMethod"), **assertion_options}
        use = median_lhrs if opts.get("aggregationMethod") == "median-run" else lhrs
        results = [(lhr.get("audits") or {}).get(audit_id) for lhr in use]
        titles = [
            a.get("title") for lhr in lhrs if isinstance(a := (lhr.get("audits") or {}).get(audit_id), dict)
        ]
        for row in _audit_rows(audit_id, prop, results, opts, lhrs):
            out.append(AssertionResult(
                url=url, audit_id=audit_id, audit_property=row.get("audit_property"), name=row["name"],
                level=level, passed=row["passed"], actual=float(row["actual"]), expected=float(row["expected"]),
                values=tuple(row["values"]), operator=row["operator"], message=row.get("message"),
                matrix_index=index, audit_title=titles[0] if titles else None,
            ))  # fmt: skip
    return out


def check_options(options: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The list of option sets to apply (``assertMatrix`` or the options themselves)."""
    if options.get("assertMatrix") is not None:
        if any(options.get(k) for k in ("assertions", "preset", "budgetsFile", "aggregationMethod")):
            raise LhciConfigError("Cannot use assertMatrix with other options")
        matrix = options["assertMatrix"]
        if not isinstance(matrix, list) or not all(isinstance(m, dict) for m in matrix):
            raise LhciConfigError("assertMatrix: expected a list of objects")
        return matrix
    if not (options.get("assertions") or options.get("preset")):
        raise LhciConfigError("No assertions to use")
    return [options]


def assert_lhrs(options: Mapping[str, Any], lhrs: Sequence[Mapping[str, Any]]) -> list[AssertionResult]:
    """Every assertion result (passed ones included) of ``options`` (a ``ci.assert`` object,
    ``budgetsFile`` already converted) on ``lhrs``."""
    matrix = check_options(options)
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for lhr in lhrs:
        groups.setdefault(final_url(lhr), []).append(lhr)
    out: list[AssertionResult] = []
    for group in groups.values():
        for index, base in enumerate(matrix):
            out.extend(_for_url(base, group, index))
    return out
