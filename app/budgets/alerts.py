"""The alert state machine: when a budget's verdicts turn into a notification (pure, no I/O).

Each budget has two bands, judged separately:

* the **warn** band is breached by a ``warn`` or a ``fail`` verdict (the value is past the warn
  level, and a fail level is never looser than its warn level);
* the **fail** band is breached by a ``fail`` verdict only.

Per band: ``ok`` → ``failing`` once at least K of the last N evaluations breach; ``failing`` →
``recovered`` once fewer than K of the last N breach and the latest does not; ``recovered``
becomes ``ok`` at the next evaluation that does not breach again. The window remembers N
evaluations, so one good run in a bad streak does not end an alert and one bad run among good
ones does not start one. ``insufficient-data`` verdicts are skipped entirely: they neither
breach nor heal, so a budget short of samples stays silent.

Only transitions produce events (plus ``still-failing`` reminders when a re-notify interval is
set). When both bands change the same way in one evaluation, one event says so (the fail band's),
so a budget that jumps straight past its fail level notifies once, not twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from app.budgets.verdict import Verdict

Band = Literal["warn", "fail"]
State = Literal["ok", "failing", "recovered"]
EventKind = Literal["failing", "recovered", "still-failing", "test"]  # test: a webhook check by hand
BANDS: tuple[Band, ...] = ("warn", "fail")


@dataclass(frozen=True, slots=True)
class AlertPolicy:
    """K of the last N evaluations must breach; ``renotify_ms`` 0 means remind never."""

    k: int = 3
    n: int = 5
    renotify_ms: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.k <= self.n:
            raise ValueError(f"alert K={self.k} and N={self.n}: need 1 <= K <= N")
        if self.renotify_ms < 0:
            raise ValueError("re-notify interval must not be negative")


@dataclass(frozen=True, slots=True)
class BandState:
    state: State = "ok"
    window: tuple[bool, ...] = ()  # breach flags, oldest first, at most N
    failing_since_ms: int | None = None
    notified_ms: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "window": "".join("1" if b else "0" for b in self.window),
            "failing_since_ms": self.failing_since_ms,
            "notified_ms": self.notified_ms,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> BandState:
        state = raw.get("state", "ok")
        return cls(
            state=state if state in ("ok", "failing", "recovered") else "ok",
            window=tuple(c == "1" for c in str(raw.get("window", ""))),
            failing_since_ms=raw.get("failing_since_ms"),
            notified_ms=raw.get("notified_ms"),
        )


@dataclass(frozen=True, slots=True)
class BudgetState:
    """Both bands of one budget."""

    warn: BandState = field(default_factory=BandState)
    fail: BandState = field(default_factory=BandState)

    def band(self, band: Band) -> BandState:
        return self.warn if band == "warn" else self.fail

    def to_dict(self) -> dict[str, Any]:
        return {"warn": self.warn.to_dict(), "fail": self.fail.to_dict()}

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> BudgetState:
        raw = raw or {}
        return cls(
            warn=BandState.from_dict(raw.get("warn") or {}), fail=BandState.from_dict(raw.get("fail") or {})
        )

    @property
    def summary(self) -> str:
        """One word for lists: the worst band that is failing, else ok."""
        if self.fail.state == "failing":
            return "failing"
        if self.warn.state == "failing":
            return "warning"
        return "ok"


@dataclass(frozen=True, slots=True)
class AlertEvent:
    kind: EventKind
    band: Band
    verdict: Verdict
    at_ms: int
    failing_since_ms: int | None  # when the band started failing (all kinds)

    @property
    def failing_for_ms(self) -> int | None:
        return None if self.failing_since_ms is None else self.at_ms - self.failing_since_ms

    @property
    def key(self) -> str:
        """Identifies this event: the same key is never delivered twice to one webhook."""
        return f"{self.verdict.budget_id}|{self.band}|{self.kind}|{self.at_ms}"


def breaches(verdict: Verdict, band: Band) -> bool | None:
    """Whether the verdict breaches the band; None when it carries no evidence either way."""
    if verdict.status == "insufficient-data":
        return None
    if band == "fail":
        return verdict.status == "fail"
    return verdict.status in ("warn", "fail")


def _step_band(
    current: BandState, breached: bool, *, now_ms: int, policy: AlertPolicy
) -> tuple[BandState, EventKind | None]:
    window = (*current.window, breached)[-policy.n :]
    count = sum(window)
    if current.state == "failing":
        if count < policy.k and not breached:
            return BandState("recovered", window, current.failing_since_ms, now_ms), "recovered"
        last = current.notified_ms if current.notified_ms is not None else now_ms
        if policy.renotify_ms and now_ms - last >= policy.renotify_ms:
            return replace(current, window=window, notified_ms=now_ms), "still-failing"
        return replace(current, window=window), None
    if count >= policy.k:
        return BandState("failing", window, now_ms, now_ms), "failing"
    return BandState("ok", window), None


def step(
    state: BudgetState, verdict: Verdict, *, now_ms: int, policy: AlertPolicy
) -> tuple[BudgetState, list[AlertEvent]]:
    """Feed one evaluation of one budget; returns the new state and the events to notify."""
    if verdict.status == "insufficient-data":
        return state, []
    new: dict[Band, BandState] = {}
    kinds: dict[Band, EventKind | None] = {}
    for band in BANDS:
        breached = breaches(verdict, band)
        assert breached is not None
        new[band], kinds[band] = _step_band(state.band(band), breached, now_ms=now_ms, policy=policy)
    events = [
        AlertEvent(kind, band, verdict, now_ms, new[band].failing_since_ms)
        for band in BANDS
        if (kind := kinds[band]) is not None
    ]
    if len(events) == 2 and events[0].kind == events[1].kind:
        warn_ev, fail_ev = events
        since = min(s for s in (warn_ev.failing_since_ms, fail_ev.failing_since_ms) if s is not None)
        events = [replace(fail_ev, failing_since_ms=since)]
    return BudgetState(warn=new["warn"], fail=new["fail"]), events
