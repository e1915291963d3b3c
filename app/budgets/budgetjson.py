"""Lighthouse ``budget.json`` (resourceSizes, resourceCounts, timings), converted into an LHCI
``assertMatrix`` exactly as ``lhci assert --budgetsFile`` converts it: one matrix entry per
budget, matched by its ``path`` turned into a URL regex, every line an ``error`` assertion with
``maxNumericValue`` (sizes in KiB become bytes, i.e. x 1024)."""

from __future__ import annotations

import math
import re
from typing import Any

from app.budgets.source import Document, Path_

RESOURCE_TYPES = (
    "total", "document", "script", "stylesheet", "image", "media", "font", "other", "third-party",
)  # fmt: skip
TIMING_METRICS = (
    "first-contentful-paint", "interactive", "first-meaningful-paint", "max-potential-fid",
    "total-blocking-time", "speed-index", "largest-contentful-paint", "cumulative-layout-shift",
)  # fmt: skip


def path_regex(path: str | None) -> str:
    """A robots.txt-style path as the URL regex LHCI builds from it (``*`` is the one wildcard)."""
    if not path or path == "/":
        return ".*"
    escaped = [re.sub(r"([-\[\]{}()*+?.,\\^|#\s])", r"\\\1", part) for part in path.split("*")]
    # Written as JavaScript's RegExp.source writes it (slashes escaped), which Python reads alike.
    return ("https?://[^/]+" + ".*".join(escaped)).replace("/", "\\/").replace("[^\\/]", "[^/]")


def _number(doc: Document, where: Path_, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise doc.error(where, f"expected a number, got {value!r}")
    return float(value)


def _check_path(doc: Document, where: Path_, path: Any) -> str | None:
    if path is None:
        return None
    if not isinstance(path, str):
        raise doc.error(where, "path should be a string")
    problem = (
        "path should start with '/'" if not path.startswith("/")
        else "path should contain at most one '*'" if path.count("*") > 1
        else "'$' may only end the path" if "$" in path and (path.count("$") > 1 or not path.endswith("$"))
        else None
    )  # fmt: skip
    if problem:
        raise doc.error(where, problem)
    return path


def _rows(
    doc: Document, where: Path_, rows: Any, key: str, allowed: tuple[str, ...]
) -> list[tuple[str, float]]:
    if rows is None:
        return []
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise doc.error(where, "expected a list of objects")
    out: list[tuple[str, float]] = []
    for i, row in enumerate(rows):
        extra = set(row) - {key, "budget"}
        if extra:
            raise doc.error((*where, i, sorted(extra)[0]), "unknown field")
        if row.get(key) not in allowed:
            raise doc.error((*where, i, key), f"must be one of {', '.join(allowed)}, not {row.get(key)!r}")
        if any(name == row[key] for name, _ in out):
            raise doc.error((*where, i, key), f"duplicate entry {row[key]!r}")
        out.append((row[key], _number(doc, (*where, i, "budget"), row.get("budget"))))
    return out


def convert_budgets(doc: Document, data: Any = None, base: Path_ = ()) -> dict[str, Any]:
    """``{"assertMatrix": [...]}`` for the budgets array in ``data`` (default: the document)."""
    budgets = doc.data if data is None else data
    if not isinstance(budgets, list) or not all(isinstance(b, dict) for b in budgets):
        raise doc.error(base, "a budget.json file is a list of budgets (objects)")
    matrix: list[dict[str, Any]] = []
    for i, budget in enumerate(budgets):
        at = (*base, i)
        extra = set(budget) - {"path", "options", "resourceSizes", "resourceCounts", "timings"}
        if extra:
            raise doc.error((*at, sorted(extra)[0]), "unknown field")
        path = _check_path(doc, (*at, "path"), budget.get("path"))
        assertions: dict[str, Any] = {}
        for metric, limit in _rows(doc, (*at, "timings"), budget.get("timings"), "metric", TIMING_METRICS):
            assertions[metric] = ["error", {"maxNumericValue": limit}]
        for kind, limit in _rows(
            doc, (*at, "resourceCounts"), budget.get("resourceCounts"), "resourceType", RESOURCE_TYPES
        ):
            assertions[f"resource-summary:{kind}:count"] = ["error", {"maxNumericValue": limit}]
        for kind, limit in _rows(
            doc, (*at, "resourceSizes"), budget.get("resourceSizes"), "resourceType", RESOURCE_TYPES
        ):
            assertions[f"resource-summary:{kind}:size"] = ["error", {"maxNumericValue": limit * 1024}]
        matrix.append({"matchingUrlPattern": path_regex(path), "assertions": assertions})
    return {"assertMatrix": matrix}
