"""fieldlab.js size and main-thread cost, compared with Google web-vitals.

Size: raw, gzip -9 and brotli quality 11 bytes of static/fieldlab.js and of web-vitals' standard
and attribution IIFE builds, with ratios and PASS/FAIL against the 2,500 B brotli goal.

Cost: the same test page is loaded N times in Chromium with (a) nothing, (b) fieldlab.js, and
(c) web-vitals' attribution IIFE plus a minimal sendBeacon reporter (what a site would otherwise
ship). Each load: wait for load, click a button, wait, then make the page hidden so both libraries
build and send their beacons. Main-thread script time is CDP ``Performance.getMetrics``
ScriptDuration; the library's cost is the median over N loads minus the median of (a).

Usage: .venv/bin/python bench/snippet_size.py [--runs N] [--no-browser]
       (also ``python -m bench.snippet_size``). Exit status 1 when the size goal is missed.
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import brotli

ROOT = Path(__file__).resolve().parent.parent
SNIPPET = ROOT / "static" / "fieldlab.js"
WV_DIST = ROOT / "node_modules" / "web-vitals" / "dist"
WV_STANDARD = WV_DIST / "web-vitals.iife.js"
WV_ATTRIBUTION = WV_DIST / "web-vitals.attribution.iife.js"
GOAL_BROTLI = 2500
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-gpu",
]
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36"


@dataclass(frozen=True)
class Sizes:
    name: str
    raw: int
    gzip: int
    brotli: int

    @classmethod
    def of(cls, name: str, path: Path) -> Sizes:
        data = path.read_bytes()
        return cls(
            name=name,
            raw=len(data),
            gzip=len(gzip.compress(data, compresslevel=9, mtime=0)),
            brotli=len(brotli.compress(data, quality=11)),
        )


def size_table() -> tuple[str, bool]:
    ours = Sizes.of("fieldlab.js", SNIPPET)
    rows = [
        ours,
        Sizes.of("web-vitals standard IIFE", WV_STANDARD),
        Sizes.of("web-vitals attribution IIFE", WV_ATTRIBUTION),
    ]
    attribution = rows[2]
    lines = [
        f"{'file':<30}{'raw':>8}{'gzip -9':>10}{'brotli 11':>11}{'br / attribution':>18}",
        "-" * 77,
    ]
    for r in rows:
        lines.append(
            f"{r.name:<30}{r.raw:>8}{r.gzip:>10}{r.brotli:>11}{r.brotli / attribution.brotli:>18.2f}"
        )
    ok = ours.brotli <= GOAL_BROTLI
    lines.append("")
    lines.append(
        f"goal: fieldlab.js <= {GOAL_BROTLI} B brotli q11: {ours.brotli} B -> {'PASS' if ok else 'FAIL'}"
        f" ({ours.brotli / rows[1].brotli:.2f}x web-vitals standard, {ours.brotli / attribution.brotli:.2f}x"
        " attribution; web-vitals sizes are without any sending code)"
    )
    return "\n".join(lines), ok


# --- main-thread cost ----------------------------------------------------------------------------

PAGE = """<!doctype html><html><head><meta charset=utf-8><title>bench</title><link rel=icon href=data:,>
{tags}</head><body><h1>Bench page</h1><p>Some text to paint.</p>
<div style="height:200px;background:#cde">block</div>
<button id="b">Button</button><ul>{items}</ul>
<script>document.getElementById('b').addEventListener('click', function () {{
  var t = performance.now(); while (performance.now() - t < 60) {{}}
  this.textContent = 'clicked';
}});</script></body></html>"""

TAGS = {
    "none": "",
    "fieldlab": '<script async src="/fieldlab.js" data-site="bench"></script>',
    "web-vitals": """<script async src="/web-vitals.js"></script>
<script>addEventListener('load', function () {
  var q = {};
  function add(m) { q[m.name] = {name: m.name, value: m.value, id: m.id, navigationType: m.navigationType}; }
  function flush() {
    var body = Object.keys(q).map(function (k) { return q[k]; });
    if (body.length) navigator.sendBeacon('/api/v1/beacon?site=bench', JSON.stringify(body));
    q = {};
  }
  ['onCLS', 'onINP', 'onLCP', 'onFCP', 'onTTFB'].forEach(function (f) { webVitals[f](add); });
  addEventListener('visibilitychange', function () { if (document.visibilityState === 'hidden') flush(); });
});</script>""",
}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, body: bytes, ctype: str, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path == "/fieldlab.js":
            self._send(SNIPPET.read_bytes(), "text/javascript")
        elif path == "/web-vitals.js":
            self._send(WV_ATTRIBUTION.read_bytes(), "text/javascript")
        elif path.startswith("/page/") and path[6:] in TAGS:
            items = "".join(f"<li>item {i}</li>" for i in range(50))
            self._send(PAGE.format(tags=TAGS[path[6:]], items=items).encode(), "text/html; charset=utf-8")
        else:
            self._send(b"", "text/plain", 404)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._send(b"", "text/plain", 204)


@contextmanager
def serve() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


HIDE = """() => { Object.defineProperty(document, 'visibilityState', {value: 'hidden', configurable: true});
  document.dispatchEvent(new Event('visibilitychange')); }"""


def script_ms(runs: int) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright

    results: dict[str, list[float]] = {name: [] for name in TAGS}
    with serve() as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for _ in range(runs):
                for name in TAGS:  # interleaved, so drift affects all variants alike
                    context = browser.new_context(user_agent=UA)
                    page = context.new_page()
                    cdp = context.new_cdp_session(page)
                    cdp.send("Performance.enable")
                    page.goto(f"{base}/page/{name}", wait_until="load")
                    # The same Playwright calls for every variant (their polling is script time too).
                    page.wait_for_function(
                        "window.fieldlab || window.webVitals || location.pathname == '/page/none'"
                    )
                    page.wait_for_timeout(300)
                    page.click("#b")
                    page.wait_for_timeout(400)
                    page.evaluate(HIDE)
                    page.wait_for_timeout(100)
                    metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
                    results[name].append(metrics["ScriptDuration"] * 1000)
                    context.close()
        finally:
            browser.close()
    return results


def cost_table(runs: int) -> str:
    results = script_ms(runs)
    med = {name: statistics.median(v) for name, v in results.items()}
    base = med["none"]
    ours, theirs = med["fieldlab"] - base, med["web-vitals"] - base
    lines = [
        f"main-thread ScriptDuration, median of {runs} loads (page + click + hidden):",
        f"  page alone                          {base:7.2f} ms",
        f"  + fieldlab.js                       {med['fieldlab']:7.2f} ms  (library {ours:6.2f} ms)",
        f"  + web-vitals attribution + reporter {med['web-vitals']:7.2f} ms  (library {theirs:6.2f} ms)",
    ]
    if theirs > 0:
        lines.append(f"  fieldlab / web-vitals: {ours / theirs:.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=10, help="page loads per variant (default 10)")
    parser.add_argument("--no-browser", action="store_true", help="sizes only, no Chromium")
    args = parser.parse_args(argv)
    for path in (SNIPPET, WV_STANDARD, WV_ATTRIBUTION):
        if not path.is_file():
            print(f"missing {path.relative_to(ROOT)} (run `make install`)", file=sys.stderr)
            return 2
    table, ok = size_table()
    print(table)
    if not args.no_browser:
        print()
        print(cost_table(args.runs))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
