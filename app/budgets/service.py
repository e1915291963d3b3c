"""Budgets in the server: record each evaluation, advance the alert states, notify.

Two triggers feed it: the ``budgets`` periodic job evaluates every site's field budgets every
FIELDLAB_BUDGET_EVAL_INTERVAL_S, and the check scheduler calls :meth:`BudgetService.on_run` when
a synthetic run has been stored. What a budget *is* comes from an :class:`Evaluator`: it turns a
site's field data or a finished run into verdicts (the pure ``evaluate()`` over the budget file).
Without one, both triggers do nothing, and callers with verdicts of their own (the API, the CI
gate's upload) use :meth:`BudgetService.record` directly. The same job also watches recent
deploys for field regressions (:mod:`app.budgets.watch`), budget file or not.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Protocol

from app.budgets import store
from app.budgets.alerts import AlertEvent, AlertPolicy
from app.budgets.notify import Notifier, payload_for, test_event
from app.budgets.regress import Thresholds
from app.budgets.verdict import Verdict
from app.budgets.watch import deploy_verdicts
from app.config import Settings
from app.db import Database, now_ms
from app.models import Check, CheckRun, Site, Webhook
from app.sites import list_sites

log = logging.getLogger("fieldlab.budgets")


class Evaluator(Protocol):
    async def field_verdicts(self, *, db: Database, site: Site, now_ms: int) -> list[Verdict]: ...

    async def run_verdicts(self, *, db: Database, check: Check, run: CheckRun) -> list[Verdict]: ...


def policy_from(settings: Settings) -> AlertPolicy:
    return AlertPolicy(
        k=settings.alert_k, n=settings.alert_n, renotify_ms=int(settings.alert_renotify_s * 1000)
    )


class BudgetService:
    def __init__(
        self, *, db: Database, settings: Settings, notifier: Notifier, evaluator: Evaluator | None = None
    ) -> None:
        self.db = db
        self.policy = policy_from(settings)
        self.watch_ms = settings.deploy_watch_h * 3_600_000
        self.thresholds = Thresholds(
            alpha=settings.regress_alpha,
            min_effect_pct=settings.regress_min_effect_pct,
            min_samples=settings.regress_min_field_samples,
        )
        self.lab_thresholds = replace(self.thresholds, min_samples=settings.regress_min_lab_runs)
        self.notifier = notifier
        self.evaluator = evaluator
        self._sending: set[asyncio.Task[None]] = set()

    async def record(
        self,
        scope: str,
        verdicts: Sequence[Verdict],
        *,
        run_id: int | None = None,
        at_ms: int | None = None,
        background: bool = False,
    ) -> list[AlertEvent]:
        """Store verdicts as the scope's latest evaluation and notify on state changes (with
        ``background``, without waiting for the webhooks)."""
        recorded = await store.record_verdicts(
            db=self.db,
            scope=scope,
            verdicts=verdicts,
            policy=self.policy,
            payload_for=payload_for,
            at_ms=at_ms,
            run_id=run_id,
        )
        if not recorded.deliveries:
            return recorded.events
        if background:
            task = asyncio.create_task(self.notifier.send(recorded.deliveries))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
        else:
            await self.notifier.send(recorded.deliveries)
        return recorded.events

    async def send_test(self, hook: Webhook) -> None:
        """A test notification to one webhook, through the normal delivery path (and log)."""
        await self.notifier.deliver(hook, test_event(hook.name, now_ms()), hook.scope or "test")

    async def periodic(self) -> None:
        """The ``budgets`` job: send notifications a stopped process left pending, judge every
        site's field budgets, then compare recent deploys."""
        resent = await self.notifier.resend_stale(now_ms=now_ms())
        if resent:
            log.info("sent %d notification(s) left pending", resent)
        await self.evaluate_field()
        await self.watch_deploys()

    async def watch_deploys(self) -> int:
        """Regression verdicts for every site deployed within the watch period. Returns how
        many were stored."""
        if self.watch_ms <= 0:
            return 0

        async def judge(site: Site, at: int) -> list[Verdict]:
            return await deploy_verdicts(
                db=self.db,
                site=site,
                now_ms=at,
                watch_ms=self.watch_ms,
                thresholds=self.thresholds,
                lab_thresholds=self.lab_thresholds,
            )

        return await self._every_site(judge, "deploy regressions of site %s could not be compared")

    async def evaluate_field(self) -> int:
        """The periodic job: every site's field budgets. Returns how many verdicts were stored."""
        evaluator = self.evaluator
        if evaluator is None:
            return 0

        async def judge(site: Site, at: int) -> list[Verdict]:
            return await evaluator.field_verdicts(db=self.db, site=site, now_ms=at)

        return await self._every_site(judge, "field budgets of site %s could not be evaluated")

    async def _every_site(self, judge: Callable[[Site, int], Awaitable[list[Verdict]]], failed: str) -> int:
        """Judge each site at one time and record its verdicts in its ``site:ID`` scope; a site
        that cannot be judged is logged (``failed`` % its name) and skipped. Returns how many
        verdicts were stored."""
        stored = 0
        at = now_ms()
        for site in await list_sites(db=self.db):
            try:
                verdicts = await judge(site, at)
            except Exception:
                log.exception(failed, site.name)
                continue
            if verdicts:
                await self.record(f"site:{site.id}", verdicts, at_ms=at)
                stored += len(verdicts)
        return stored

    async def on_run(self, check: Check, run: CheckRun) -> None:
        """The scheduler's hook after a run is stored. Never raises: a budget problem must not
        turn a finished run into an error."""
        if self.evaluator is None or run.status in ("skipped", "running"):
            return
        try:
            verdicts = await self.evaluator.run_verdicts(db=self.db, check=check, run=run)
            if verdicts:
                # Judged in run order, right away; a slow webhook must not hold the check's run
                # slot (the next scheduled run would be skipped), so sending goes on behind.
                await self.record(f"check:{check.id}", verdicts, run_id=run.id, background=True)
        except Exception:
            log.exception("budgets of check %s run %s could not be evaluated", check.name, run.id)

    async def close(self, grace_s: float = 5.0) -> None:
        """Let notifications in flight finish for a moment; any cut short stay pending in the
        delivery log and the next ``budgets`` job sends them."""
        if self._sending:
            _, late = await asyncio.wait(self._sending, timeout=grace_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await self.notifier.close()
