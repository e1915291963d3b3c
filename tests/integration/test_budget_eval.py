"""Server-side evaluation on both databases: field budgets judged from stored beacons by the
periodic job, every finished check run judged through the scheduler's hook, history stored and
webhooks told about state changes."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app import checks as check_data
from app.budgets import store
from app.budgets.notify import WebhookNotifier
from app.budgets.server_eval import FileEvaluator
from app.budgets.service import BudgetService
from app.config import Settings
from app.db import Database, now_ms
from app.models import Check, Measurement, table
from app.scheduler import CheckScheduler
from tests.conftest import make_site
from tests.integration.webhook_receiver import Receiver

BUDGETS = """
defaults: {window: 24h, min_samples: 50}
budgets:
  - {id: lcp-product, metric: field:LCP, page_group: /p/:id, device: mobile, warn: 2000, fail: 2500}
  - {id: inp-all, metric: field:INP, fail: 200, min_samples: 100000}
  - {id: checkout, metric: "lab:step-duration", step: checkout, warn: 1000, fail: 1500}
"""


@pytest.fixture
def budgets_file(tmp_path: Path) -> Path:
    path = tmp_path / "budgets.yml"
    path.write_text(BUDGETS)
    return path


@pytest.fixture
def settings(settings: Settings, budgets_file: Path, tmp_path: Path) -> Settings:
    return replace(
        settings,
        budgets_file=str(budgets_file),
        alert_k=1,
        alert_n=1,
        webhook_backoff_s=0.05,
        data_dir=str(tmp_path / "data"),
        flows_dir=str(tmp_path),
    )


async def insert_lcp(db: Database, site_id: int, values: Any, *, group: str = "/p/:id") -> None:
    now = now_ms()
    rows = [
        {
            "site_id": site_id,
            "pageview_id": f"pv-{now}-{i}",
            "metric": "LCP",
            "value": float(v),
            "ts": now - 1000 - i * 1000,
            "received_ms": now,
            "url": "https://shop.example/p/1",
            "page_group": group,
            "device": "mobile",
            "nav": "navigate",
            "connection": "4g",
            "browser": "Chrome",
            "is_bot": False,
        }
        for i, v in enumerate(values)
    ]
    async with db.write_conn() as conn:
        await conn.execute(sa.insert(table(Measurement)), rows)


async def test_field_budgets_are_judged_by_the_job(
    client: AsyncTestClient[Litestar], db: Database, receiver: Receiver
) -> None:
    site = await make_site(client)
    scope = f"site:{site['id']}"
    await client.post("/api/v1/webhooks", json={"url": f"{receiver.url}/hook"})
    rng = np.random.default_rng(1)
    values = rng.lognormal(np.log(2900), 0.2, 200)
    await insert_lcp(db, site["id"], values)
    await insert_lcp(db, site["id"], [9000.0] * 20, group="/other")  # another page group: not judged

    r = await client.post("/api/v1/admin/jobs/budgets/run")
    assert r.status_code == 200, r.text
    assert r.json()["error"] is None
    history = (await client.get("/api/v1/budget-status", params={"scope": scope})).json()
    by_id = {h["budget_id"]: h for h in history}
    lcp = next(h for bid, h in by_id.items() if "lcp-product" in bid)
    assert lcp["status"] == "fail"
    assert lcp["limit"] == 2500
    assert lcp["samples"] == 200
    exact = float(np.percentile(values, 75))  # linear interpolation, as the field API
    assert lcp["actual"] == pytest.approx(exact, abs=0.1)
    inp = next(h for bid, h in by_id.items() if "inp-all" in bid)
    assert inp["status"] == "insufficient-data"
    assert not any("checkout" in bid for bid in by_id)  # lab budgets are not judged from field data

    [sent] = [r.json() for r in receiver.on("/hook")]
    assert sent["event"] == "failing"
    assert sent["scope"] == scope
    assert sent["budget"]["id"] == lcp["budget_id"]

    # Unchanged on the next run: stored again, not notified again.
    await client.post("/api/v1/admin/jobs/budgets/run")
    assert len(receiver.on("/hook")) == 1
    assert len((await client.get("/api/v1/budget-status", params={"scope": scope})).json()) == 2 * len(
        history
    )


class ResultRunner:
    """A real ProbeRunner that returns prepared flow results (the browser has its own tests)."""

    def __init__(self, checkout_ms: list[float]) -> None:
        self.checkout_ms = checkout_ms

    async def run(self, check: Check, artifacts: Path) -> tuple[str, dict[str, Any]]:
        ms = self.checkout_ms.pop(0)
        step = {"name": "checkout", "status": "passed", "duration_ms": ms, "navigations": [], "resources": {}}
        return "passed", {"status": "passed", "error": None, "duration_ms": ms, "steps": [step]}

    async def close(self) -> None:
        pass


async def test_every_finished_run_is_judged(
    db: Database, settings: Settings, receiver: Receiver, tmp_path: Path
) -> None:
    (tmp_path / "checkout.py").write_text("async def flow(page, step):\n    pass\n")
    await store.create_webhook(db=db, name="lab", url=f"{receiver.url}/lab", fmt="slack")
    service = BudgetService(
        db=db,
        settings=settings,
        notifier=WebhookNotifier(db=db, timeout_s=5, retries=1, backoff_s=0.05),
        evaluator=FileEvaluator(
            settings.budgets_file, artifacts_root=tmp_path / "artifacts", raw_retention_days=30
        ),
    )
    sched = CheckScheduler(db=db, runner=ResultRunner([800, 1700, 1200, 900]), settings=settings)
    sched.on_run = service.on_run
    check = await check_data.create_check(
        db=db,
        values={"name": "buy", "kind": "flow", "target": "https://shop.example/", "flow_file": "checkout.py"},
        flows_dir=tmp_path,
    )
    assert check.id is not None
    try:
        for _ in range(4):
            await sched.execute(check.id, trigger="manual")
    finally:
        await service.close()
        await sched.runner.close()
    history = await store.status_history(db=db, scope=f"check:{check.id}")
    assert [h.status for h in reversed(history)] == ["pass", "fail", "warn", "pass"]
    assert [h.actual for h in reversed(history)] == [800, 1700, 1200, 900]
    runs = await check_data.list_runs(db=db, check_id=check.id)
    assert {h.run_id for h in history} == {r.id for r in runs}
    # Sent behind the runs (the run slot is not held by webhooks), so in any order.
    texts = sorted(r.json()["text"] for r in receiver.on("/lab"))
    assert len(texts) == 3, texts  # fail (one event for both bands), fail recovered, warn recovered
    assert texts[0].startswith(":large_green_circle: FAIL")
    assert "recovered after failing for" in texts[0]
    assert texts[1].startswith(":large_green_circle: WARN")
    assert "recovered after failing for" in texts[1]
    assert texts[2].startswith(":red_circle: FAIL")
    assert "is failing: 1,700 ms (limit 1,500 ms" in texts[2]


def test_a_broken_budget_file_keeps_the_last_good_budgets(budgets_file: Path) -> None:
    evaluator = FileEvaluator(budgets_file, artifacts_root=Path("/nonexistent"), raw_retention_days=30)
    first = evaluator.budgets()
    assert first is not None
    assert first.spec is not None
    assert len(first.spec.budgets) == 3
    budgets_file.write_text("budgets:\n  - {metric: field:LCP, fail: lots}\n")
    os.utime(budgets_file, (1, 1))  # a different mtime even within the clock's resolution
    assert evaluator.budgets() is first
