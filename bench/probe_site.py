"""The pages bench/probe_bench.py checks and audits, served by the benchmark itself on 127.0.0.1.

A small shop: a home page with a stylesheet, a script doing some start-up work, images and a
link; a product page with a search form; a search results page. Enough for a three-step flow
and for a Lighthouse audit that has real work to do (layout, script, images), no internet.
"""

from __future__ import annotations

import sys
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

STYLE = (
    "\n".join(
        f".c{i}{{margin:{i % 7}px;padding:{i % 5}px;color:#{(i * 2654435761) % 0xFFFFFF:06x}}}"
        for i in range(400)
    )
    + "\nbody{font-family:sans-serif;max-width:60em;margin:auto}img{display:block}"
)

# About 60 ms of start-up script on a fast core: something for TBT and the main thread to show.
SCRIPT = """
(function () {
  const end = performance.now() + 60;
  let x = 0;
  while (performance.now() < end) { x += Math.sqrt(x + 1); }
  window.shopReady = x > 0;
  document.querySelectorAll('.card').forEach((c, i) => { c.dataset.rank = String(i); });
})();
"""

HEAD = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>
<meta name="description" content="A shop served by the fieldlab benchmark.">
<link rel="stylesheet" href="/static/shop.css"><script defer src="/static/shop.js"></script></head><body>"""

CARDS = "".join(
    f'<div class="card c{i}"><img src="/static/img-{i}.png" width="160" height="120" alt="item {i}">'
    f"<p>Item {i}: a sturdy thing for every day.</p></div>"
    for i in range(12)
)

HOME = (
    HEAD.format(title="Bench shop")
    + '<h1>Bench shop</h1><p>Everything for the trail.</p><a id="product" href="/product">Trail shoe</a>'
    + CARDS
    + "</body></html>"
)
PRODUCT = (
    HEAD.format(title="Trail shoe")
    + '<h1 id="title">Trail shoe</h1><p>Light, grippy, waterproof.</p>'
    + '<form action="/search"><input id="q" name="q" aria-label="search"><button>Search</button></form>'
    + "</body></html>"
)
RESULTS = (
    HEAD.format(title="Search")
    + '<h1>Results for {q}</h1><ul class="results">'
    + "".join(f"<li>result {i}</li>" for i in range(20))
    + "</ul></body></html>"
)

# The declarative flow the benchmark runs (the same steps a check created through the API has).
FLOW_STEPS: list[dict[str, Any]] = [
    {"step": "home", "actions": [{"goto": "/"}, {"wait_for": "#product"}]},
    {
        "step": "product",
        "actions": [{"click": "#product"}, {"assert_text": {"selector": "#title", "text": "Trail shoe"}}],
    },
    {
        "step": "search",
        "actions": [
            {"fill": {"selector": "#q", "value": "shoes"}},
            {"press": {"selector": "#q", "key": "Enter"}},
            {"wait_for": ".results"},
        ],
    },
]


def _png(width: int, height: int, seed: int) -> bytes:
    """A real (decodable) PNG with noisy pixels, so it does not compress to nothing."""
    rows = b"".join(
        b"\x00" + bytes(((x * 31 + y * 17 + seed * 101) * 2654435761 >> 13) & 0xFF for x in range(width * 3))
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + b"\x08\x02\x00\x00\x00"
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


IMAGES = {f"/static/img-{i}.png": _png(160, 120, i) for i in range(12)}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real site (and through the egress proxy)

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, kind: str, body: bytes, cache: bool = False) -> None:
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        if cache:
            self.send_header("cache-control", "public, max-age=3600")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/":
            self._send(200, "text/html; charset=utf-8", HOME.encode())
        elif url.path == "/product":
            self._send(200, "text/html; charset=utf-8", PRODUCT.encode())
        elif url.path == "/search":
            q = parse_qs(url.query).get("q", [""])[0][:50]
            safe = "".join(ch for ch in q if ch.isalnum() or ch == " ")
            self._send(200, "text/html; charset=utf-8", RESULTS.replace("{q}", safe).encode())
        elif url.path == "/static/shop.css":
            self._send(200, "text/css", STYLE.encode(), cache=True)
        elif url.path == "/static/shop.js":
            self._send(200, "text/javascript", SCRIPT.encode(), cache=True)
        elif url.path in IMAGES:
            self._send(200, "image/png", IMAGES[url.path], cache=True)
        elif url.path == "/robots.txt":
            self._send(200, "text/plain", b"User-agent: *\nAllow: /\n")
        else:
            self._send(404, "text/plain", b"not found")

    do_HEAD = do_GET


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A browser that closed its context mid-response (e.g. a favicon fetch at the end of a
        # check) is ordinary here; anything else still gets its traceback.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@contextmanager
def serve_shop() -> Iterator[str]:
    """Serve the shop on 127.0.0.1 (a free port); yields its base URL."""
    server = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, name="bench-shop", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
