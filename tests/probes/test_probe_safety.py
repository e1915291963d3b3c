"""Target safety: the policy (pure), the egress proxy (raw sockets) and the browser guard
(real Chromium following redirects to forbidden addresses)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from pathlib import Path
from typing import Any

import pytest
from probe_helpers import Handler, SiteServer, policy_for

from probes.browser import BrowserPool
from probes.egress import EgressProxy
from probes.flow import run_flow
from probes.safety import TargetPolicy, TargetRefused


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1/", "loopback"),
        ("http://127.1.2.3:8080/x", "loopback"),
        ("http://[::1]/", "loopback"),
        ("http://localhost/", "loopback"),
        ("http://10.0.0.1/", "private"),
        ("http://192.168.1.20/", "private"),
        ("http://172.16.5.4/", "private"),
        ("http://[fc00::1]/", "private"),
        ("http://100.64.1.1/", "private"),
        ("http://169.254.10.10/", "link-local"),
        ("http://[fe80::1]/", "link-local"),
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://[fd00:ec2::254]/", "metadata"),
        ("http://metadata.google.internal/computeMetadata/v1/", "metadata"),
        ("http://0.0.0.0:8000/", "unspecified"),
        ("http://[::]/", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://[::ffff:169.254.169.254]/", "metadata"),
        ("http://[64:ff9b::a9fe:a9fe]/", "metadata"),
        ("http://[2002:a00:1::1]/", "private"),
        ("http://255.255.255.255/", "reserved"),
        ("file:///etc/passwd", "scheme file:"),
        ("data:text/html,hi", "scheme data:"),
        ("javascript:alert(1)", "scheme javascript:"),
        ("chrome://settings", "scheme chrome:"),
        ("ftp://example.com/", "scheme ftp:"),
        ("//example.com/", "scheme (none)"),
        ("http:///nohost", "no host"),
    ],
)
def test_policy_refuses(url: str, reason: str) -> None:
    with pytest.raises(TargetRefused, match=reason.replace("(", r"\(").replace(")", r"\)")):
        TargetPolicy().check_url(url)


def test_policy_allows_public_and_what_it_is_told() -> None:
    TargetPolicy().check_url("https://8.8.8.8/")
    TargetPolicy().check_url("http://[2606:4700::1111]:8080/path")
    private = TargetPolicy(allow_private=True)
    for url in ("http://127.0.0.1:8000/", "http://10.1.2.3/", "http://[fe80::1]/", "http://localhost/"):
        private.check_url(url)
    # allow_private never opens the metadata service, unspecified or multicast addresses.
    for url in (
        "http://169.254.169.254/",
        "http://metadata.google.internal/",
        "http://0.0.0.0/",
        "http://224.0.0.1/",
    ):
        with pytest.raises(TargetRefused):
            private.check_url(url)
    exact = TargetPolicy(allow_hosts={"127.0.0.1:8123"})
    exact.check_url("http://127.0.0.1:8123/x")
    with pytest.raises(TargetRefused):
        exact.check_url("http://127.0.0.1:8124/x")  # another port of the same host
    TargetPolicy(allow_hosts={"localhost"}).check_url("http://localhost:9999/")
    with pytest.raises(TargetRefused, match="scheme file"):
        TargetPolicy(allow_hosts={"127.0.0.1:8123"}).check_url("file://127.0.0.1:8123/etc/passwd")


def test_every_resolved_address_must_pass() -> None:
    policy = TargetPolicy()
    infos = [(2, 1, 6, "", ("93.184.216.34", 80)), (2, 1, 6, "", ("10.0.0.5", 80))]
    with pytest.raises(TargetRefused, match="private"):
        policy._checked("rebind.example", infos)
    assert policy._checked("ok.example", infos[:1]) == [ipaddress.ip_address("93.184.216.34")]


# --- egress proxy ------------------------------------------------------------------------------


async def _raw(proxy_url: str, request: bytes, *, read_until: bytes = b"") -> bytes:
    host, port = proxy_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    await writer.drain()
    data = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), 5):
            data += chunk
            if read_until and data.count(read_until) >= 1 and data.endswith(read_until):
                break
    finally:
        writer.close()
    return data


async def test_egress_proxy_relays_allowed_http_with_keep_alive(site: SiteServer) -> None:
    def chunked(h: Handler) -> None:
        h.send_response(200)
        h.send_header("transfer-encoding", "chunked")
        h.end_headers()
        for part in (b"hello ", b"chunked ", b"world"):
            h.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        h.wfile.write(b"0\r\n\r\n")

    site.routes["/a"] = (200, "text/plain", "first")
    site.routes["/c"] = chunked
    blocked: list[str] = []
    async with EgressProxy(policy_for(site), blocked) as proxy:
        request = (
            f"GET {site.url}/a HTTP/1.1\r\nHost: {site.host}\r\nProxy-Connection: keep-alive\r\n\r\n"
            f"GET {site.url}/c HTTP/1.1\r\nHost: {site.host}\r\nProxy-Connection: keep-alive\r\n\r\n"
        ).encode()
        data = await _raw(proxy.url, request, read_until=b"0\r\n\r\n")
    # Two responses on one client connection, the chunked one relayed intact.
    assert data.count(b"HTTP/1.") == 2
    assert b"\r\n\r\nfirst" in data
    assert b"6\r\nhello \r\n8\r\nchunked \r\n5\r\nworld\r\n0\r\n\r\n" in data
    assert site.hits == {"/a": 1, "/c": 1}
    assert blocked == []


async def test_egress_proxy_refuses_forbidden_targets(site: SiteServer) -> None:
    other = SiteServer()  # a second 127.0.0.1 server the policy does not allow
    blocked: list[str] = []
    try:
        async with EgressProxy(policy_for(site), blocked) as proxy:
            for request in (
                f"GET http://127.0.0.1:{other.port}/secret HTTP/1.1\r\nHost: x\r\n\r\n",
                "GET http://169.254.169.254/latest/meta-data/ HTTP/1.1\r\nHost: x\r\n\r\n",
                "CONNECT 10.0.0.1:443 HTTP/1.1\r\nHost: 10.0.0.1:443\r\n\r\n",
                "CONNECT metadata.google.internal:443 HTTP/1.1\r\n\r\n",
            ):
                data = await _raw(proxy.url, request.encode())
                assert data.startswith(b"HTTP/1.1 403 "), data
                assert b"refused by fieldlab target policy" in data
            # An allowed CONNECT is an opaque tunnel.
            tunnel = await _raw(
                proxy.url,
                f"CONNECT {site.host} HTTP/1.1\r\n\r\nGET /x HTTP/1.1\r\nHost: {site.host}\r\nConnection: close\r\n\r\n".encode(),
            )
            assert tunnel.startswith(b"HTTP/1.1 200 Connection Established\r\n\r\nHTTP/1.")
    finally:
        other.server_close()
    assert blocked == [
        f"http://127.0.0.1:{other.port}/secret",
        "http://169.254.169.254/latest/meta-data/",
        "https://10.0.0.1/",
        "https://metadata.google.internal/",
    ]


# --- the browser --------------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.slow
async def test_redirects_to_forbidden_addresses_are_blocked(
    pool: BrowserPool, site: SiteServer, tmp_path: Path
) -> None:
    """The test server is the only allowed host; redirects (navigations and subresources) to
    the metadata service, a private address or another port of 127.0.0.1 are refused before
    any request is sent, and so are file: URLs and popups."""
    other = SiteServer()  # never allowed: it must never see a request
    import threading

    threading.Thread(target=other.serve_forever, daemon=True).start()
    other.routes["/secret"] = (200, "text/html", "<h1>SECRET</h1>")
    other.routes["/secret.png"] = (200, "image/png", b"\x89PNG")
    site.routes["/to-metadata"] = lambda h: h.redirect("http://169.254.169.254/latest/meta-data/")
    site.routes["/to-private"] = lambda h: h.redirect("http://10.0.0.1/admin")
    site.routes["/to-other-port"] = lambda h: h.redirect(f"http://127.0.0.1:{other.port}/secret", 307)
    site.routes["/img"] = lambda h: h.redirect(f"http://127.0.0.1:{other.port}/secret.png")
    site.routes["/to-self"] = lambda h: h.redirect("/ok")
    site.html("/ok", "<h1>ok</h1>")
    site.html(
        "/page",
        f"""<h1>page</h1><img src="/img"><iframe src="http://127.0.0.1:{other.port}/secret"></iframe>
        <script>fetch("http://127.0.0.1:{other.port}/secret").catch(() => {{}});</script>""",
    )
    site.html(
        "/popup", f"<button onclick=\"window.open('http://127.0.0.1:{other.port}/secret')\">open</button>"
    )
    from playwright.async_api import Error as PlaywrightError

    seen: dict[str, str] = {}

    async def flow(page: Any, step: Any) -> None:
        # Chromium commits an error page for a refused navigation; let it land before the next
        # navigation, or it interrupts that one.
        error_page = asyncio.Event()
        page.on("framenavigated", lambda f: f.url.startswith("chrome-error:") and error_page.set())
        async with step("redirects"):
            for path in ("/to-metadata", "/to-private", "/to-other-port"):
                error_page.clear()
                try:
                    await page.goto(path)
                except PlaywrightError as exc:
                    seen[path] = str(exc).splitlines()[0]
                await asyncio.wait_for(error_page.wait(), 5)
            await page.goto("/to-self")  # same host: fine
            assert await page.inner_text("h1") == "ok"
        async with step("subresources"):
            await page.goto("/page")
            await page.wait_for_timeout(300)
        async with step("popup"):
            await page.goto("/popup")
            with contextlib.suppress(PlaywrightError):
                async with page.context.expect_page(timeout=3000) as popup_info:
                    await page.click("button")
                popup = await popup_info.value
                with contextlib.suppress(PlaywrightError):
                    await popup.wait_for_load_state(timeout=3000)
        async with step("file"):
            # Last: the error page of a refused file: URL commits late and would interrupt a
            # navigation started right after it.
            try:
                await page.goto("file:///etc/hostname")
            except PlaywrightError as exc:
                seen["file:///etc/hostname"] = str(exc).splitlines()[0]

    try:
        result = await run_flow(
            flow, base_url=site.url, pool=pool, policy=policy_for(site), artifacts_dir=tmp_path, retries=0
        )
    finally:
        other.shutdown()
        other.server_close()
    assert result.status == "passed", result.error
    assert all("ERR_BLOCKED_BY_CLIENT" in msg for msg in seen.values()), seen
    assert set(seen) == {"/to-metadata", "/to-private", "/to-other-port", "file:///etc/hostname"}
    secret = f"http://127.0.0.1:{other.port}/secret"
    for url in (
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/admin",
        secret,
        f"{secret}.png",
        "file:///etc/hostname",
    ):
        assert url in result.blocked_requests, url
    assert other.hits == {}, "the forbidden server was reached"
    # Blocked requests are listed as blocked, not as failed requests.
    assert not any(f["url"].startswith(secret) for s in result.steps for f in s.failed_requests)


@pytest.mark.browser
@pytest.mark.slow
async def test_egress_proxy_alone_stops_what_page_hooks_miss(pool: BrowserPool, site: SiteServer) -> None:
    """Without the page guard (as for a popup's first request or Lighthouse's Chrome), the
    proxy still refuses a redirect to another 127.0.0.1 port, at connection time."""
    other = SiteServer()
    site.routes["/jump"] = lambda h: h.redirect(f"http://127.0.0.1:{other.port}/secret")
    site.html("/", "<h1>fine</h1>")
    blocked: list[str] = []
    browser = await pool.browser()
    try:
        async with EgressProxy(policy_for(site), blocked) as proxy:
            ctx = await browser.new_context(proxy={"server": proxy.url, "bypass": "<-loopback>"})
            try:
                page = await ctx.new_page()
                assert (await page.goto(f"{site.url}/")).status == 200  # type: ignore[union-attr]
                response = await page.goto(f"{site.url}/jump")
                assert response is not None
                assert response.status == 403
                assert response.headers.get("x-fieldlab-blocked") == "1"
            finally:
                await ctx.close()
    finally:
        other.server_close()
    assert blocked[0] == f"http://127.0.0.1:{other.port}/secret"  # (then the 403 page's favicon)
