"""Checks run end to end through the API of a real `fieldlab serve` (SQLite and PostgreSQL):
real Chromium, real Lighthouse, pages served by this test on 127.0.0.1.

One server per database runs a declarative flow, a Python flow from the flows directory, a
failing flow and a Lighthouse audit side by side (one warm browser for the flows), then the test
checks what was stored, fetches the artifacts with and without a token, and checks that
stopping the server leaves none of its processes behind."""

from __future__ import annotations

import gzip
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import Settings
from probes import procs
from probes.lighthouse import choose_representative
from tests.conftest import ADMIN, LiveServer
from tests.probes.probe_helpers import SiteServer, serve

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.serial]

HOME = """<!doctype html><html><head><title>Shop</title><link rel="stylesheet" href="/shop.css"></head>
<body><h1>Shop</h1><input id="q" autofocus>
<script>
document.getElementById("q").addEventListener("keydown", function (e) {
  if (e.key === "Enter") location.href = "/search?q=" + encodeURIComponent(this.value);
});
</script></body></html>"""
SEARCH = """<!doctype html><html><head><title>Results</title><link rel="stylesheet" href="/shop.css"></head>
<body><h1>Results</h1><div class="results">Results for <b id="term"></b></div>
<script>document.getElementById("term").textContent = new URLSearchParams(location.search).get("q");</script>
</body></html>"""
PY_FLOW = """
async def flow(page, step):
    async with step("home"):
        await page.goto("/")
    async with step("search"):
        await page.fill("#q", "boots")
        await page.press("#q", "Enter")
        await page.wait_for_selector(".results:has-text('boots')")
"""
STEPS = [
    {"step": "home", "actions": [{"goto": "/"}, {"wait_for": "h1"}]},
    {"step": "search", "actions": [{"fill": {"selector": "#q", "value": "shoes"}}, {"press": {"selector": "#q", "key": "Enter"}}]},
    {"assert_text": {"selector": ".results", "text": "shoes"}},
]  # fmt: skip
FAILING = [{"step": "greet", "actions": [{"goto": "/"}, {"assert_text": {"selector": "h1", "text": "Goodbye", "timeout": 0.5}}]}]  # fmt: skip
AUTH = {"authorization": f"Bearer {ADMIN}"}


@pytest.fixture
def shop() -> Iterator[SiteServer]:
    for server in serve("127.0.0.1"):
        server.html("/", HOME)
        server.html("/search", SEARCH)
        server.routes["/shop.css"] = (200, "text/css", "body{font:16px sans-serif;margin:2rem}" * 20)
        yield server


@pytest.fixture
def server(settings: Settings, tmp_path: Path) -> Iterator[LiveServer]:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "shop.py").write_text(PY_FLOW)
    live = LiveServer(settings, tmp_path / "server.log")
    # The pages are on 127.0.0.1: tests turn private targets on explicitly.
    live.extra_env = {"FIELDLAB_ALLOW_PRIVATE_TARGETS": "1", "FIELDLAB_FLOWS_DIR": str(flows),
                      "FIELDLAB_DATA_DIR": str(tmp_path / "data")}  # fmt: skip
    live.start()
    yield live
    live.stop()


def wait_for_run(c: httpx.Client, run_id: int, timeout: float = 240.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run: dict[str, Any] = c.get(f"/api/v1/runs/{run_id}").json()
        if run["status"] != "running":
            return run
        time.sleep(0.5)
    raise AssertionError(f"run {run_id} still running after {timeout} s")


def create_and_run(c: httpx.Client, body: dict[str, Any]) -> int:
    r = c.post("/api/v1/checks", json=body)
    assert r.status_code == 201, r.text
    r = c.post(f"/api/v1/checks/{r.json()['id']}/run")
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "running"
    run_id: int = r.json()["id"]
    return run_id


def test_flows_and_an_audit_run_through_the_api_and_keep_their_evidence(
    server: LiveServer, shop: SiteServer, database_url: str
) -> None:
    runs = 2 if database_url.startswith("sqlite") else 1  # Lighthouse is the slow part
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as c:
        ids = {
            "lighthouse": create_and_run(c, {"name": "home-lh", "kind": "lighthouse", "target": f"{shop.url}/",
                                             "runs": runs, "device": "desktop"}),
            "declarative": create_and_run(c, {"name": "search", "kind": "flow", "target": shop.url, "steps": STEPS}),
            "python": create_and_run(c, {"name": "search-py", "kind": "flow", "target": shop.url,
                                         "flow_file": "shop.py", "device": "mobile"}),
            "failing": create_and_run(c, {"name": "greet", "kind": "flow", "target": shop.url, "steps": FAILING}),
        }  # fmt: skip
        lh_check = c.get(f"/api/v1/runs/{ids['lighthouse']}").json()["check_id"]
        again = c.post(f"/api/v1/checks/{lh_check}/run")
        assert again.json()["status"] == "skipped"  # never two runs of one check at once

        done = {name: wait_for_run(c, run_id) for name, run_id in ids.items()}
        read_token = c.post("/api/v1/tokens", json={"scope": "read", "name": "viewer"}).json()["token"]

        # --- the declarative flow: steps, timings, lab vitals, resources, screenshots ---------------
        run = done["declarative"]
        assert run["status"] == "passed", run
        assert run["error"] is None
        result = run["result"]
        assert [s["name"] for s in result["steps"]] == ["home", "search", "assert_text .results"]
        assert all(s["status"] == "passed" and s["duration_ms"] > 0 for s in result["steps"])
        home, search = result["steps"][0], result["steps"][1]
        nav = home["navigations"][0]
        assert nav["kind"] == "navigation"
        assert nav["url"] == f"{shop.url}/"
        for metric in ("TTFB", "FCP", "LCP"):
            assert isinstance(nav["vitals"][metric], int | float), nav
            assert nav["vitals"][metric] > 0, nav
        assert any(n["url"].startswith(f"{shop.url}/search?q=shoes") for n in search["navigations"]), search
        assert home["resources"]["total_count"] >= 2  # the document and its stylesheet
        assert home["resources"]["total_bytes"] > 0
        assert home["resources"]["third_party_share"] == 0
        assert shop.hits["/search"] >= 2  # the declarative and the Python flow both searched

        shot = home["screenshot"]
        assert f"/api/v1/runs/{ids['declarative']}/artifacts/{shot}" in run["artifact_urls"]
        url = f"/api/v1/runs/{ids['declarative']}/artifacts/{shot}"
        r = c.get(url, headers={"authorization": f"Bearer {read_token}"})
        assert r.status_code == 200
        assert r.headers["content-type"] == "image/jpeg"  # step screenshots are JPEG
        assert r.content.startswith(b"\xff\xd8\xff")
        assert httpx.get(f"{server.url}{url}").status_code == 401
        assert httpx.get(f"{server.url}{url}", headers={"authorization": "Bearer nope"}).status_code == 401
        # Another run's file exists at ../OTHER/...: the path must not lead out of this run.
        sneaky = f"..%2F{ids['python']}%2F{shot.replace('/', '%2F')}"
        r = c.get(f"/api/v1/runs/{ids['declarative']}/artifacts/{sneaky}")
        assert r.status_code == 404
        assert "has no artifact" in r.json()["detail"]

        # --- the Python flow from the flows directory ------------------------------------------------
        run = done["python"]
        assert run["status"] == "passed", run
        assert [s["name"] for s in run["result"]["steps"]] == ["home", "search"]
        assert run["result"]["device"] == "mobile"

        # --- the failing flow: retried once, failed, with a failure screenshot and a trace ----------
        run = done["failing"]
        assert run["status"] == "failed"
        assert run["result"]["attempts"] == 2
        assert "does not contain 'Goodbye'" in run["error"]
        assert run["result"]["steps"][0]["status"] == "failed"
        for artifact in ("attempt-1/failure.png", "attempt-1/trace.zip", "attempt-2/trace.zip"):
            assert artifact in run["result"]["artifacts"], run["result"]["artifacts"]
        r = c.get(f"/api/v1/runs/{ids['failing']}/artifacts/attempt-1/trace.zip")
        assert r.status_code == 200
        assert r.content.startswith(b"PK")

        # --- the Lighthouse audit: scores, LHCI's representative run, the HTML report ---------------
        run = done["lighthouse"]
        assert run["status"] == "passed", run
        result = run["result"]
        assert len(result["runs"]) == runs
        assert all(0 <= (score or 0) <= 1 for score in result["scores"].values())
        assert result["scores"]["performance"] is not None
        assert result["metrics"]["first-contentful-paint"] > 0
        assert any(row["resourceType"] == "stylesheet" for row in result["resource_summary"])
        lhrs = []
        for path in result["lhr_paths"]:
            r = c.get(f"/api/v1/runs/{ids['lighthouse']}/artifacts/{path}")
            assert r.status_code == 200
            assert r.headers["content-type"] == "application/gzip"
            lhrs.append(json.loads(gzip.decompress(r.content)))
        assert len(lhrs) == runs
        assert result["representative"] == choose_representative(lhrs)
        r = c.get(f"/api/v1/runs/{ids['lighthouse']}/artifacts/report.html")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/html")
        assert r.headers["content-security-policy"].startswith("sandbox")
        assert b"Lighthouse" in r.content

        listed = {c_["name"]: c_ for c_ in c.get("/api/v1/checks").json()}
        assert listed["search"]["last_run"]["status"] == "passed"
        assert "result" not in listed["search"]["last_run"]
        history = c.get(f"/api/v1/checks/{lh_check}/runs").json()
        assert sorted(h["status"] for h in history) == ["passed", "skipped"]

    assert server.proc is not None
    children = {p.pid for p in procs.descendants(server.proc.pid)}
    assert any(p.is_chromium for p in procs.descendants(server.proc.pid))  # the warm browser
    assert server.stop() in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it handled
    alive = {pid for pid in children if (p := procs.read_proc(pid)) is not None and p.state != "Z"}
    assert not alive, f"left behind by the stopped server: {alive}"
