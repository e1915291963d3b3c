"""fieldlab with proposed hot-path fixes patched in, to measure them before they land in app/.

``python -m bench.whatif_app serve --port P --workers W`` does what ``fieldlab serve`` does
(same Settings, same uvicorn options), but each worker builds the app after applying the
patches named in ``BENCH_WHATIF`` (comma-separated):

``ratelimit``  replace Litestar's RateLimitMiddleware by an O(1) fixed-window counter. Litestar
               keeps, per key, the list of every request time in the window, and on each request
               decodes it, prepends one entry and re-encodes it under an anyio lock that yields
               to the loop while held (so it is O(requests per second) and serialised).
``ua``         memoise the User-Agent classifiers (is_bot, device_class, browser_family): the
               regexes cost ~40 us per beacon and real traffic has few distinct UAs.
``sitecache``  single-flight the site-key cache refresh and serve the stale entry meanwhile:
               when the 10 s TTL runs out, every in-flight beacon of that site misses at once
               and runs its own SELECT (64 at a time here), a latency spike every 10 s.
``asgi``       serve POST /api/v1/beacon from a raw Litestar ``@asgi`` handler doing the same checks
               (content type, key, origin, size, decode, queue, await the commit) but skipping
               the per-request kwargs/signature/Response machinery (the CORS preflight route
               moves aside; a what-if for the 2xx path only).
``rawwrite``   run the writer's measurement upsert on the driver connection (SQLite: executemany
               with attribution pre-encoded by msgspec; PostgreSQL: one INSERT ... SELECT FROM
               unnest(arrays)) instead of through SQLAlchemy's per-row parameter processing
               (PostgreSQL: instead of one server round trip per row). Same transaction.
``gc``         after the app is built: gc.collect(); gc.freeze(); gc.set_threshold(50_000, 20, 100).
               A beacon allocates enough container objects to run a young-generation collection
               every few requests, and full collections walk every long-lived object (SQLAlchemy,
               Litestar) for up to ~100 ms while all in-flight beacons wait.
``strings``    check decoded strings/numbers with a flat walk that builds no JSON paths, and
               only on a failure re-walk with decode._check_strings for the message.

``all`` applies every patch. Used by bench/beacon_bench.py ``--whatif all`` (or a list) and by
bench/beacon_hotpath.py. Nothing here changes app/.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import msgspec
from litestar import Litestar, Request
from litestar.exceptions import TooManyRequestsException
from litestar.middleware.base import DefineMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send


class FixedWindowLimit:
    """Per-process requests-per-second limit: one dict lookup and one add per request. Same
    semantics as Litestar's limiter with unit "second" (a count that resets each second)."""

    def __init__(
        self, app: ASGIApp, *, per_second: int, identifier: Callable[[Request[Any, Any, Any]], str]
    ) -> None:
        self.app = app
        self.limit = per_second
        self.identifier = identifier
        self.window = 0
        self.counts: dict[str, int] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            now = int(time.time())
            if now != self.window:
                self.window, self.counts = now, {}
            key = self.identifier(scope["litestar_app"].request_class(scope))
            count = self.counts.get(key, 0) + 1
            if count > self.limit:
                raise TooManyRequestsException(headers={"Retry-After": "1"})
            self.counts[key] = count
        await self.app(scope, receive, send)


def _fixed_window_limiter(per_second: int, identifier: Any, store: str) -> Any:
    return DefineMiddleware(FixedWindowLimit, per_second=per_second, identifier=identifier)


def _within_limits(value: Any, max_string: int) -> bool:
    stack = [value]
    while stack:
        v = stack.pop()
        kind = type(v)
        if kind is str:
            if len(v) > max_string:
                return False
        elif kind is float:
            if not math.isfinite(v):
                return False
        elif kind is dict:
            if any(len(k) > max_string for k in v):
                return False
            stack.extend(v.values())
        elif kind is list or kind is tuple:
            stack.extend(v)
        elif isinstance(v, msgspec.Struct):
            stack.extend(getattr(v, name) for name in v.__struct_fields__)
    return True


PATCHES = ("ratelimit", "ua", "strings", "sitecache", "asgi", "rawwrite", "gc")
_COLUMNS = ("site_id", "pageview_id", "metric", "value", "ts", "received_ms", "url", "page_group", "device",
            "nav", "connection", "browser", "is_bot", "attribution")  # fmt: skip
_PG_TYPES = ("int", "text", "text", "float8", "int8", "int8", "text", "text", "text", "text", "text", "text",
             "bool", "text")  # fmt: skip


def _raw_upsert() -> Callable[[Any, list[dict[str, Any]]], Any]:
    from app.ingest.writer import _REPLACED

    encode = msgspec.json.Encoder().encode
    cols = ", ".join(_COLUMNS)
    conflict = "ON CONFLICT (site_id, pageview_id, metric) DO UPDATE SET " + ", ".join(
        f"{c} = excluded.{c}" for c in _REPLACED
    )
    sqlite_sql = f"INSERT INTO measurement ({cols}) VALUES ({', '.join('?' * len(_COLUMNS))}) {conflict}"
    unnest = ", ".join(f"${i}::{t}[]" for i, t in enumerate(_PG_TYPES, 1))
    select = cols.replace("attribution", "attribution::jsonb")
    pg_sql = f"INSERT INTO measurement ({cols}) SELECT {select} FROM unnest({unnest}) AS t({cols}) {conflict}"

    async def upsert(conn: Any, rows: list[dict[str, Any]]) -> None:
        def row(m: dict[str, Any]) -> tuple[Any, ...]:
            attribution = None if m["attribution"] is None else encode(m["attribution"]).decode()
            return (*(m[c] for c in _COLUMNS[:-1]), attribution)

        params = [row(m) for m in rows]
        if conn.dialect.name == "sqlite":
            driver = (await conn.get_raw_connection()).driver_connection
            await driver.executemany(sqlite_sql, params)
        else:
            await conn.exec_driver_sql("SELECT 1")  # makes SQLAlchemy open its transaction first
            driver = (await conn.get_raw_connection()).driver_connection
            await driver.execute(pg_sql, *(list(column) for column in zip(*params, strict=True)))

    return upsert


class _RawUpsertConnection:
    """Hands the writer's measurement upsert to ``upsert``; every other statement passes on."""

    def __init__(self, conn: Any, statement: Any, upsert: Callable[[Any, list[dict[str, Any]]], Any]) -> None:
        self._conn, self._statement, self._upsert = conn, statement, upsert

    async def execute(self, statement: Any, parameters: Any = None, *args: Any, **kwargs: Any) -> Any:
        if statement is self._statement and isinstance(parameters, list) and parameters:
            return await self._upsert(self._conn, parameters)
        return await self._conn.execute(statement, parameters, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def _raw_beacon_handlers() -> tuple[Any, Any]:
    from litestar import asgi, get

    from app.api import beacon as b
    from app.api.deps import services
    from app.db import now_ms
    from app.ingest.decode import BeaconRejected, Client, decode_beacon
    from app.ingest.writer import QueueFull, WriterStopped

    @asgi("/api/v1/beacon")
    async def beacon(scope: Scope, receive: Receive, send: Send) -> None:
        request: Request[Any, Any, Any] = scope["litestar_app"].request_class(scope, receive)
        svc = services(request)
        headers = request.headers
        if headers.get("content-type", "").split(";", 1)[0].strip().lower() not in b.ACCEPTED_TYPES:
            raise b.BeaconError(415, "content type not accepted", "content_type")
        origin = headers.get("origin", "")
        entry = await b._site_for(svc, request.query_params.get("site"), origin)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > svc.settings.beacon_max_bytes:
                raise b.BeaconError(413, "body too large", "too_large")
            if not message.get("more_body"):
                break
        client = Client(
            user_agent=headers.get("user-agent", ""), referer=headers.get("referer", ""), origin=origin
        )
        try:
            rows = decode_beacon(
                b"".join(chunks), limits=svc.limits, site=entry.rules, client=client, now_ms=now_ms()
            )
        except BeaconRejected as exc:
            raise b.BeaconError(400, str(exc), "malformed") from None
        if rows.measurements or rows.errors:
            try:
                done = svc.writer.submit(rows)
            except (QueueFull, WriterStopped):
                raise b._unavailable(svc, "cannot accept now; retry later") from None
            try:
                async with asyncio.timeout(svc.settings.commit_timeout_s):
                    await asyncio.shield(done)
            except Exception:
                raise b._unavailable(svc, "database unavailable; retry later") from None
        cors = [(b"access-control-allow-origin", origin.encode()), (b"vary", b"Origin")]
        await send({"type": "http.response.start", "status": 204, "headers": cors})
        await send({"type": "http.response.body", "body": b""})

    @get("/_whatif/preflight-moved", include_in_schema=False)
    async def preflight_moved() -> None:
        return None

    return beacon, preflight_moved


def apply(patches: set[str]) -> None:
    if "all" in patches:
        patches = set(PATCHES)
    if "ratelimit" in patches:
        import app.server

        app.server._limiter = _fixed_window_limiter  # type: ignore[assignment]
    if "ua" in patches:
        from app.ingest import normalise

        for name in ("is_bot", "device_class", "browser_family"):
            setattr(normalise, name, functools.lru_cache(maxsize=4096)(getattr(normalise, name)))
    if "strings" in patches:
        from app.ingest import decode

        precise = decode._check_strings

        def check_strings(value: Any, path: str, limits: Any) -> None:
            if not _within_limits(value, limits.max_string):
                precise(value, path, limits)  # raises, naming the JSON path

        decode._check_strings = check_strings
    if "asgi" in patches:
        from app.api import beacon as beacon_module

        beacon_module.beacon, beacon_module.beacon_preflight = _raw_beacon_handlers()
    if "rawwrite" in patches:
        from app.ingest.writer import GroupCommitWriter

        write, upsert = GroupCommitWriter._write, _raw_upsert()

        async def raw_write(self: Any, conn: Any, measurements: Any, errors: Any) -> None:
            await write(self, _RawUpsertConnection(conn, self._upsert, upsert), measurements, errors)

        GroupCommitWriter._write = raw_write  # type: ignore[method-assign]
    if "gc" in patches:
        import app.server

        create = app.server.create_app

        def create_app(*args: Any, **kwargs: Any) -> Litestar:
            application = create(*args, **kwargs)
            gc.collect()
            gc.freeze()  # what startup built lives forever: keep it out of every collection
            gc.set_threshold(50_000, 20, 100)
            return application

        app.server.create_app = create_app
    if "sitecache" in patches:
        from app.sites import SiteCache

        load = SiteCache.get
        loading: dict[tuple[int, str], asyncio.Future[Any]] = {}

        async def get(self: Any, key: str) -> Any:
            hit = self._entries.get(key)
            if hit and hit[0] > time.monotonic():
                return hit[1]
            slot = (id(self), key)
            pending = loading.get(slot)
            if pending is None:
                pending = loading[slot] = asyncio.ensure_future(load(self, key))
                pending.add_done_callback(lambda _: loading.pop(slot, None))
            if hit:
                return hit[1]  # stale while one task refreshes it
            return await asyncio.shield(pending)

        SiteCache.get = get  # type: ignore[method-assign]
    unknown = patches - set(PATCHES)
    if unknown:
        raise SystemExit(f"BENCH_WHATIF: unknown patch(es) {sorted(unknown)}; known: {', '.join(PATCHES)}")


def app_from_env() -> Litestar:
    """uvicorn factory for each worker: patch, then build fieldlab as app.server does."""
    apply({p.strip() for p in os.environ.get("BENCH_WHATIF", "").split(",") if p.strip()})
    from app.server import app_from_env as fieldlab_app_from_env

    return fieldlab_app_from_env()


def serve(host: str | None, port: int | None, workers: int | None) -> None:
    """app/cli.py ``serve``, pointed at this module's factory."""
    import uvicorn

    from app.config import Settings
    from app.db import upgrade_database
    from app.logs import configure_logging

    settings = Settings.from_env(host=host, port=port, workers=workers)
    configure_logging(settings.log_level)
    if settings.is_sqlite and settings.auto_migrate:
        upgrade_database(settings.database_url)
    os.environ["FIELDLAB_HOST"] = settings.host
    os.environ["FIELDLAB_PORT"] = str(settings.port)
    if settings.workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="fieldlab-metrics-")
    print(
        f"fieldlab (whatif: {os.environ.get('BENCH_WHATIF', '')}) on http://{settings.host}:{settings.port}"
    )
    uvicorn.run(
        "bench.whatif_app:app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=30,
        server_header=False,
        log_config=None,
    )


def main(argv: list[str]) -> None:
    import argparse

    p = argparse.ArgumentParser(prog="python -m bench.whatif_app")
    p.add_argument("command", choices=["serve"])
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--workers", type=int)
    args = p.parse_args(argv)
    serve(args.host, args.port, args.workers)


if __name__ == "__main__":
    main(sys.argv[1:])
