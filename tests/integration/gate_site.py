"""Test pages for the gate and the LHCI parity test, served by the test on 127.0.0.1, and the
real Lighthouse reports of them (generated once per session; audits take ~15 s each)."""

from __future__ import annotations

import asyncio
import gzip
import shutil
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from probes.browser import find_chromium
from probes.lighthouse import run_lighthouse
from probes.safety import TargetPolicy

_HEAD = (
    '<meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">'
    '<meta name="description" content="A page served by the fieldlab tests.">'
)
# Unminified, mostly unused script: trips unused-javascript / unminified-javascript on "heavy".
_BIG_JS = "\n".join(
    f"function unusedHelper{i}(argumentOne, argumentTwo) {{\n  var result = argumentOne * {i};\n"
    f"  return result + argumentTwo + 'some padding text that nobody will ever read {i}';\n}}"
    for i in range(1500)
)
_CSS = "\n".join(f".unused-rule-{i} {{ color: #{i % 999:03d}; margin: {i % 7}px; }}" for i in range(1200))
# A 1x1 PNG.
_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d49444154789c6360f8cfc0f01f0005000201a1d8f1b80000000049454e44ae426082"
)

PAGES: dict[str, tuple[str, str | bytes]] = {
    "/fast/": (
        "text/html; charset=utf-8",
        f'<!doctype html><html lang="en"><head>{_HEAD}<title>Fast page</title></head>'
        "<body><main><h1>Fast</h1><p>Small and quick.</p></main></body></html>",
    ),
    "/heavy/": (
        "text/html; charset=utf-8",
        f"<!doctype html><html><head>{_HEAD}<title>Heavy page</title>"
        '<link rel="stylesheet" href="/static/big.css"><script src="/static/big.js"></script></head>'
        '<body><h1>Heavy</h1><img src="/static/pixel.png" width="600" height="400">'
        "<script>performance.mark('app-start');const t=Date.now();while(Date.now()-t<400){}"
        "performance.mark('app-ready');performance.measure('app boot','app-start','app-ready');</script>"
        "</body></html>",
    ),
    "/shift/": (
        "text/html; charset=utf-8",
        f'<!doctype html><html lang="en"><head>{_HEAD}<title>Shifting page</title></head>'
        '<body><main><div id="late"></div><h1>Shift</h1><p>Text that moves.</p>'
        '<img src="/static/pixel.png" alt="pixel"></main>'
        "<script>setTimeout(()=>{document.getElementById('late').style.height='300px';},300);"
        "const t=Date.now();while(Date.now()-t<120){}</script></body></html>",
    ),
    "/static/big.js": ("application/javascript", _BIG_JS),
    "/static/big.css": ("text/css", _CSS),
    "/static/pixel.png": ("image/png", _PNG),
}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        kind, body = PAGES.get(path, ("text/plain", "not found"))
        data = body.encode() if isinstance(body, str) else body
        self.send_response(200 if path in PAGES else 404)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def serve_site() -> Iterator[str]:
    """The test site's base URL (http://127.0.0.1:PORT) while the generator runs."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def audit(base: str, path: str, runs: int, out: Path) -> list[Path]:
    """``runs`` real Lighthouse audits of one path, one after another; the gzipped LHR files."""
    work = out / "work" / path.strip("/")
    result = await run_lighthouse(
        base + path, chromium=find_chromium(), runs=runs, output_dir=work,
        policy=TargetPolicy(allow_private=True), guard_requests=False, timeout_s=180,
        lock_path=work.with_suffix(".lock"),
    )  # fmt: skip
    if result.status != "passed" or len(result.lhr_paths) != runs:
        raise RuntimeError(f"lighthouse failed for {path}: {result.error}")
    return [work / rel for rel in result.lhr_paths]


def generate(out: Path, paths: list[str], runs: int) -> list[Path]:
    """The reports as ``lhr-N.json`` in ``out``, the names ``lhci collect`` gives them."""
    gen = serve_site()
    base = next(gen)
    # The paths are audited side by side, each in a thread with its own event loop and lock
    # file (fieldlab runs one audit per machine at a time, on purpose): the reports feed
    # verdict-parity tests, which judge the same files both ways and need no quiet timings, and
    # this is the suite's longest set-up.
    (out / "work").mkdir(parents=True, exist_ok=True)
    try:
        with ThreadPoolExecutor(len(paths)) as pool:
            found = pool.map(lambda path: asyncio.run(audit(base, path, runs, out)), paths)
            reports = [lhr for lhrs in found for lhr in lhrs]
    finally:
        gen.close()
    written = []
    for i, report in enumerate(reports, 1):
        target = out / f"lhr-{i}.json"
        target.write_bytes(gzip.decompress(report.read_bytes()))
        written.append(target)
    shutil.rmtree(out / "work", ignore_errors=True)
    return written


def session_lhrs(base: Path, paths: list[str] | None = None, runs: int = 3) -> list[Path]:
    """Generate once per pytest session (several test modules share ``base``)."""
    done = base / "done"
    if not done.exists():
        generate(base, paths or ["/fast/", "/heavy/", "/shift/"], runs)
        done.write_text("ok")
    return sorted(base.glob("lhr-*.json"), key=lambda p: int(p.stem.split("-")[1]))
