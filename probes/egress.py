"""A local forward proxy that enforces a :class:`TargetPolicy` at connection time.

Chromium (a Playwright context's ``proxy=`` or Lighthouse's ``--proxy-server``) sends all its
traffic here: ``CONNECT host:port`` for https and WebSockets, absolute-form requests for plain
http. The proxy resolves the host itself, checks every address with the policy and connects to
the address it checked, so a name that re-resolves to 169.254.169.254 after the first check (DNS
rebinding) still cannot be reached. Refused requests get a 403 and are recorded.

Plain http is relayed with HTTP/1.1 framing (Content-Length, chunked, close-delimited), keeping
both connections alive where both sides allow it, so per-request connection set-up does not
distort timings; https is an opaque tunnel, as with any proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from probes.safety import TargetPolicy, TargetRefused, Unresolvable, record

if TYPE_CHECKING:
    from types import TracebackType

_HOP = {
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"proxy-authorization",
    b"proxy-authenticate",
    b"te",
    b"upgrade",
}
Headers = list[tuple[bytes, bytes]]


class _Closed(Exception):
    pass


async def _read_head(reader: asyncio.StreamReader) -> bytes | None:
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            raise _Closed from None
        return None
    except asyncio.LimitOverrunError:
        raise _Closed from None


def _parse(head: bytes) -> tuple[list[bytes], Headers]:
    lines = head.split(b"\r\n")
    first = lines[0].split(b" ", 2)
    headers: Headers = []
    for line in lines[1:]:
        if b":" in line:
            name, value = line.split(b":", 1)
            headers.append((name.strip(), value.strip()))
    return first, headers


def _get(headers: Headers, name: bytes) -> bytes | None:
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def _tokens(headers: Headers, name: bytes) -> set[bytes]:
    return {t.strip().lower() for k, v in headers if k.lower() == name for t in v.split(b",")}


def _strip_hop(headers: Headers) -> Headers:
    listed = _tokens(headers, b"connection")
    return [(k, v) for k, v in headers if k.lower() not in _HOP and k.lower() not in listed]


def _head(first: bytes, headers: Headers) -> bytes:
    return first + b"\r\n" + b"".join(k + b": " + v + b"\r\n" for k, v in headers) + b"\r\n"


async def _relay_body(
    src: asyncio.StreamReader, dst: asyncio.StreamWriter, headers: Headers, *, until_eof: bool
) -> None:
    if b"chunked" in _tokens(headers, b"transfer-encoding"):
        while True:
            line = await src.readuntil(b"\r\n")
            dst.write(line)
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while (trailer := await src.readuntil(b"\r\n")) != b"\r\n":
                    dst.write(trailer)
                dst.write(b"\r\n")
                break
            dst.write(await src.readexactly(size + 2))
            await dst.drain()
    elif (length := _get(headers, b"content-length")) is not None:
        remaining = int(length)
        while remaining > 0:
            chunk = await src.read(min(remaining, 65536))
            if not chunk:
                raise _Closed
            dst.write(chunk)
            remaining -= len(chunk)
            await dst.drain()
    elif until_eof:
        while chunk := await src.read(65536):
            dst.write(chunk)
            await dst.drain()
    await dst.drain()


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while chunk := await src.read(65536):
            dst.write(chunk)
            await dst.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            dst.write_eof()


class EgressProxy:
    """``async with EgressProxy(policy, blocked) as proxy:`` then point Chromium at ``proxy.url``."""

    def __init__(
        self, policy: TargetPolicy, blocked: list[str] | None = None, *, connect_timeout_s: float = 15.0
    ) -> None:
        self.policy = policy
        self.blocked: list[str] = [] if blocked is None else blocked
        self.connect_timeout_s = connect_timeout_s
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()
        self.url = ""

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0, limit=65536)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._conns):
                task.cancel()
            await asyncio.gather(*self._conns, return_exceptions=True)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    async def __aenter__(self) -> EgressProxy:
        await self.start()
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _connect(self, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        addresses = await self.policy.check_host_async(host, port)
        targets = [str(a) for a in addresses] or [host]  # allow_hosts entries: resolve normally
        error: OSError | None = None
        for target in targets:
            try:
                return await asyncio.wait_for(
                    asyncio.open_connection(target, port, limit=65536), self.connect_timeout_s
                )
            except (OSError, TimeoutError) as exc:
                error = exc if isinstance(exc, OSError) else OSError(f"connect timeout to {target}:{port}")
        raise error or OSError(f"cannot connect to {host}:{port}")

    async def _refuse(self, writer: asyncio.StreamWriter, status: bytes, reason: str) -> None:
        body = reason.encode()[:500]
        writer.write(b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain\r\nx-fieldlab-blocked: 1\r\n"
                     b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)  # fmt: skip
        with contextlib.suppress(Exception):
            await writer.drain()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        upstream_key: tuple[str, int] | None = None
        try:
            while (head := await _read_head(reader)) is not None:
                first, headers = _parse(head)
                if len(first) != 3:
                    await self._refuse(writer, b"400 Bad Request", "malformed request")
                    return
                method, target, version = first
                if method == b"CONNECT":
                    await self._tunnel(target.decode("latin-1"), reader, writer)
                    return
                url = target.decode("latin-1")
                parts = urlsplit(url)
                try:
                    _, host, port = self.policy.split(url)
                    if parts.scheme != "http":
                        raise TargetRefused(f"scheme {parts.scheme}: is not proxied")
                    if upstream is None or upstream_key != (host, port):
                        if upstream is not None:
                            upstream[1].close()
                        upstream, upstream_key = await self._connect(host, port), (host, port)
                except Unresolvable as exc:
                    await self._refuse(writer, b"502 Bad Gateway", f"fieldlab egress: {exc}")
                    return
                except TargetRefused as exc:
                    record(self.blocked, url)
                    await self._refuse(writer, b"403 Forbidden", f"refused by fieldlab target policy: {exc}")
                    return
                except OSError as exc:
                    await self._refuse(writer, b"502 Bad Gateway", f"fieldlab egress: {exc}")
                    return
                path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
                client_close = (
                    b"close" in _tokens(headers, b"connection") | _tokens(headers, b"proxy-connection")
                    or version == b"HTTP/1.0"
                )
                up_r, up_w = upstream
                up_w.write(
                    _head(b" ".join((method, path.encode("latin-1"), b"HTTP/1.1")), _strip_hop(headers))
                )
                await _relay_body(reader, up_w, headers, until_eof=False)
                keep_client, keep_upstream = await self._response(method, up_r, writer, client_close)
                if not keep_upstream:
                    up_w.close()
                    upstream = upstream_key = None
                if not keep_client:
                    return
        except (
            _Closed,
            ConnectionError,
            OSError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ValueError,
        ):
            pass
        except asyncio.CancelledError:
            # Closing the proxy cancels its connections; ending normally keeps asyncio's stream
            # callback from logging the cancellation as an error.
            pass
        finally:
            if upstream is not None:
                upstream[1].close()
            writer.close()
            self._conns.discard(task)

    async def _response(
        self, method: bytes, up_r: asyncio.StreamReader, writer: asyncio.StreamWriter, client_close: bool
    ) -> tuple[bool, bool]:
        """Relay one response; returns whether the client and the upstream connection stay open."""
        while True:
            head = await _read_head(up_r)
            if head is None:
                raise _Closed
            (version, status, *_), headers = _parse(head)
            code = int(status)
            upstream_close = b"close" in _tokens(headers, b"connection") or (
                version == b"HTTP/1.0" and b"keep-alive" not in _tokens(headers, b"connection")
            )
            no_body = method == b"HEAD" or code in (204, 304) or 100 <= code < 200
            framed = (
                no_body
                or _get(headers, b"content-length") is not None
                or b"chunked" in _tokens(headers, b"transfer-encoding")
            )
            close = client_close or not framed
            out = [*_strip_hop(headers), (b"Connection", b"close" if close else b"keep-alive")]
            writer.write(_head(head.split(b"\r\n", 1)[0], out))
            if 100 <= code < 200:
                await writer.drain()
                continue
            if not no_body:
                await _relay_body(up_r, writer, headers, until_eof=not framed)
            await writer.drain()
            return not close, framed and not upstream_close

    async def _tunnel(
        self, authority: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        host, _, port_s = authority.rpartition(":")
        host = host.strip("[]").lower()
        label = f"https://{_authority(host, port_s)}/"
        try:
            port = int(port_s)
            up_r, up_w = await self._connect(host, port)
        except Unresolvable as exc:
            await self._refuse(writer, b"502 Bad Gateway", f"fieldlab egress: {exc}")
            return
        except TargetRefused as exc:
            record(self.blocked, label)
            await self._refuse(writer, b"403 Forbidden", f"refused by fieldlab target policy: {exc}")
            return
        except (OSError, ValueError) as exc:
            await self._refuse(writer, b"502 Bad Gateway", f"fieldlab egress: {exc}")
            return
        writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        await writer.drain()
        try:
            await asyncio.gather(_pipe(reader, up_w), _pipe(up_r, writer))
        finally:
            up_w.close()


def _authority(host: str, port: str) -> str:
    host = f"[{host}]" if ":" in host else host
    return host if port == "443" else f"{host}:{port}"
