"""Helpers for the probes tests: pages served by the tests themselves on 127.0.0.1 (no
internet), and /proc-based Chromium process counting."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from probes import procs
from probes.safety import TargetPolicy

Route = Callable[["Handler"], None] | tuple[int, str, bytes | str]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive through the egress proxy
    server: SiteServer

    def log_message(self, *args: Any) -> None:
        pass

    def send(
        self, status: int, content_type: str, body: bytes | str, headers: dict[str, str] | None = None
    ) -> None:
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def redirect(self, location: str, status: int = 302) -> None:
        self.send(status, "text/plain", "", {"location": location})

    def hang(self) -> None:
        """Never answer (until the test ends)."""
        self.server.release.wait(60)
        self.close_connection = True

    def do_GET(self) -> None:
        site = self.server
        path = self.path.split("?", 1)[0]
        with site.lock:
            site.hits[path] = site.hits.get(path, 0) + 1
        route = site.routes.get(path)
        if route is None:
            if path == "/favicon.ico":
                self.send(204, "image/x-icon", b"")
            else:
                self.send(404, "text/plain", "not found")
        elif callable(route):
            route(self)
        else:
            self.send(*route)

    def do_POST(self) -> None:
        self.body = self.rfile.read(int(self.headers.get("content-length") or 0))
        self.do_GET()

    do_HEAD = do_GET


class SiteServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str = "127.0.0.1", name: str = "127.0.0.1") -> None:
        super().__init__((host, 0), Handler)
        self.routes: dict[str, Route] = {}
        self.hits: dict[str, int] = {}
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.port = self.server_address[1]
        self.host = f"{name}:{self.port}"
        self.url = f"http://{self.host}"

    def html(self, path: str, body: str, status: int = 200) -> None:
        self.routes[path] = (status, "text/html; charset=utf-8", body)


def serve(name: str) -> Iterator[SiteServer]:
    server = SiteServer(name=name)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


def chromium_pids() -> set[int]:
    """Live Chromium processes below this test process, plus crashpad handlers (which Chromium
    double-forks onto PID 1)."""
    found = {p.pid for p in procs.chromium_processes()}
    for p in procs.all_procs().values():
        if p.ppid == 1 and p.state != "Z" and p.is_chromium:
            found.add(p.pid)
    return found


def zombies(before: set[int], timeout: float = 3.0) -> list[procs.Proc]:
    """Unreaped processes below us that stay unreaped for ``timeout``, except those of a
    Chromium that was running before the test (a zygote reaps its renderers lazily, by design)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [p for p in procs.descendants(os.getpid()) if p.state == "Z" and p.ppid not in before]
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def wait_until_gone(before: set[int], timeout: float = 5.0) -> set[int]:
    """Chromium pids that appeared since ``before`` and are still alive after ``timeout``."""
    deadline = time.monotonic() + timeout
    while (new := chromium_pids() - before) and time.monotonic() < deadline:
        time.sleep(0.1)
    return new


def policy_for(*servers: SiteServer) -> TargetPolicy:
    """Private addresses stay refused; exactly these test servers are allowed."""
    return TargetPolicy(allow_private=False, allow_hosts={s.host for s in servers})


def dead_singletons_since(before: set[str]) -> set[str]:
    """Chromium /tmp singleton dirs created since ``before`` whose socket is no longer bound:
    litter a killed browser would leave (live browsers of other test runs are not counted)."""
    with open("/proc/net/unix", encoding="utf-8", errors="replace") as f:
        bound = f.read()
    return {d for d in procs.singleton_dirs_now() - before if f"{d}/SingletonSocket" not in bound}
