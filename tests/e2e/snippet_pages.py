"""Test pages for the fieldlab.js end-to-end tests, and the small HTTP server that serves them.

The server runs in a thread on 127.0.0.1 (free port) and serves:

* ``/fieldlab.js`` (static/fieldlab.js) and ``/web-vitals.js`` (web-vitals' attribution IIFE);
* ``/p/<name>`` one page per behaviour (``PAGES``), optionally with web-vitals side by side;
* ``/img/<anything>.png?delay=MS&w=W&h=H`` a solid PNG, sent after a delay (an LCP candidate);
* ``POST /api/v1/beacon`` (and any other ``POST``): records path, query, content type and body.

Pages are served without ``Cache-Control: no-store`` and have no unload handlers, so Chromium
keeps them in the back/forward cache.
"""

from __future__ import annotations

import json
import random
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parents[2]
SNIPPET = ROOT / "static" / "fieldlab.js"
WEB_VITALS = ROOT / "node_modules" / "web-vitals" / "dist" / "web-vitals.attribution.iife.js"
SITE_KEY = "test-key"

# web-vitals with reportAllChanges, keeping its latest value and attribution target per metric in
# window.__wv; on pagehide (after web-vitals' own visibilitychange handlers ran) the values are
# posted to /wv so a test can compare them with fieldlab's beacon from the same page load.
WEB_VITALS_TAGS = """<script src="/web-vitals.js"></script>
<script>
window.__wv = {};
(function () {
  function keep(m) {
    var a = m.attribution || {};
    window.__wv[m.name] = {value: m.value, id: m.id, nav: m.navigationType,
      target: a.target || a.interactionTarget || a.largestShiftTarget,
      url: a.url, type: a.interactionType, ttfb: a.timeToFirstByte, loadDelay: a.resourceLoadDelay,
      loadDuration: a.resourceLoadDuration, renderDelay: a.elementRenderDelay,
      inputDelay: a.inputDelay, processing: a.processingDuration, presentation: a.presentationDelay,
      time: a.interactionTime !== undefined ? a.interactionTime : a.largestShiftTime};
  }
  ['onLCP', 'onFCP', 'onTTFB', 'onCLS', 'onINP'].forEach(function (f) {
    webVitals[f](keep, {reportAllChanges: true});
  });
  addEventListener('pagehide', function () {
    window.__wv.url = location.href;
    navigator.sendBeacon('/wv', JSON.stringify(window.__wv));
  });
})();
</script>"""

BASE_CSS = "body{margin:0;font:16px/1.4 sans-serif} .pad{padding:8px}"


def snippet_tag(**attrs: str) -> str:
    attrs = {"data-site": SITE_KEY, **attrs}
    rendered = " ".join(f'{k}="{v}"' for k, v in attrs.items())
    return f'<script async src="/fieldlab.js" {rendered}></script>'


def html(body: str, *, head: str = "", vitals: bool = True, tag: str | None = None) -> str:
    return (
        "<!doctype html><html><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>t</title><link rel=icon href=data:,><style>{BASE_CSS}</style>{head}"
        f"{WEB_VITALS_TAGS if vitals else ''}{snippet_tag() if tag is None else tag}</head>"
        f"<body>{body}</body></html>"
    )


# A busy loop on the main thread: the interaction's processing time.
BUSY = "function busy(ms){var t=performance.now();while(performance.now()-t<ms){}}"

PAGES: dict[str, str] = {
    # The LCP element is a large image that arrives 400 ms late; there is text before it (FCP).
    "lcp": html(
        '<h1 class="pad">Product</h1><p class="pad">Some text paints first.</p>'
        '<div id="hero-box"><img class="hero main" src="/img/hero.png?delay=400&w=450&h=250" '
        'width="900" height="500" alt=""></div>'
    ),
    # A text paints first; the test adds a large image (addLate()) after it has clicked (or
    # hidden the page): LCP must stay the text. Added on cue, not on a timer, which a busy
    # machine could fire before the input.
    "late": html(
        '<p id="intro" class="pad">Intro text paints first.</p><div id="slot"></div><script>'
        "function addLate(){var i=new Image(450,250);i.src='/img/late.png?w=450&h=250';"
        "i.id='late';window.__lateAt=performance.now();document.getElementById('slot').append(i)}"
        "</script>"
    ),
    # Layout shifts in three session windows (more than 1 s apart); the second is the largest.
    "cls": html(
        '<div id="top"></div><main><p class="pad">Intro</p>'
        '<section class="content card" style="height:300px;background:#ccd">content</section>'
        '<p class="pad">Footer text</p></main>'
        "<script>"
        "function ins(h){var d=document.createElement('div');d.style.height=h+'px';"
        "d.className='ad';document.getElementById('top').prepend(d);}"
        "setTimeout(function(){ins(40)},300);"
        "setTimeout(function(){ins(120)},1800);setTimeout(function(){ins(60)},2100);"
        "setTimeout(function(){ins(30)},3800);"
        "setTimeout(function(){document.title='done'},4200);"
        "</script>"
    ),
    # A click handler that blocks the main thread for 200 ms, and a quick one.
    "inp": html(
        '<p class="pad">Buttons</p><button id="slow" class="btn">Slow</button>'
        '<button class="btn quick">Quick</button><p id="out"></p>'
        f"<script>{BUSY}"
        "document.getElementById('slow').addEventListener('click',function(){busy(200);"
        "document.getElementById('out').textContent='slow done';});"
        "document.querySelector('.quick').addEventListener('click',function(){"
        "document.getElementById('out').textContent='quick';});"
        "</script>"
    ),
    # For back/forward cache restores: text, an image, a button.
    "bfcache": html(
        '<h1 class="pad">Cached</h1><img src="/img/b.png?w=200&h=150" width="400" height="300" alt="">'
        f'<button id="slow">Slow</button><script>{BUSY}'
        "document.getElementById('slow').addEventListener('click',function(){busy(120)});</script>"
    ),
    # An SPA: clicking "Next" routes client-side and tells fieldlab about the soft navigation.
    "spa": html(
        '<h1 class="pad">Home</h1><button id="next">Next</button><button id="work">Work</button>'
        f"<script>{BUSY}"
        "document.getElementById('next').addEventListener('click',function(){"
        "history.pushState({},'','/p/spa/next?x=1');document.querySelector('h1').textContent='Next';"
        "window.fieldlab.page('/p/spa/next?x=1');});"
        "document.getElementById('work').addEventListener('click',function(){busy(150)});"
        "</script>"
    ),
    # JS errors: thrown, rejected, and a flood (the beacon keeps at most 10).
    "errors": html(
        '<p class="pad">Errors</p><script>'
        "function boom(){throw new TypeError('boom '+'x'.repeat(3000))}"
        "function go(){"
        "setTimeout(boom,0);"
        "setTimeout(function(){Promise.reject(new Error('nope'))},30);"
        "setTimeout(function(){Promise.reject('plain string')},40);"
        "setTimeout(function(){for(var i=0;i<15;i++)setTimeout(function(){null.x},0)},60);"
        "setTimeout(function(){document.title='done'},300);}"
        # Errors before the async snippet has run are not seen (by design): start after it.
        "(function wait(){window.fieldlab?go():setTimeout(wait,10)})();"
        "</script>"
    ),
    # Text paints at once, but an image holds the load event back for 5 s: a visitor who leaves
    # before then.
    "bounce": html(
        '<p class="pad">Loading the rest...</p><img src="/img/slow.png?delay=5000&w=40&h=40" alt="">',
        vitals=False,
    ),
    # A page to navigate to, which makes the previous page hidden (and usually bfcache'd).
    "blank": html("<p>elsewhere</p>", vitals=False, tag=""),
}


@dataclass
class Recorded:
    path: str
    query: dict[str, list[str]]
    content_type: str
    body: str
    host: str = ""
    at: float = field(default_factory=time.monotonic)

    def json(self) -> Any:
        return json.loads(self.body)


@cache
def png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    # Noise, not a flat colour: Chromium ignores low-entropy images as LCP candidates.
    noise = random.Random(width * 7919 + height).randbytes(width * 3 * height)
    raw = b"".join(b"\x00" + noise[y * width * 3 : (y + 1) * width * 3] for y in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


class PageServer:
    """Serves the test pages and records every POST (beacons)."""

    def __init__(self, pages: dict[str, str] | None = None) -> None:
        self.pages = dict(PAGES if pages is None else pages)
        self.posts: list[Recorded] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> PageServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def clear(self) -> None:
        with self._lock:
            self.posts.clear()

    def recorded(self, path: str) -> list[Recorded]:
        with self._lock:
            return [p for p in self.posts if p.path == path]

    def beacons(self) -> list[dict[str, Any]]:
        return [p.json() for p in self.recorded("/api/v1/beacon")]

    def wait_for(self, path: str, count: int = 1, timeout: float = 10.0) -> list[Recorded]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.recorded(path)
            if len(got) >= count:
                return got
            time.sleep(0.05)
        raise AssertionError(f"expected {count} POST(s) to {path}, got {len(self.recorded(path))}")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(
                self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                q = parse_qs(url.query)
                if url.path == "/fieldlab.js":
                    self._send(200, SNIPPET.read_bytes(), "text/javascript")
                elif url.path == "/web-vitals.js":
                    self._send(200, WEB_VITALS.read_bytes(), "text/javascript")
                elif url.path.startswith("/img/"):
                    time.sleep(int(q.get("delay", ["0"])[0]) / 1000)
                    w, h = int(q.get("w", ["100"])[0]), int(q.get("h", ["100"])[0])
                    self._send(200, png(w, h), "image/png")
                elif url.path.startswith("/p/"):
                    name = url.path[3:].split("/")[0]
                    page = server.pages.get(name)
                    if page is None:
                        self._send(404, b"no such page", "text/plain")
                    else:
                        self._send(200, page.encode(), "text/html; charset=utf-8")
                else:
                    self._send(404, b"not found", "text/plain")

            def do_POST(self) -> None:
                url = urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                with server._lock:
                    server.posts.append(
                        Recorded(
                            url.path,
                            parse_qs(url.query),
                            self.headers.get("Content-Type", ""),
                            body,
                            self.headers.get("Host", ""),
                        )
                    )
                self._send(204, b"", "text/plain")

        return Handler
