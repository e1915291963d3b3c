"""app/ratelimit.py: the keys the limits are counted under, and the middleware's answers."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from litestar import Litestar, get
from litestar.testing import AsyncTestClient

from app import ratelimit


def scope(client: str = "198.51.100.1", query: bytes = b"", forwarded: str | None = None) -> Any:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded is not None else []
    return {"type": "http", "client": (client, 5000), "query_string": query, "headers": headers}


@pytest.mark.parametrize(
    ("query", "key"),
    [
        (b"site=abc123", "abc123"),
        (b"x=1&site=k-_9&y=2", "k-_9"),
        (b"site=a%2Bb", "a+b"),
        (b"", ""),
        (b"other=1", ""),
        (b"website=evil", ""),  # 'site=' inside another name is not the site key
    ],
)
def test_the_site_key_comes_from_the_query(query: bytes, key: str) -> None:
    assert ratelimit.per_site_key(scope(query=query)) == key


def test_forwarded_for_counts_only_behind_a_trusted_proxy() -> None:
    direct = ratelimit.per_ip("")
    assert direct(scope("203.0.113.5", forwarded="192.0.2.1")) == "203.0.113.5"
    proxied = ratelimit.per_ip("10.0.0.1, 10.0.0.2")
    # The last hop that is a valid address is the one the trusted proxy saw.
    assert proxied(scope("10.0.0.2", forwarded="192.0.2.1, 192.0.2.9")) == "192.0.2.9"
    assert proxied(scope("10.0.0.1", forwarded="192.0.2.1, not-an-ip")) == "192.0.2.1"
    assert proxied(scope("10.0.0.1", forwarded="")) == "10.0.0.1"
    assert proxied(scope("10.0.0.1")) == "10.0.0.1"
    assert proxied(scope("203.0.113.5", forwarded="192.0.2.1")) == "203.0.113.5"  # untrusted peer


@get("/ping", sync_to_thread=False)
def ping() -> str:
    return "pong"


def limited_app(per_ip: int, per_site: int) -> Litestar:
    shared = ratelimit.SharedLimiter("")
    return Litestar(
        route_handlers=[ping],
        middleware=[
            ratelimit.limiter(
                shared,
                ratelimit.Rule(per_ip, "ip", ratelimit.per_ip("testclient")),
                ratelimit.Rule(per_site, "site", ratelimit.per_site_key),
            )
        ],
    )


async def test_refusals_carry_retry_after_and_do_not_use_up_later_rules() -> None:
    async with AsyncTestClient(app=limited_app(per_ip=2, per_site=3)) as c:
        started = time.time()
        one_ip = {"x-forwarded-for": "192.0.2.10"}
        statuses = [(await c.get("/ping?site=s", headers=one_ip)).status_code for _ in range(4)]
        refused = await c.get("/ping?site=s", headers=one_ip)
        # Requests refused by the per-IP rule were not counted against the site: it still has
        # one of its three left for another client.
        other = await c.get("/ping?site=s", headers={"x-forwarded-for": "192.0.2.11"})
        after_site_limit = await c.get("/ping?site=s", headers={"x-forwarded-for": "192.0.2.12"})
        elapsed = time.time() - started
    assert elapsed < 0.9, "the requests took too long to stay inside one one-second window"
    assert statuses == [200, 200, 429, 429]
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "1"  # a one-second window ends within a second
    assert refused.json() == {"status_code": 429, "detail": "rate limit exceeded; retry later"}
    assert other.status_code == 200
    assert after_site_limit.status_code == 429
    assert "x-ratelimit-limit" not in {k.lower() for k in other.headers}


async def test_the_window_resets() -> None:
    async with AsyncTestClient(app=limited_app(per_ip=1, per_site=100)) as c:
        assert (await c.get("/ping")).status_code == 200
        refused = await c.get("/ping")
        assert refused.status_code == 429
        wait = int(refused.headers["retry-after"])
        await asyncio.sleep(wait + 0.05)
        assert (await c.get("/ping")).status_code == 200


def test_the_cached_site_key_parse_matches_parse_qsl() -> None:
    from urllib.parse import parse_qsl

    queries = [
        b"site=abc",
        b"site=a%2Bb&x=1",
        b"x=1&site=k&site=other",
        b"site=&site=second",
        b"si%74e=x&site=y",
    ]
    for query in queries * 2:  # the second round comes from the cache
        expected = next((v for k, v in parse_qsl(query.decode("latin-1")) if k == "site"), "")
        assert ratelimit.per_site_key(scope(query=query)) == expected
