"""Lab Core Web Vitals per step, from the collector's raw snapshots (pure functions).

A step reports one entry per document that loaded during it (``kind="navigation"``: TTFB, FCP,
LCP, and CLS/INP over the document's life until it unloaded or the step ended) and, when the
document it started on saw interactions or layout shifts during the step, a ``kind="timespan"``
entry with CLS and INP counted only over the step (as Lighthouse user-flow timespans do).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import msgspec

INP_THRESHOLD_MS = 16.0  # lab_vitals.js durationThreshold


class Snapshot(msgspec.Struct, frozen=True):
    """What ``lab_vitals.js`` reports for one document at one moment."""

    doc: str
    url: str
    now: float
    ttfb: float | None = None
    fcp: float | None = None
    lcp: float | None = None
    shifts: list[tuple[float, float]] = []
    interactions: list[tuple[float, float, float]] = []  # start, latency, interactionId
    count: int = 0


@dataclass
class Navigation:
    url: str
    kind: str  # navigation | timespan
    vitals: dict[str, float | None] = field(default_factory=dict)  # TTFB FCP LCP CLS INP (ms; CLS unitless)
    interactions: int = 0


def cls(shifts: Iterable[tuple[float, float]], start: float = 0.0, end: float = math.inf) -> float:
    """Largest session window (shifts < 1 s apart, window < 5 s) of the shifts in [start, end)."""
    best = window = 0.0
    first = last = -math.inf
    for t, value in sorted(s for s in shifts if start <= s[0] < end):
        if window and t - last < 1000 and t - first < 5000:
            window += value
        else:
            window, first = value, t
        last = t
        best = max(best, window)
    return best


def inp(
    interactions: Iterable[tuple[float, float, float]], count: int, start: float = 0.0, end: float = math.inf
) -> float | None:
    """INP over [start, end): the (count/50)th longest interaction, as web-vitals picks it.

    ``count`` interactions happened in the window; when none of them reached the 16 ms
    threshold, the threshold is reported (an upper bound), and None when there were none."""
    latencies = sorted((d for t, d, _ in interactions if start <= t < end), reverse=True)
    if latencies:
        return latencies[min(len(latencies) - 1, max(count, len(latencies)) // 50)]
    return INP_THRESHOLD_MS if count > 0 else None


def _r(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def step_vitals(
    start: Snapshot | None, reports: Sequence[Snapshot], end: Snapshot | None
) -> list[Navigation]:
    """Entries for one step: ``start``/``end`` are snapshots of the current document when the
    step began and ended (None if there was none or it could not be read); ``reports`` are the
    final snapshots of documents that unloaded during the step, in order."""
    final: dict[str, Snapshot] = {}
    for snap in [*reports, *([end] if end is not None else [])]:
        final.pop(snap.doc, None)
        final[snap.doc] = snap  # a later snapshot of the same document wins (and moves last)
    out: list[Navigation] = []
    for snap in final.values():
        if start is not None and snap.doc == start.doc:
            n = max(snap.count - start.count, 0)
            shift = cls(snap.shifts, start.now, snap.now + 1)
            value = inp(snap.interactions, n, start.now, snap.now + 1)
            if n or shift or value is not None:
                out.append(Navigation(snap.url, "timespan", {"CLS": round(shift, 4), "INP": _r(value)}, n))
            continue
        vitals = {
            "TTFB": _r(snap.ttfb),
            "FCP": _r(snap.fcp),
            "LCP": _r(snap.lcp),
            "CLS": round(cls(snap.shifts), 4),
            "INP": _r(inp(snap.interactions, snap.count)),
        }
        out.append(Navigation(snap.url, "navigation", vitals, snap.count))
    return out
