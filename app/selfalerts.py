"""Self-alerts: rules on fieldlab's own health, judged by a periodic job and fed through the same
alert pipeline as budgets (state machine with K of N, webhooks, delivery log) under the scope
``self``. Each rule is one :class:`Verdict` per evaluation, ``budget_id`` ``self:<rule>``:

* ``self:ingest-reject-rate`` — share of beacons refused since the last evaluation (all workers,
  from the metrics); no beacons at all is ``insufficient-data``, which neither fires nor heals;
* ``self:writer-lag`` — age of the oldest beacon waiting for the group-commit writer;
* ``self:scheduler-lag`` — how late the last scheduled check run started;
* ``self:disk-free`` — free space on the disk that holds the data directory.
"""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

from app.budgets.verdict import Status, Verdict
from app.config import Settings
from app.observability import Metrics

SCOPE = "self"
RATE_WINDOW_S = 300.0
RULES = ("ingest-reject-rate", "writer-lag", "scheduler-lag", "disk-free")


class Recorder(Protocol):
    async def record(self, scope: str, verdicts: list[Verdict]) -> Any: ...


def _max_verdict(rule: str, name: str, actual: float, limit: float, unit: str, detail: str = "") -> Verdict:
    status: Status = "fail" if actual > limit else "pass"
    return Verdict(f"{SCOPE}:{rule}", name, status, actual, limit, limit - actual, unit, None, detail)


@dataclass
class _Totals:
    accepted: float
    rejected: float


class SelfAlerts:
    def __init__(
        self, *, settings: Settings, metrics: Metrics, writer: Any, scheduler: Any, recorder: Recorder
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.writer = writer
        self.scheduler = scheduler
        self.recorder = recorder
        self._last: _Totals | None = None
        # (monotonic time, totals) seen by evaluations and page views: the health page's rates.
        self._seen: deque[tuple[float, _Totals]] = deque(maxlen=64)

    def rates(self, samples: dict[str, list[tuple[dict[str, str], float]]] | None = None) -> dict[str, float]:
        """Beacons accepted and rejected per second over the last few minutes (empty until two
        looks some time apart)."""
        now, totals = time.monotonic(), self._totals(samples)
        while self._seen and now - self._seen[0][0] > RATE_WINDOW_S:
            self._seen.popleft()
        if not self._seen or now - self._seen[-1][0] >= 1:
            self._seen.append((now, totals))
        then, old = self._seen[0]
        if now - then < 1:
            return {}
        span = now - then
        return {"accepted_per_s": (totals.accepted - old.accepted) / span,
                "rejected_per_s": (totals.rejected - old.rejected) / span, "window_s": span}  # fmt: skip

    def _totals(self, samples: dict[str, list[tuple[dict[str, str], float]]] | None = None) -> _Totals:
        samples = samples if samples is not None else self.metrics.samples()
        accepted = sum(v for _, v in samples.get("fieldlab_beacons_accepted_total", []))
        rejected = sum(v for _, v in samples.get("fieldlab_beacons_rejected_total", []))
        return _Totals(accepted, rejected)

    def verdicts(self) -> list[Verdict]:
        s = self.settings
        totals = self._totals()
        self._seen.append((time.monotonic(), totals))
        last, self._last = self._last, totals
        out: list[Verdict] = []
        base = last or _Totals(0.0, 0.0)  # the first look counts from the start
        accepted = max(0.0, totals.accepted - base.accepted)
        rejected = max(0.0, totals.rejected - base.rejected)
        if accepted + rejected == 0:
            out.append(Verdict(f"{SCOPE}:ingest-reject-rate", "ingest reject rate", "insufficient-data",
                               None, s.self_alert_reject_rate, None, "", 0, "no beacons since the last look"))  # fmt: skip
        else:
            rate = rejected / (accepted + rejected)
            v = _max_verdict("ingest-reject-rate", "ingest reject rate", rate, s.self_alert_reject_rate, "",
                             f"{rejected:.0f} of {accepted + rejected:.0f} beacons refused")  # fmt: skip
            out.append(Verdict(**{**v.to_dict(), "samples": int(accepted + rejected)}))
        lag = self.writer.oldest_wait_s
        out.append(_max_verdict("writer-lag", "writer lag", lag, s.self_alert_writer_lag_s, "s",
                                f"{getattr(self.writer, 'depth', 0)} beacons queued"))  # fmt: skip
        if s.scheduler:
            out.append(_max_verdict("scheduler-lag", "scheduler lag", float(self.scheduler.lag_s),
                                    s.self_alert_scheduler_lag_s, "s"))  # fmt: skip
        free_mb = self.metrics.host.free_bytes() / 2**20
        limit = s.self_alert_min_free_mb
        status: Status = "fail" if free_mb < limit else "pass"
        out.append(Verdict(f"{SCOPE}:disk-free", "free disk", status, round(free_mb, 1), limit,
                           round(free_mb - limit, 1), "MiB", None,
                           f"free on the disk of {os.path.abspath(self.metrics.host.data_dir)}"))  # fmt: skip
        return out

    async def periodic(self) -> None:
        verdicts = self.verdicts()
        for v in verdicts:
            if v.status != "insufficient-data":
                self.metrics.self_alert_breached.labels(v.budget_id.removeprefix(f"{SCOPE}:")).set(
                    1 if v.status == "fail" else 0
                )
        await self.recorder.record(SCOPE, verdicts)
