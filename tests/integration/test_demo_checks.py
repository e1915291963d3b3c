"""What `make run` relies on (SQLite and PostgreSQL): `fieldlab demo seed` schedules the demo
flow and Lighthouse audit idempotently, and the demo flow passes against the demo shop of a
real server."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from app.config import Settings
from tests.conftest import ADMIN, LiveServer

ROOT = Path(__file__).resolve().parents[2]
MAKE_RUN = {"FIELDLAB_ALLOW_PRIVATE_TARGETS": "1", "FIELDLAB_FLOWS_DIR": str(ROOT / "probes" / "examples")}


def query(database_url: str, sql: str) -> list[tuple[Any, ...]]:
    async def go() -> list[tuple[Any, ...]]:
        engine = create_async_engine(database_url)
        try:
            async with engine.connect() as conn:
                return [tuple(row) for row in await conn.execute(sa.text(sql))]
        finally:
            await engine.dispose()

    return asyncio.run(go())


def seed(database_url: str, port: int, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FIELDLAB_")}
    clean.update(
        FIELDLAB_DATABASE_URL=database_url, FIELDLAB_HOST="127.0.0.1", FIELDLAB_PORT=str(port), **env
    )
    out = subprocess.run(
        [sys.executable, "-m", "app", "demo", "seed", *args],
        cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return out


def test_demo_seed_schedules_the_demo_checks_once(database_url: str) -> None:
    out = seed(database_url, 8000)  # private targets off: the site, and the reason for no checks
    assert "demo checks not scheduled: target: refused http://127.0.0.1:8000" in out.stderr.replace("\n", " ")
    assert "FIELDLAB_ALLOW_PRIVATE_TARGETS=1" in out.stderr.replace("\n", "")
    assert query(database_url, "SELECT count(*) FROM synthetic_check") == [(0,)]
    assert (
        "demo field history: " in out.stderr
    )  # page views over 14 days (tests/integration/test_demo_history.py)
    generated = query(database_url, "SELECT count(*) FROM measurement")
    assert generated[0][0] > 10_000

    for port in (8000, 8765):  # again, on another port: still two checks, retargeted
        out = seed(database_url, port, **MAKE_RUN)
        assert "demo check demo-shop-flow (every 300 s)" in out.stderr
        assert "demo check demo-home-lighthouse (every 3600 s)" in out.stderr
        assert "demo field history" not in out.stderr  # once: the site has field data now
        # The new checks get a generated lab history, once: a run every 2 h (flow) and 6 h (audit).
        assert ("demo lab history: 224 runs of the demo checks over 14 days" in out.stderr) is (port == 8000)
    rows = query(
        database_url, "SELECT name, kind, target, flow_file, interval_s FROM synthetic_check ORDER BY id"
    )
    assert rows == [
        ("demo-shop-flow", "flow", "http://127.0.0.1:8765", "demo_shop.py", 300),
        ("demo-home-lighthouse", "lighthouse", "http://127.0.0.1:8765/demo/", None, 3600),
    ]
    assert query(database_url, "SELECT count(*) FROM site WHERE name = 'demo'") == [(1,)]
    assert query(database_url, "SELECT count(*) FROM measurement") == generated
    runs = query(database_url, "SELECT c.kind, r.trigger, r.status, count(*) FROM check_run r JOIN synthetic_check c"
                               " ON c.id = r.check_id GROUP BY c.kind, r.trigger, r.status ORDER BY c.kind")  # fmt: skip
    assert runs == [("flow", "demo", "passed", 168), ("lighthouse", "demo", "passed", 56)]
    # As in the field history, the product page got slower with the latest generated deploy.
    latest_deploy = query(database_url, "SELECT max(ts) FROM deploy_marker")[0][0]
    product: dict[bool, list[float]] = {True: [], False: []}
    for started, result in query(database_url, "SELECT r.started_ms, r.result FROM check_run r JOIN synthetic_check c"
                                               " ON c.id = r.check_id WHERE c.kind = 'flow'"):  # fmt: skip
        steps = (json.loads(result) if isinstance(result, str) else result)["steps"]
        product[started >= latest_deploy].append(steps[1]["navigations"][0]["vitals"]["LCP"])
    assert statistics.median(product[True]) > 1.4 * statistics.median(product[False])


def test_no_history_means_no_generated_page_views_or_runs(database_url: str) -> None:
    out = seed(database_url, 8000, "--no-history", **MAKE_RUN)
    assert "history" not in out.stderr
    assert query(database_url, "SELECT count(*) FROM synthetic_check") == [(2,)]
    assert query(database_url, "SELECT count(*) FROM check_run") == [(0,)]
    assert query(database_url, "SELECT count(*) FROM measurement") == [(0,)]


def test_without_the_examples_dir_the_demo_flow_is_declarative(database_url: str, tmp_path: Path) -> None:
    seed(database_url, 8000, FIELDLAB_ALLOW_PRIVATE_TARGETS="1", FIELDLAB_FLOWS_DIR=str(tmp_path))
    rows = query(database_url, "SELECT flow_file, steps FROM synthetic_check WHERE name = 'demo-shop-flow'")
    assert rows[0][0] is None
    assert "Autumn sale" in str(rows[0][1])


@pytest.mark.slow
@pytest.mark.browser
def test_the_demo_flow_passes_against_the_demo_shop(settings: Settings, tmp_path: Path) -> None:
    server = LiveServer(replace(settings, demo=True), tmp_path / "server.log")
    seed(settings.database_url, server.settings.port, **MAKE_RUN)
    # Scheduling off: run the flow only (the audit is covered elsewhere and takes the machine).
    server.extra_env = {**MAKE_RUN, "FIELDLAB_SCHEDULER": "0", "FIELDLAB_DATA_DIR": str(tmp_path / "data")}
    server.start()
    try:
        with httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {ADMIN}"}, timeout=30) as c:
            flow = next(x for x in c.get("/api/v1/checks").json() if x["name"] == "demo-shop-flow")
            run = c.post(f"/api/v1/checks/{flow['id']}/run").json()
            deadline = time.monotonic() + 120
            while run["status"] == "running" and time.monotonic() < deadline:
                time.sleep(0.5)
                run = c.get(f"/api/v1/runs/{run['id']}").json()
    finally:
        server.stop()
    assert run["status"] == "passed", run
    steps = run["result"]["steps"]
    assert [s["name"] for s in steps] == ["home", "product", "add to cart"]
    # The demo's deliberate costs show up: a layout shift on the product page, a slow click.
    assert steps[1]["navigations"][0]["vitals"]["CLS"] > 0
    assert steps[2]["navigations"][-1]["vitals"]["INP"] > 100
    # A clean shop: nothing failed to load (the browser's own /favicon.ico included).
    assert [(s["console_errors"], s["failed_requests"]) for s in steps] == [([], [])] * 3
