"""Query-answer cache on a Litestar store (memory, or Redis when FIELDLAB_REDIS_URL is set).

Keys include the site's data version, which the ingest writer bumps after each commit that
touched the site, so new data invalidates answers at once; the TTL bounds what a process
that did not see the bump (another worker without a shared Redis) may serve."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable, Iterable

from litestar.stores.base import Store


class QueryCache:
    def __init__(self, store: Store, ttl_s: float) -> None:
        self.store = store
        self.ttl = max(1, int(ttl_s)) if ttl_s > 0 else 0

    async def version(self, site_id: int) -> str:
        raw = await self.store.get(f"ver:{site_id}")
        return raw.decode() if raw else "0"

    async def bump(self, site_ids: Iterable[int]) -> None:
        token = str(time.time_ns())
        for site_id in site_ids:
            await self.store.set(f"ver:{site_id}", token)

    async def get_or_compute(
        self, site_id: int, request_key: str, compute: Callable[[], Awaitable[bytes]]
    ) -> bytes:
        if not self.ttl:
            return await compute()
        digest = hashlib.sha256(request_key.encode()).hexdigest()[:32]
        key = f"q:{site_id}:{await self.version(site_id)}:{digest}"
        hit = await self.store.get(key)
        if hit is not None:
            return hit
        body = await compute()
        await self.store.set(key, body, expires_in=self.ttl)
        return body
