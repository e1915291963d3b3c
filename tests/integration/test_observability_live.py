"""fieldlab as an operator runs it (a `serve` subprocess): traces arrive at a local OTLP/HTTP
receiver the test starts, and the JSON log lines carry the request id."""

from __future__ import annotations

import gzip
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from app.config import Settings
from tests.conftest import ADMIN, LiveServer, beacon_headers


class OtlpReceiver:
    """Accepts OTLP/HTTP protobuf trace exports on POST /v1/traces and keeps the spans as
    (service name, span name, attributes)."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, str, dict[str, Any]]] = []
        self.paths: list[str] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                with receiver._lock:
                    receiver.paths.append(self.path)
                    for rs in request.resource_spans:
                        attrs = {a.key: a.value.string_value for a in rs.resource.attributes}
                        for ss in rs.scope_spans:
                            for span in ss.spans:
                                span_attrs = {a.key: _any(a.value) for a in span.attributes}
                                receiver.spans.append((attrs.get("service.name", ""), span.name, span_attrs))
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def snapshot(self) -> list[tuple[str, str, dict[str, Any]]]:
        with self._lock:
            return list(self.spans)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _any(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


@pytest.fixture
def otlp() -> Iterator[OtlpReceiver]:
    r = OtlpReceiver()
    yield r
    r.stop()


@pytest.fixture
def traced_server(settings: Settings, tmp_path: Path, otlp: OtlpReceiver) -> Iterator[LiveServer]:
    server = LiveServer(settings, tmp_path / "server.log")
    server.extra_env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.url,
        "OTEL_BSP_SCHEDULE_DELAY": "200",  # export every 0.2 s instead of 5 s
        "FIELDLAB_DATA_DIR": str(tmp_path / "data"),
    }
    server.start()
    yield server
    server.stop()


def test_spans_for_requests_and_queries_reach_the_otlp_receiver(
    traced_server: LiveServer, otlp: OtlpReceiver
) -> None:
    auth = {"authorization": f"Bearer {ADMIN}"}
    with httpx.Client(base_url=traced_server.url, headers=auth, timeout=10) as http:
        site = http.post("/api/v1/sites", json={"name": "traced", "origins": ["https://shop.example"]})
        assert site.status_code == 201, site.text
        assert http.get(f"/api/v1/sites/{site.json()['id']}").status_code == 200
    wanted = "GET /api/v1/sites/{site_id}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        spans = otlp.snapshot()
        names = {name for _, name, _ in spans}
        db_spans = [s for s in spans if "db.system" in s[2] or "db.system.name" in s[2]]
        if wanted in names and db_spans:
            break
        time.sleep(0.2)
    assert wanted in names, sorted(names)
    assert "POST /api/v1/sites" in names
    assert db_spans, spans
    assert any(
        "SELECT" in str(attrs.get("db.statement", attrs.get("db.query.text", ""))) for _, _, attrs in db_spans
    )
    assert {service for service, _, _ in spans} == {"fieldlab"}
    assert set(otlp.paths) == {"/v1/traces"}
    route = next(attrs for _, name, attrs in spans if name == wanted)
    assert route.get("http.route") == "/api/v1/sites/{site_id}"


def test_json_log_lines_carry_the_request_id(settings: Settings, tmp_path: Path) -> None:
    live_server = LiveServer(settings, tmp_path / "server.log")
    live_server.extra_env = {"FIELDLAB_LOG_LEVEL": "DEBUG", "FIELDLAB_DATA_DIR": str(tmp_path / "data")}
    live_server.start()
    try:
        check_request_id_in_log(live_server)
    finally:
        live_server.stop()


def check_request_id_in_log(live_server: LiveServer) -> None:
    auth = {"authorization": f"Bearer {ADMIN}", "x-request-id": "trace-me-42"}
    r = httpx.get(f"{live_server.url}/api/v1/sites/999999", headers=auth, timeout=10)
    assert r.headers["x-request-id"] == "trace-me-42"
    deadline = time.monotonic() + 5
    tagged: list[dict[str, Any]] = []
    while not tagged and time.monotonic() < deadline:
        lines = [
            json.loads(line) for line in live_server.log_path.read_text().splitlines() if line.startswith("{")
        ]
        tagged = [line for line in lines if line.get("request_id") == "trace-me-42"]
        time.sleep(0.1)
    assert tagged, live_server.log_path.read_text()[-2000:]
    assert all({"ts", "level", "logger", "msg"} <= line.keys() for line in tagged)
    assert any(
        line["logger"] == "fieldlab.access" and "/api/v1/sites/999999 404" in line["msg"] for line in tagged
    )
    # Lines outside a request (start-up, background jobs) carry none.
    assert any("request_id" not in line for line in lines)


def test_metrics_of_all_workers_are_merged(settings: Settings, tmp_path: Path) -> None:
    from tests.integration.test_observability import promtool, value

    server = LiveServer(settings, tmp_path / "server.log")
    server.extra_args = ["--workers", "2"]
    server.extra_env = {"FIELDLAB_DATA_DIR": str(tmp_path / "data")}
    server.start(timeout=40)
    try:
        auth = {"authorization": f"Bearer {ADMIN}"}
        site = httpx.post(f"{server.url}/api/v1/sites", headers=auth, timeout=10,
                          json={"name": "multi", "origins": ["https://shop.example"]}).json()  # fmt: skip
        headers = beacon_headers()
        for n in range(20):  # a new connection each time, so both workers take some
            body = json.dumps({"id": f"pv-{n}", "url": "https://shop.example/", "metrics": {"LCP": 1000 + n}})
            r = httpx.post(f"{server.url}/api/v1/beacon?site={site['key']}", content=body, headers=headers)
            assert r.status_code == 204, r.text
        scrapes = [httpx.get(f"{server.url}/metrics", timeout=10).text for _ in range(6)]
    finally:
        server.stop()
    # Whichever worker answers, the scrape counts every worker's beacons.
    assert {value(text, "fieldlab_beacons_accepted_total") for text in scrapes} == {20}
    assert {value(text, "fieldlab_http_request_duration_seconds_count", route="/api/v1/beacon")
            for text in scrapes} == {20}  # fmt: skip
    checked = subprocess.run([promtool(), "check", "metrics"], input=scrapes[-1], capture_output=True,
                             text=True, timeout=30, check=False)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr


PAGE = "<!doctype html><html><head><title>Shop</title></head><body><h1>Shop</h1><p>Boots.</p></body></html>"


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.serial
def test_probe_runs_and_lighthouse_have_spans_and_metrics(
    settings: Settings, tmp_path: Path, otlp: OtlpReceiver
) -> None:
    from tests.integration.test_observability import value
    from tests.probes.probe_helpers import serve

    for shop in serve("127.0.0.1"):
        shop.html("/", PAGE)
        server = LiveServer(settings, tmp_path / "server.log")
        server.extra_env = {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.url, "OTEL_BSP_SCHEDULE_DELAY": "200",
                            "FIELDLAB_ALLOW_PRIVATE_TARGETS": "1", "FIELDLAB_DATA_DIR": str(tmp_path / "data")}  # fmt: skip
        server.start()
        try:
            auth = {"authorization": f"Bearer {ADMIN}"}
            with httpx.Client(base_url=server.url, headers=auth, timeout=30) as c:
                bodies = [
                    {"name": "lh", "kind": "lighthouse", "target": f"{shop.url}/", "runs": 1, "device": "desktop"},
                    {"name": "home", "kind": "flow", "target": shop.url,
                     "steps": [{"step": "home", "actions": [{"goto": "/"}, {"wait_for": "h1"}]}]},
                ]  # fmt: skip
                run_ids = []
                for body in bodies:
                    check = c.post("/api/v1/checks", json=body)
                    assert check.status_code == 201, check.text
                    run_ids.append(c.post(f"/api/v1/checks/{check.json()['id']}/run").json()["id"])
                deadline = time.monotonic() + 240
                statuses: list[str] = []
                while time.monotonic() < deadline:
                    statuses = [c.get(f"/api/v1/runs/{i}").json()["status"] for i in run_ids]
                    if "running" not in statuses:
                        break
                    time.sleep(0.5)
                assert statuses == ["passed", "passed"], statuses
                metrics = c.get("/metrics").text
        finally:
            server.stop()
    assert value(metrics, "fieldlab_lighthouse_duration_seconds_count", outcome="passed") == 1
    assert value(metrics, "fieldlab_lighthouse_duration_seconds_sum", outcome="passed") > 1
    assert (
        value(metrics, "fieldlab_check_run_duration_seconds_count", kind="lighthouse", outcome="passed") == 1
    )
    assert value(metrics, "fieldlab_check_run_duration_seconds_count", kind="flow", outcome="passed") == 1
    # The server flushed its spans on the way out.
    spans = otlp.snapshot()
    by_name = {name: attrs for _, name, attrs in spans}
    assert by_name["probe lighthouse"]["fieldlab.run.status"] == "passed"
    assert by_name["lighthouse"]["fieldlab.lighthouse.outcome"] == "passed"
    assert by_name["probe flow"]["fieldlab.check.name"] == "home"
