"""`fieldlab serve` as a real subprocess on a free port: durability under kill -9, draining on
SIGTERM, and what only a real HTTP server shows (chunked bodies, the README's curl)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from app.config import Settings
from app.db import Database
from tests.conftest import ADMIN, LiveServer, beacon_headers

pytestmark = pytest.mark.slow


def _beacon(pv: str) -> bytes:
    body = {"id": pv, "url": "https://shop.example/p/1", "metrics": {"LCP": 1200, "CLS": 0.01, "INP": 90}}
    return json.dumps(body).encode()


async def _site(server: LiveServer) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.url) as c:
        r = await c.post(
            "/api/v1/sites",
            json={"name": "live", "origins": ["https://shop.example"]},
            headers={"authorization": f"Bearer {ADMIN}"},
        )
        assert r.status_code == 201, r.text
        site: dict[str, Any] = r.json()
        return site


async def _stored_ids(settings: Settings) -> set[str]:
    db = Database(settings)
    try:
        async with db.read_engine.connect() as conn:
            result = await conn.execute(sa.text("SELECT DISTINCT pageview_id FROM measurement"))
            return {row[0] for row in result}
    finally:
        await db.dispose()


async def _load(
    server: LiveServer, key: str, stop: asyncio.Event, acked: set[str], failed: list[str]
) -> None:
    """32 concurrent clients posting unique beacons until told to stop or the server is gone."""
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=5) as c:

        async def worker(n: int) -> None:
            i = 0
            while not stop.is_set():
                pv = f"w{n}-{i}"
                i += 1
                try:
                    r = await c.post(
                        f"/api/v1/beacon?site={key}", content=_beacon(pv), headers=beacon_headers()
                    )
                except httpx.HTTPError as exc:
                    failed.append(type(exc).__name__)
                    await asyncio.sleep(0.01)
                    if len(failed) > 200:
                        return
                    continue
                if 200 <= r.status_code < 300:
                    acked.add(pv)
                else:
                    failed.append(str(r.status_code))

        await asyncio.gather(*(worker(n) for n in range(32)))


async def test_kill_9_mid_load_loses_no_acknowledged_beacon(
    live_server: LiveServer, settings: Settings
) -> None:
    site = await _site(live_server)
    stop = asyncio.Event()
    acked: set[str] = set()
    failed: list[str] = []
    load = asyncio.create_task(_load(live_server, site["key"], stop, acked, failed))
    deadline = time.monotonic() + 20
    while len(acked) < 300 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert live_server.proc is not None
    os.kill(live_server.proc.pid, signal.SIGKILL)  # mid-load: requests are in flight right now
    live_server.proc.wait()
    await asyncio.sleep(0.5)
    stop.set()
    await load
    assert len(acked) >= 300, f"load too light to prove anything: {len(acked)} acknowledged"
    assert failed, "the kill happened after the load, not during it"

    live_server.start()  # the same database, as an operator would restart it
    stored = await _stored_ids(settings)
    lost = acked - stored
    assert not lost, f"{len(lost)} acknowledged beacons lost, e.g. {sorted(lost)[:5]}"
    async with httpx.AsyncClient(base_url=live_server.url) as c:
        r = await c.get(f"/api/v1/sites/{site['id']}/summary", headers={"authorization": f"Bearer {ADMIN}"})
    assert r.json()["metrics"]["LCP"]["count"] == len(stored)


async def test_sigterm_drains_the_queue_and_exits_cleanly(
    live_server: LiveServer, settings: Settings
) -> None:
    site = await _site(live_server)
    stop = asyncio.Event()
    acked: set[str] = set()
    failed: list[str] = []
    load = asyncio.create_task(_load(live_server, site["key"], stop, acked, failed))
    while len(acked) < 200:
        await asyncio.sleep(0.05)
    assert live_server.proc is not None
    proc = live_server.proc
    proc.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(proc.wait, 30)
    stop.set()
    await load
    live_server.proc = None
    # uvicorn re-raises the signal after a graceful shutdown, so the exit status is SIGTERM's.
    assert code in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in live_server.log_path.read_text()
    stored = await _stored_ids(settings)
    assert acked <= stored, f"{len(acked - stored)} acknowledged beacons missing after SIGTERM"


def test_chunked_body_over_limit_gets_413_from_the_real_server(live_server: LiveServer) -> None:
    """No Content-Length: the limit is enforced while the body streams in."""
    r = httpx.post(
        f"{live_server.url}/api/v1/sites",
        json={"name": "chunky", "origins": ["https://shop.example"]},
        headers={"authorization": f"Bearer {ADMIN}"},
    )
    key = r.json()["key"]

    def chunks() -> Any:
        yield b'{"id":"big","url":"https://shop.example/","group":"'
        for _ in range(80):
            yield b"a" * 1024
        yield b'"}'

    big = httpx.post(
        f"{live_server.url}/api/v1/beacon?site={key}", content=chunks(), headers=beacon_headers()
    )
    assert big.status_code == 413
    small = httpx.post(
        f"{live_server.url}/api/v1/beacon?site={key}", content=iter([_beacon("ok")]), headers=beacon_headers()
    )
    assert small.status_code == 204


def test_readme_curl_example_shows_up_in_the_summary(live_server: LiveServer) -> None:
    """The exact commands the README's quick start gives, run against a real server."""
    made = httpx.post(
        f"{live_server.url}/api/v1/sites",
        json={"name": "shop", "origins": ["https://shop.example"]},
        headers={"authorization": f"Bearer {ADMIN}"},
    ).json()
    curl = [
        "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
        f"{live_server.url}/api/v1/beacon?site={made['key']}",
        "-H", "Content-Type: text/plain",
        "-H", "Origin: https://shop.example",
        "-A", "Mozilla/5.0 (X11; Linux x86_64) Chrome/130.0 Safari/537.36",
        "--data", '{"id":"pv-1","url":"https://shop.example/product/42","metrics":{"LCP":2300,"CLS":0.08,"INP":180}}',
    ]  # fmt: skip
    status = subprocess.run(curl, capture_output=True, text=True, check=True).stdout
    assert status == "204"
    summary = httpx.get(
        f"{live_server.url}/api/v1/sites/{made['id']}/summary?page=/product/7&device=desktop",
        headers={"authorization": f"Bearer {ADMIN}"},
    ).json()["metrics"]
    assert summary["LCP"]["count"] == 1
    assert summary["LCP"]["p75"] == 2300
    assert summary["CLS"]["p75"] == 0.08
    assert summary["FCP"]["count"] == 0
