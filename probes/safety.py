"""Target safety: which URLs a probe may make the browser (or Lighthouse) fetch.

fieldlab visits URLs that users give it, from inside the operator's network, so a check must not
become a way to reach the cloud metadata service, the database or the admin port next door
(SSRF). Three layers, all driven by one :class:`TargetPolicy`:

1. ``check_url`` before a run starts: only http(s); the host is resolved and every address is
   checked (loopback, private, link-local, CGNAT, unspecified, multicast, reserved and the cloud
   metadata addresses are refused unless allowed).
2. :func:`guard`: a CDP ``Fetch`` interception on every page that pauses *every* request the page
   makes, each redirect hop included (Playwright's ``route`` sees only the first URL of a
   redirect chain and turns the HTTP cache off, which would distort repeat-view timings), and
   fails the refused ones with ``BlockedByClient``. ``file:``, ``chrome:`` and other non-http(s)
   requests that reach the network layer are refused here too.
3. :class:`probes.egress.EgressProxy`: every context's traffic goes through a local forward
   proxy that resolves the host itself, checks the addresses and connects to the checked
   address. That covers what a page-level hook cannot see (popups before they are hooked,
   out-of-process iframes, service workers, WebSockets, Lighthouse's own Chrome) and DNS
   rebinding between the check and the connection.

``data:`` and ``blob:`` URLs never reach the network and are not intercepted by Chromium; as
subresources (inline images, fonts, worker code) they are harmless and allowed. Chromium itself
refuses top-level ``data:`` navigations started by page content, and declarative ``goto`` only
accepts http(s) or a path.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext, CDPSession, Page

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Refused even with allow_private: nothing legitimate is monitored there, and allow_private is
# what operators turn on for staging inside a VPC, exactly where metadata credentials live.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "fd00:ec2::254", "169.254.170.2", "100.100.100.200", "169.254.169.123")
)
METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata.goog", "metadata", "instance-data"})
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_BROADCAST = ipaddress.ip_network("255.255.255.255/32")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_DNS_TTL_S = 30.0
MAX_BLOCKED = 200


class TargetRefused(Exception):
    """A URL the policy does not let a probe visit; the message says why."""


class Unresolvable(TargetRefused):
    """The host does not resolve: refused (nothing to check), but not a policy decision, so
    not listed as blocked (Chrome's own background traffic on a closed network is all this)."""


def _host_key(host: str, port: int | None) -> str:
    return f"[{host}]:{port}" if ":" in host and port is not None else (f"{host}:{port}" if port else host)


@dataclass
class TargetPolicy:
    """What a probe may reach.

    ``allow_private``: also loopback, RFC 1918/ULA, link-local and CGNAT addresses (never the
    metadata addresses, unspecified, multicast or reserved ones). ``allow_hosts``: exact
    ``host:port`` (or bare ``host``, any port) entries that skip the address checks, e.g. a
    test's own ``127.0.0.1:PORT`` server; a redirect to another port is still refused.
    """

    allow_private: bool = False
    allowed_schemes: tuple[str, ...] = ("http", "https")
    allow_hosts: Iterable[str] = ()
    _allow: frozenset[str] = field(init=False, repr=False)
    _dns: dict[tuple[str, int], tuple[float, list[IPAddress]]] = field(
        init=False, repr=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        self._allow = frozenset(h.lower().strip() for h in self.allow_hosts)
        self.allowed_schemes = tuple(s.lower() for s in self.allowed_schemes)

    # --- pure checks --------------------------------------------------------------------------

    def host_allowed(self, host: str, port: int) -> bool:
        host = host.lower().strip("[]")
        return host in self._allow or _host_key(host, port) in self._allow

    def check_address(self, address: IPAddress, host: str = "") -> None:
        """Raise :class:`TargetRefused` if ``address`` may not be connected to."""
        if isinstance(address, ipaddress.IPv6Address):
            # IPv4 carried inside IPv6 (mapped, NAT64, 6to4, Teredo) is judged as that IPv4.
            embedded = address.ipv4_mapped or address.sixtofour or (address.teredo or (None, None))[1]
            if embedded is None and address in _NAT64:
                embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
            if embedded is not None:
                self.check_address(embedded, host or str(address))
                if address.ipv4_mapped is not None:
                    return
        label = f"{host} ({address})" if host and host != str(address) else str(address)
        if address in METADATA_ADDRESSES:
            raise TargetRefused(f"{label} is a cloud metadata address")
        if address.is_unspecified:
            raise TargetRefused(f"{label} is the unspecified address")
        if address.is_multicast:
            raise TargetRefused(f"{label} is a multicast address")
        if address.is_global and address not in _CGNAT:
            return
        if address.is_loopback:
            kind = "a loopback"
        elif address.is_link_local:
            kind = "a link-local"
        elif address in _CGNAT or (
            address.is_private and not address.is_reserved and address not in _BROADCAST
        ):
            kind = "a private"
        else:  # 240/4, broadcast, ::/8 and friends: nothing to monitor there
            raise TargetRefused(f"{label} is a reserved address")
        if self.allow_private:
            return
        raise TargetRefused(f"{label} is {kind} address (set allow_private to allow it)")

    def split(self, url: str) -> tuple[str, str, int]:
        """``(scheme, host, port)`` of an allowed-scheme URL, or :class:`TargetRefused`."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise TargetRefused(f"{url[:200]!r} is not a valid URL ({exc})") from None
        scheme = parts.scheme.lower()
        if scheme not in self.allowed_schemes:
            raise TargetRefused(
                f"scheme {scheme + ':' if scheme else '(none)'} is not allowed (only {', '.join(self.allowed_schemes)})"
            )
        host = (parts.hostname or "").lower()
        if not host:
            raise TargetRefused(f"{url[:200]!r} has no host")
        if port is None:
            port = 443 if scheme in ("https", "wss") else 80
        return scheme, host, port

    def _literal(self, host: str, port: int) -> list[IPAddress] | None:
        """The address itself for IP literals (no DNS); None for names."""
        if self.host_allowed(host, port):
            return []
        if host.rstrip(".") in METADATA_HOSTS:
            raise TargetRefused(f"{host} is a cloud metadata host")
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return None
        self.check_address(address, host)
        return [address]

    def _checked(self, host: str, infos: list[Any]) -> list[IPAddress]:
        addresses: list[IPAddress] = []
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            # Every address must pass: a name resolving to one public and one private address
            # would otherwise let the browser pick the private one.
            self.check_address(address, host)
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise Unresolvable(f"{host} does not resolve")
        return addresses

    # --- checks with DNS ----------------------------------------------------------------------

    def check_host(self, host: str, port: int) -> list[IPAddress]:
        """Resolve ``host`` and check every address; returns the checked addresses (empty for
        an ``allow_hosts`` entry, which the caller resolves however it likes)."""
        host = host.lower().strip("[]")
        literal = self._literal(host, port)
        if literal is not None:
            return literal
        cached = self._dns.get((host, port))
        if cached and cached[0] > time.monotonic():
            return cached[1]
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise Unresolvable(f"{host} does not resolve ({exc})") from None
        addresses = self._checked(host, list(infos))
        self._dns[(host, port)] = (time.monotonic() + _DNS_TTL_S, addresses)
        return addresses

    async def check_host_async(self, host: str, port: int) -> list[IPAddress]:
        host = host.lower().strip("[]")
        literal = self._literal(host, port)
        if literal is not None:
            return literal
        cached = self._dns.get((host, port))
        if cached and cached[0] > time.monotonic():
            return cached[1]
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise Unresolvable(f"{host} does not resolve ({exc})") from None
        addresses = self._checked(host, list(infos))
        self._dns[(host, port)] = (time.monotonic() + _DNS_TTL_S, addresses)
        return addresses

    def check_url(self, url: str) -> None:
        """Raise :class:`TargetRefused` unless a probe may visit ``url`` (blocks on DNS)."""
        _, host, port = self.split(url)
        try:
            self.check_host(host, port)
        except TargetRefused as exc:
            raise type(exc)(f"refused {url[:200]}: {exc}") from None

    async def check_url_async(self, url: str) -> None:
        _, host, port = self.split(url)
        try:
            await self.check_host_async(host, port)
        except TargetRefused as exc:
            raise type(exc)(f"refused {url[:200]}: {exc}") from None


def record(blocked: list[str], entry: str) -> None:
    if len(blocked) < MAX_BLOCKED and entry not in blocked:
        blocked.append(entry)


class _PageGuard:
    """One page's CDP Fetch interception: every request, each redirect hop included."""

    def __init__(self, page: Page, policy: TargetPolicy, blocked: list[str]) -> None:
        self.page = page
        self.policy = policy
        self.blocked = blocked
        self.cdp: CDPSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.cdp = await self.page.context.new_cdp_session(self.page)
        self.cdp.on("Fetch.requestPaused", self._paused)
        await self.cdp.send("Fetch.enable", {"patterns": [{"urlPattern": "*", "requestStage": "Request"}]})

    def _paused(self, event: dict[str, Any]) -> None:
        task = asyncio.get_running_loop().create_task(self._decide(event))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _decide(self, event: dict[str, Any]) -> None:
        assert self.cdp is not None
        url = str(event["request"]["url"])
        try:
            await self.policy.check_url_async(url)
        except Unresolvable:
            command, params = (
                "Fetch.failRequest",
                {"requestId": event["requestId"], "errorReason": "NameNotResolved"},
            )
        except TargetRefused:
            record(self.blocked, url)
            command, params = (
                "Fetch.failRequest",
                {"requestId": event["requestId"], "errorReason": "BlockedByClient"},
            )
        else:
            command, params = "Fetch.continueRequest", {"requestId": event["requestId"]}
        with contextlib.suppress(Exception):  # the page or its request went away meanwhile
            await self.cdp.send(command, params)


async def guard_page(page: Page, policy: TargetPolicy, blocked: list[str]) -> None:
    """Check every request ``page`` makes (see module docs); refused URLs go to ``blocked``."""
    await _PageGuard(page, policy, blocked).start()


async def guard(context: BrowserContext, policy: TargetPolicy, blocked: list[str]) -> None:
    """Guard every page of ``context``, present and future (popups are hooked when Playwright
    reports them; the egress proxy covers their first requests)."""
    guards: set[asyncio.Task[None]] = set()

    def on_page(page: Page) -> None:
        task = asyncio.get_running_loop().create_task(_quietly(guard_page(page, policy, blocked)))
        guards.add(task)
        task.add_done_callback(guards.discard)

    context.on("page", on_page)
    for page in context.pages:
        await guard_page(page, policy, blocked)


async def _quietly(coro: Any) -> None:
    with contextlib.suppress(Exception):  # a popup closed before it could be hooked
        await coro
