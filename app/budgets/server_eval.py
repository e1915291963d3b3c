"""The server's :class:`~app.budgets.service.Evaluator`: the budget file FIELDLAB_BUDGETS_FILE
judged with the pure ``evaluate()`` against stored data.

* Field budgets: for each site, the percentiles the file asks for (metric, page group or every
  page group, device, window ending now) are read with the same queries as the field API, then
  judged. Every site is judged by the file's field budgets; a site without enough samples gets
  ``insufficient-data`` verdicts, which the alert state machine ignores.
* A finished run: a flow's result, or a Lighthouse run's reports (from its artifacts), judged by
  the file's lab and Lighthouse budgets and, for a Lighthouse config, its ``ci.assert``.

The file is read again when it changes on disk, so budgets can be edited without a restart; a
file that stops being valid keeps the last good budgets and logs why.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from app.budgets.evaluate import Budgets, Data, FieldStat, evaluate, field_requests
from app.budgets.load import load_budgets
from app.budgets.source import BudgetFileError
from app.budgets.verdict import Verdict
from app.db import Database
from app.field.query import Filters, Scope, aggregate, stat_of
from app.field.stats import QUANTILES
from app.models import Check, CheckRun, Site

log = logging.getLogger("fieldlab.budgets")
DAY_MS = 86_400_000


class FileEvaluator:
    def __init__(self, path: str | Path, *, artifacts_root: Path, raw_retention_days: int) -> None:
        self.path = Path(path)
        self.artifacts_root = artifacts_root
        self.raw_retention_days = raw_retention_days
        self._budgets: Budgets | None = None
        self._mtime: float | None = None

    def budgets(self) -> Budgets | None:
        """The file's budgets, re-read when its modification time changes."""
        try:
            mtime = self.path.stat().st_mtime
        except OSError as exc:
            log.warning("budget file %s unreadable: %s", self.path, exc)
            return self._budgets
        if mtime != self._mtime:
            try:
                self._budgets = load_budgets(self.path)
            except (BudgetFileError, OSError) as exc:
                log.error("budget file %s not loaded (keeping the previous budgets): %s", self.path, exc)
            self._mtime = mtime
        return self._budgets

    async def field_verdicts(self, *, db: Database, site: Site, now_ms: int) -> list[Verdict]:
        budgets = await asyncio.to_thread(self.budgets)
        if budgets is None or budgets.spec is None or site.id is None:
            return []
        stats: list[FieldStat] = []
        for metric, page_group, device, window_s in field_requests(budgets.spec):
            every_group = page_group == "*"
            scope = Scope(
                site.id,
                metric,
                now_ms - window_s * 1000,
                now_ms,
                Filters(page_group=None if every_group else page_group, device=device),
                group_by="page_group" if every_group else None,
                raw_horizon_ms=now_ms - self.raw_retention_days * DAY_MS,
            )
            aggs = await aggregate(db, scope)
            for (_, group), agg in aggs.items():
                stats.append(
                    FieldStat(
                        metric=metric,
                        window_s=window_s,
                        count=agg.count,
                        values={s: _float(stat_of(agg, s, metric)) for s in QUANTILES},
                        page_group=group if every_group else page_group,
                        device=device,
                    )
                )
        return evaluate(Data(field=stats), budgets)

    async def run_verdicts(self, *, db: Database, check: Check, run: CheckRun) -> list[Verdict]:
        budgets = await asyncio.to_thread(self.budgets)
        if budgets is None or not run.result or run.status not in ("passed", "failed", "flaky"):
            return []
        if check.kind == "lighthouse":
            lhrs = await asyncio.to_thread(self._lhrs, run)
            return evaluate(Data(lighthouse=lhrs), budgets) if lhrs else []
        return evaluate(Data(flows=[run.result]), budgets)

    def _lhrs(self, run: CheckRun) -> list[dict[str, Any]]:
        from probes.lighthouse import load_lhr

        assert run.result is not None
        folder = self.artifacts_root / str(run.id)
        out = []
        for rel in run.result.get("lhr_paths") or []:
            try:
                out.append(load_lhr(folder / rel))
            except (OSError, ValueError) as exc:
                log.warning("run %s: report %s unreadable: %s", run.id, rel, exc)
        return out


def _float(value: float | int | None) -> float | None:
    return None if value is None else float(value)
