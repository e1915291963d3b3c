"""fieldlab's own metrics on SQLite and PostgreSQL: they move when beacons, queries, check runs
and alert deliveries flow; promtool accepts the exposition; every series the Grafana dashboard
uses exists; the Chromium gauge counts real browser processes."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from prometheus_client.parser import text_string_to_metric_families

from app import checks as check_data
from app.config import Settings
from app.db import Database
from app.models import Check
from app.observability import HostCollector
from app.scheduler import CheckScheduler
from tests.conftest import beacon_headers, make_site
from tests.integration.webhook_receiver import Receiver

Client = AsyncTestClient[Litestar]
ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana-fieldlab.json"


def promtool() -> str:
    found = shutil.which("promtool") or str(ROOT / ".venv" / "bin" / "promtool")
    if not Path(found).is_file():
        pytest.fail("promtool is missing: `make install` unpacks it from Debian's prometheus package")
    return found


def value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


class QuickRunner:
    """A real ProbeRunner that passes at once (the browser runner has its own tests)."""

    async def run(self, check: Check, artifacts: Path) -> tuple[str, dict[str, Any]]:
        await asyncio.sleep(0.05)
        return "passed", {"status": "passed", "error": None}

    async def close(self) -> None:
        pass


def page_view(n: int) -> bytes:
    body = {"v": 1, "id": f"pv-{n}", "url": "https://shop.example/checkout", "nav": "navigate",
            "metrics": {"LCP": 1800.0 + n, "TTFB": 120}}  # fmt: skip
    return json.dumps(body).encode()


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    return replace(settings, alert_k=1, alert_n=1, data_dir=str(tmp_path / "data"), webhook_backoff_s=0.01)


async def scrape(client: Client) -> str:
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return r.text


async def test_metrics_move_when_traffic_flows(
    client: Client, app: Litestar, db: Database, settings: Settings, receiver: Receiver, tmp_path: Path
) -> None:
    site = await make_site(client)
    before = await scrape(client)
    for n in range(3):
        r = await client.post(
            f"/api/v1/beacon?site={site['key']}", content=page_view(n), headers=beacon_headers()
        )
        assert r.status_code == 204, r.text
    bad = await client.post(f"/api/v1/beacon?site={site['key']}", content=b"{nope", headers=beacon_headers())
    assert bad.status_code == 400
    summary = await client.get(f"/api/v1/sites/{site['id']}/summary")
    assert summary.status_code == 200, summary.text

    # A check run through a scheduler (on the test's own engines: the app's belong to its loop),
    # and an alert delivered to a real webhook receiver.
    (tmp_path / "home.py").write_text("async def flow(page, step):\n    await page.goto('/')\n")
    check = await check_data.create_check(
        db=db,
        values={"name": "home", "kind": "flow", "target": "https://shop.example/", "flow_file": "home.py"},
        flows_dir=tmp_path,
    )
    assert check.id is not None
    metrics = app.state.services.metrics
    scheduler = CheckScheduler(db=db, runner=QuickRunner(), settings=settings, metrics=metrics)
    await scheduler.execute(check.id, trigger="manual")
    hook = await client.post("/api/v1/webhooks", json={"url": receiver.url + "/hook", "name": "ops"})
    assert hook.status_code == 201, hook.text
    failing = {"budget_id": "field:x:LCP", "name": "LCP p75", "status": "fail", "actual": 4000.0,
               "limit": 2500.0, "margin": -1500.0, "unit": "ms", "samples": 100}  # fmt: skip
    r = await client.post(
        "/api/v1/budget-status", json={"scope": f"site:{site['id']}", "verdicts": [failing]}
    )
    assert r.status_code == 201, r.text
    assert len(receiver.on("/hook")) == 1

    after = await scrape(client)
    delta = {name: value(after, name) - value(before, name)
             for name in ("fieldlab_beacons_accepted_total", "fieldlab_beacons_rejected_total")}  # fmt: skip
    assert delta == {"fieldlab_beacons_accepted_total": 3, "fieldlab_beacons_rejected_total": 1}
    beacon = {"method": "POST", "route": "/api/v1/beacon"}
    assert value(after, "fieldlab_http_request_duration_seconds_count", status="204", **beacon) == 3
    assert value(after, "fieldlab_http_request_duration_seconds_count", status="400", **beacon) == 1
    # The route template, not the raw path: one label value for every site.
    assert value(after, "fieldlab_http_request_duration_seconds_count",
                 route="/api/v1/sites/{site_id}/summary", status="200") == 1  # fmt: skip
    assert f"/api/v1/sites/{site['id']}/summary" not in after
    assert (
        value(after, "fieldlab_writer_batch_size_sum") - value(before, "fieldlab_writer_batch_size_sum") == 3
    )
    assert value(after, "fieldlab_writer_commit_seconds_count") > value(
        before, "fieldlab_writer_commit_seconds_count"
    )
    assert value(after, "fieldlab_db_query_duration_seconds_count", query="field.raw") >= 1
    assert value(after, "fieldlab_db_query_duration_seconds_count", query="other") > 0
    assert value(after, "fieldlab_check_run_duration_seconds_count", kind="flow", outcome="passed") == 1
    assert value(after, "fieldlab_check_run_duration_seconds_sum", kind="flow", outcome="passed") >= 0.05
    assert value(after, "fieldlab_alert_deliveries_total", outcome="delivered") == 1
    free = value(after, "fieldlab_data_dir_free_bytes")
    assert abs(free - shutil.disk_usage(tmp_path).free) < 512 * 2**20
    assert value(after, "fieldlab_ingest_queue_depth") == 0

    # promtool's own checks (names, types, suffixes) pass on the real output.
    checked = await asyncio.to_thread(
        subprocess.run,
        [promtool(), "check", "metrics"],
        input=after,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == "", checked.stdout

    # Every series the Grafana dashboard plots is exposed.
    exposed = {s.name for family in text_string_to_metric_families(after) for s in family.samples}
    exposed |= {line.split()[2] for line in after.splitlines() if line.startswith("# TYPE")}
    referenced = dashboard_series()
    assert len(referenced) >= 10
    assert not referenced - exposed - {f"{n}_{s}" for n in exposed for s in ("bucket", "count", "sum")}, (
        referenced - exposed
    )


def dashboard_series() -> set[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    return {m for e in exprs for m in re.findall(r"\bfieldlab_[a-z0-9_]+", e)}


async def test_request_id_is_echoed_or_made(client: Client) -> None:
    given = await client.get("/healthz", headers={"x-request-id": "deploy-42.abc"})
    assert given.headers["x-request-id"] == "deploy-42.abc"
    made = await client.get("/healthz", headers={"x-request-id": "bad id\twith <junk>"})
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]+", made.headers["x-request-id"])
    other = await client.get("/healthz")
    assert other.headers["x-request-id"] != made.headers["x-request-id"]


@pytest.mark.slow
def test_chromium_gauge_counts_real_browser_processes(tmp_path: Path) -> None:
    collector = HostCollector(chromium="/usr/bin/chromium", data_dir=str(tmp_path))
    before = collector.chromium_processes()
    browser = subprocess.Popen(
        ["/usr/bin/chromium", "--headless", "--no-sandbox", f"--user-data-dir={tmp_path / 'profile'}",
         "--remote-debugging-port=0", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while collector.chromium_processes() <= before and time.monotonic() < deadline:
            time.sleep(0.1)
        assert collector.chromium_processes() > before
    finally:
        browser.terminate()
        browser.wait(10)
    deadline = time.monotonic() + 15
    while collector.chromium_processes() > before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert collector.chromium_processes() <= before


async def run_self_alerts(client: Client) -> None:
    r = await client.post("/api/v1/admin/jobs/self-alerts/run")
    assert r.status_code == 200, r.text
    assert r.json()["error"] is None


def self_events(receiver: Receiver, rule: str) -> list[str]:
    out = []
    for got in receiver.on("/self"):
        body = got.json()
        assert body["scope"] == "self"
        if body["budget"]["id"] == f"self:{rule}":
            out.append(body["event"])
    return out


@pytest.fixture
def self_alert_settings(settings: Settings) -> Settings:
    # The job's own timer stays out of the way; the test runs it through the admin endpoint.
    return replace(settings, self_alert_interval_s=3600, self_alert_reject_rate=0.0, self_alert_min_free_mb=0)


async def test_reject_rate_self_alert_fires_and_recovers(
    self_alert_settings: Settings, receiver: Receiver
) -> None:
    from app.server import create_app

    async with AsyncTestClient(
        app=create_app(self_alert_settings), base_url="http://127.0.0.1:8000"
    ) as client:
        client.headers["authorization"] = "Bearer " + self_alert_settings.admin_token
        site = await make_site(client)
        hook = await client.post("/api/v1/webhooks", json={"url": receiver.url + "/self", "name": "ops"})
        assert hook.status_code == 201, hook.text
        url = f"/api/v1/beacon?site={site['key']}"
        assert (await client.post(url, content=b"[1,", headers=beacon_headers())).status_code == 400
        await run_self_alerts(client)
        assert self_events(receiver, "ingest-reject-rate") == ["failing"]
        alerts = (await client.get("/api/v1/alerts")).json()
        assert any(a["scope"] == "self" and a["budget_id"] == "self:ingest-reject-rate" for a in alerts), (
            alerts
        )
        # Only good beacons since: the condition clears.
        assert (await client.post(url, content=page_view(1), headers=beacon_headers())).status_code == 204
        await run_self_alerts(client)
        assert self_events(receiver, "ingest-reject-rate") == ["failing", "recovered"]
        assert self_events(receiver, "disk-free") == []  # a threshold of 0 never fires


async def test_free_disk_self_alert_fires_and_recovers(
    self_alert_settings: Settings, receiver: Receiver
) -> None:
    from app.server import create_app

    free_mb = shutil.disk_usage("/").free / 2**20
    app = create_app(replace(self_alert_settings, data_dir="/", self_alert_min_free_mb=free_mb * 4))
    async with AsyncTestClient(app=app, base_url="http://127.0.0.1:8000") as client:
        client.headers["authorization"] = "Bearer " + self_alert_settings.admin_token
        hook = await client.post("/api/v1/webhooks", json={"url": receiver.url + "/self", "name": "ops"})
        assert hook.status_code == 201, hook.text
        await run_self_alerts(client)
        assert self_events(receiver, "disk-free") == ["failing"]
        [body] = [g.json() for g in receiver.on("/self") if g.json()["budget"]["id"] == "self:disk-free"]
        assert body["unit"] == "MiB"
        assert body["actual"] < body["limit"]
        assert body["detail"].startswith("free on the disk of /")
        # The operator frees space (here: lowers the bar below what is free).
        app.state.self_alerts.settings = replace(app.state.self_alerts.settings, self_alert_min_free_mb=1.0)
        await run_self_alerts(client)
        assert self_events(receiver, "disk-free") == ["failing", "recovered"]
        metrics = (await client.get("/metrics")).text
        assert value(metrics, "fieldlab_self_alert_breached", rule="disk-free") == 0


async def test_health_page_shows_live_numbers_and_self_alerts(
    self_alert_settings: Settings, db: Database
) -> None:
    from app.server import create_app
    from app.sites import create_token
    from tests.integration.ui_data import sign_in

    async with AsyncTestClient(
        app=create_app(self_alert_settings), base_url="http://127.0.0.1:8000"
    ) as client:
        client.headers["authorization"] = "Bearer " + self_alert_settings.admin_token
        site = await make_site(client)
        url = f"/api/v1/beacon?site={site['key']}"
        for n in range(2):
            assert (await client.post(url, content=page_view(n), headers=beacon_headers())).status_code == 204
        assert (await client.post(url, content=b"{", headers=beacon_headers())).status_code == 400
        await run_self_alerts(client)
        client.headers.pop("authorization")
        client.follow_redirects = False
        await sign_in(client, self_alert_settings.admin_token)
        r = await client.get("/ui/health")
        assert r.status_code == 200, r.text
        cells = dict(re.findall(r'data-k="([a-z_]+)">([^<]*)<', r.text))
        assert cells["accepted"] == "2"
        assert cells["rejected"] == "1"
        assert cells["queue_depth"] == "0"
        assert re.fullmatch(r"[0-9.]+ ms / [0-9.]+ ms", cells["commit"]), cells["commit"]
        assert int(cells["free"].removesuffix(" MiB").replace(",", "")) > 0
        assert re.search(r'data-rule="self:ingest-reject-rate">.*?badge poor">failing<', r.text, re.S)
        assert re.search(r'data-rule="self:disk-free">.*?badge good">ok<', r.text, re.S)
        # Each rule's latest verdict, as stored: 1 of 3 beacons rejected, against the limit (0 here).
        reject = re.search(r'data-rule="self:ingest-reject-rate">(.*?)</tr>', r.text, re.S)
        assert reject
        # Written as the Budgets page writes a verdict (format.amount).
        assert re.findall(r'<td class="num">([^<]*)</td>', reject[1]) == ["0.333", "0"]
        assert re.search(r'data-rule="self:disk-free">.*?<td>free on the disk of /', r.text, re.S)
        assert "<code>/api/v1/beacon</code>" in r.text  # the busiest route, by template
        _, read = await create_token(db=db, scope="read")
        await client.post("/ui/logout")
        client.cookies.clear()
        await sign_in(client, read)
        assert (await client.get("/ui/health")).status_code == 403
