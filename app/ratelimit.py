"""Rate limiting with the ``limits`` library: a fixed window per key, in memory or in Redis.

Litestar's own RateLimitMiddleware keeps, per key, the list of every request time in the window
and rewrites it on each request (under a lock), which costs ~300 us a beacon in memory and more
on Redis. A fixed-window counter is one increment: ``limits`` does that with the same storage
choice (``MemoryStorage`` per process, ``RedisStorage`` shared by every worker and host).

A refused request gets 429 with ``Retry-After`` (seconds until the window resets) and the
usual JSON error body; admitted requests get no rate headers (they would only tell a scraper
how hard it may push).
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import parse_qsl

import msgspec
from limits import RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter
from litestar.enums import MediaType, ScopeType
from litestar.middleware.base import DefineMiddleware
from litestar.response.base import ASGIResponse
from litestar.types import ASGIApp, Receive, Scope, Send

Identify = Callable[[Scope], str]
OnRefused = Callable[[Scope, str], None]

REDIS_PREFIX = "fieldlab_rl"


class SharedLimiter:
    """One storage per app, shared by all its limiters (each names its own key space). Built on
    first use: ``limits``' storages need the running event loop."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self._limiter: FixedWindowRateLimiter | None = None

    def _storage(self) -> Storage:
        if not self.redis_url:
            return MemoryStorage()
        # redis-py is already a dependency (Litestar's RedisStore); ``limits`` would pick coredis.
        url = self.redis_url
        uri = url if url.startswith("async+") else f"async+{url}"
        return RedisStorage(uri, implementation="redispy", key_prefix=REDIS_PREFIX)

    @property
    def limiter(self) -> FixedWindowRateLimiter:
        if self._limiter is None:
            self._limiter = FixedWindowRateLimiter(self._storage())
        return self._limiter


@dataclass(frozen=True, slots=True)
class Rule:
    """``per_second`` requests per window for each key ``identify`` gives; ``space`` keeps the
    keys of different rules apart in the shared storage."""

    per_second: int
    space: str
    identify: Identify


class RateLimit:
    """ASGI middleware: count the request against each rule in turn (one middleware layer for
    all of a router's rules); the first rule over its limit refuses it."""

    def __init__(
        self, app: ASGIApp, *, shared: SharedLimiter, rules: tuple[Rule, ...], on_refused: OnRefused | None
    ) -> None:
        self.app = app
        self._shared = shared
        self._rules = [(RateLimitItemPerSecond(r.per_second), r.space, r.identify) for r in rules]
        self._on_refused = on_refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP:
            limiter = self._shared.limiter
            for item, space, identify in self._rules:
                key = identify(scope)
                if not await limiter.hit(item, space, key):
                    stats = await limiter.get_window_stats(item, space, key)
                    retry = max(1, math.ceil(stats.reset_time - time.time()))
                    if self._on_refused is not None:
                        self._on_refused(scope, space)
                    await _refused(retry)(scope, receive, send)
                    return
        await self.app(scope, receive, send)


# Answered here rather than raised: an exception from a middleware passes the app's
# request-id/metrics middleware on its way out to Litestar's outermost handler, so the answer
# would carry no X-Request-ID and be counted as a 500. The body is a raised
# TooManyRequestsException's.
_REFUSED_BODY = msgspec.json.encode({"status_code": 429, "detail": "rate limit exceeded; retry later"})


def _refused(retry_after_s: int) -> ASGIResponse:
    return ASGIResponse(
        body=_REFUSED_BODY,
        status_code=429,
        media_type=MediaType.JSON,
        headers={"Retry-After": str(retry_after_s)},
    )


def limiter(shared: SharedLimiter, *rules: Rule, on_refused: OnRefused | None = None) -> DefineMiddleware:
    """``on_refused(scope, space)`` is told of each refusal (e.g. to count it)."""
    return DefineMiddleware(RateLimit, shared=shared, rules=rules, on_refused=on_refused)


# --- identifiers (from the ASGI scope: no Request object is built for them) ---------------


def client_ip_from(scope: Scope, trusted_proxies: frozenset[str]) -> str:
    """The peer address, or the last valid hop of X-Forwarded-For when the peer is a trusted
    proxy. Used for rate limiting only; never stored."""
    client = scope.get("client")
    peer = str(client[0]) if client else "unknown"
    if peer not in trusted_proxies:
        return peer
    forwarded = b",".join(v for k, v in scope["headers"] if k == b"x-forwarded-for").decode("latin-1")
    for hop in reversed([h.strip() for h in forwarded.split(",") if h.strip()]):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            continue
        return hop
    return peer


def per_ip(trusted_proxies: str) -> Identify:
    trusted = frozenset(p.strip() for p in trusted_proxies.split(",") if p.strip())

    def identify(scope: Scope) -> str:
        return client_ip_from(scope, trusted)

    return identify


def per_site_key(scope: Scope) -> str:
    """The ``site`` query parameter (the public site key); empty when missing."""
    query: bytes = scope.get("query_string", b"")
    if b"site=" not in query:
        return ""
    return _site_key(query)


# Beacons of a site repeat the same query string: parse each one once (bounded, as it is the
# client's input).
@lru_cache(maxsize=1024)
def _site_key(query: bytes) -> str:
    for name, value in parse_qsl(query.decode("latin-1")):
        if name == "site":
            return value
    return ""
