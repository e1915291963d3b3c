"""CPU per beacon, in-process: fieldlab's ASGI app against the no-op, no sockets.

beacon_bench.py measures the real thing end to end, but on a small shared box its figures move
with whatever else runs. This drives the ASGI apps directly from 64 concurrent tasks in one
process (same shape of page-view beacons, real SQLite file, real group-commit writer) and
reports CPU microseconds per request (all threads, so SQLite's work is in), which is steadier.
uvicorn's HTTP parsing is not included (it costs the same for both apps).

    .venv/bin/python bench/beacon_hotpath.py                      # no-op and fieldlab
    .venv/bin/python bench/beacon_hotpath.py --variant fieldlab --profile 30   # top 30 functions
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

VARIANTS = ["noop", "fieldlab"]
UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)
URLS = [
    "https://shop.example/",
    "https://shop.example/product/48213",
    "https://shop.example/product/1187?utm_source=newsletter&utm_medium=email",
    "https://shop.example/category/shoes?page=2&sort=price",
    "https://shop.example/search?q=running+shoes",
    "https://shop.example/checkout/payment#card",
    "https://shop.example/account/orders/5f0c2a9e-1b7d-4c11-9a0e-0d6c3b1e2f44",
]


def page_view(pv_id: str, rnd: random.Random) -> bytes:
    """The same shape as bench/beacon.lua sends."""
    ttfb = 40 + rnd.random() * 400
    fcp = ttfb + 150 + rnd.random() * 1200
    lcp = fcp + rnd.random() * 2500
    inp = rnd.randint(16, 416)
    cls = round(rnd.random() * 0.3, 4)
    body = {
        "v": 1,
        "id": pv_id,
        "url": rnd.choice(URLS),
        "nav": "navigate",
        "ts": int(time.time() * 1000),
        "metrics": {"LCP": round(lcp, 1), "FCP": round(fcp, 1), "TTFB": round(ttfb, 1), "INP": inp, "CLS": cls},
        "attribution": {
            "LCP": {"element": "main>section.hero>picture>img", "url": "https://cdn.shop.example/img/hero-3.avif",
                    "ttfb": round(ttfb, 1), "loadDelay": 100.5, "loadDuration": 310.2, "renderDelay": 40.1},
            "INP": {"target": "button.add-to-cart", "type": "pointer", "time": 4012, "inputDelay": 12.5,
                    "processing": inp * 0.6, "presentation": inp * 0.3,
                    "loaf": [{"src": "https://shop.example/static/js/app.4f2a9c.js", "dur": 80}]},
            "CLS": {"target": "div.promo-banner", "time": 3010, "value": cls},
        },
        "context": {"vw": 1920, "vh": 1080, "dm": 8, "ect": "4g", "dpr": 1},
    }  # fmt: skip
    return json.dumps(body, separators=(",", ":")).encode()


async def _lifespan(app: Any) -> tuple[asyncio.Task[None], asyncio.Queue[dict[str, str]]]:
    inbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    started = asyncio.get_running_loop().create_future()

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "lifespan.startup.complete" and not started.done():
            started.set_result(None)
        elif message["type"] == "lifespan.startup.failed":
            started.set_exception(RuntimeError(message.get("message", "startup failed")))

    await inbox.put({"type": "lifespan.startup"})
    task = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, send)
    )
    await started
    return task, inbox


async def post_beacon(app: Any, key: str, body: bytes, headers: list[tuple[bytes, bytes]]) -> int:
    """One POST /api/v1/beacon straight into the ASGI app; returns the status."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/api/v1/beacon", "raw_path": b"/api/v1/beacon",
             "query_string": f"site={key}".encode(), "root_path": "", "client": ("127.0.0.1", 40000),
             "server": ("127.0.0.1", 8000), "state": {},
             "headers": [*headers, (b"content-length", str(len(body)).encode())]}  # fmt: skip
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    status = 0

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await asyncio.sleep(3600)  # a live client: never disconnects
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def drive(app: Any, key: str, *, requests: int, concurrency: int) -> dict[str, Any]:
    statuses: dict[str, int] = {}
    rnd = random.Random(7)
    tag = f"{os.getpid()}x{time.monotonic_ns()}"
    bodies = [page_view(f"hp{tag}-{i}", rnd) for i in range(requests)]
    headers = [(b"content-type", b"text/plain;charset=UTF-8"), (b"origin", b"https://shop.example"),
               (b"user-agent", UA.encode()), (b"host", b"127.0.0.1:8000")]  # fmt: skip
    todo = iter(bodies)

    async def client() -> None:
        for body in todo:
            status = str(await post_beacon(app, key, body, headers))
            statuses[status] = statuses.get(status, 0) + 1

    wall0, cpu0, loop0 = time.perf_counter(), time.process_time(), time.thread_time()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    loop_cpu = time.thread_time() - loop0  # the event loop's thread alone (no SQLite thread)
    return {"requests": requests, "statuses": statuses, "wall_s": round(wall, 3),
            "cpu_us_per_request": round(1e6 * cpu / requests, 1), "requests_per_cpu_s": round(requests / cpu),
            "loop_cpu_us_per_request": round(1e6 * loop_cpu / requests, 1)}  # fmt: skip


async def run_variant(variant: str, requests: int, concurrency: int, profile: int = 0) -> dict[str, Any]:
    if variant == "noop":
        from bench.noop_app import create_app as noop_app

        return await drive(noop_app(), "none", requests=requests, concurrency=concurrency)
    from app.config import Settings
    from app.db import upgrade_database
    from app.server import create_app, tune_process
    from app.sites import create_site

    with tempfile.TemporaryDirectory(prefix="fieldlab-hotpath-") as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/hot.db"
        await asyncio.to_thread(upgrade_database, url)
        settings = Settings(
            database_url=url, rate_limit_per_ip=10**7, rate_limit_per_site=10**7, log_level="WARNING"
        )
        app = create_app(settings)
        tune_process()  # as app.server.app_from_env does for a serving process
        task, inbox = await _lifespan(app)
        try:
            site = await create_site(db=app.state.services.db, name="hot", origins=["https://shop.example"])
            await drive(app, site.key, requests=min(2000, requests), concurrency=concurrency)  # warm-up
            if profile:
                import cProfile
                import pstats

                with cProfile.Profile() as prof:
                    result = await drive(app, site.key, requests=requests, concurrency=concurrency)
                pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(profile)
                pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(profile)
            else:
                result = await drive(app, site.key, requests=requests, concurrency=concurrency)
            sample = app.state.services.metrics.registry.get_sample_value
            batches = sample("fieldlab_writer_batch_size_count") or 0
            beacons = sample("fieldlab_writer_batch_size_sum") or 0
            commit_s = sample("fieldlab_writer_commit_seconds_sum") or 0
            result["writer"] = {
                "batches": batches,
                "mean_batch": round(beacons / max(1, batches), 1),
                "mean_commit_ms": round(1000 * commit_s / max(1, batches), 2),
            }
        finally:
            await inbox.put({"type": "lifespan.shutdown"})
            await asyncio.wait_for(task, 30)
        return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--variant", choices=VARIANTS, help="run one (default: each, in its own process)")
    p.add_argument(
        "--profile", type=int, default=0, metavar="N", help="with --variant fieldlab: cProfile top N"
    )
    p.add_argument("--requests", type=int, default=15000)
    p.add_argument("--concurrency", type=int, default=64)
    args = p.parse_args()
    if args.variant:
        result = asyncio.run(run_variant(args.variant, args.requests, args.concurrency, args.profile))
        print("RESULT " + json.dumps(result))
        return
    print(
        f"{args.requests} beacons from {args.concurrency} concurrent tasks, in-process, SQLite; CPU per request"
    )
    base: float | None = None
    for variant in VARIANTS:  # one process each: the patches are process-wide
        argv = [sys.executable, __file__, "--variant", variant, "--requests", str(args.requests)]
        out = subprocess.run(
            [*argv, "--concurrency", str(args.concurrency)], capture_output=True, text=True, timeout=300
        )
        line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if line is None:
            print(f"{variant:16s} failed: {out.stderr[-800:]}")
            continue
        r = json.loads(line.removeprefix("RESULT "))
        base = base or r["cpu_us_per_request"]
        ok = sum(n for s, n in r["statuses"].items() if s.startswith("2"))
        print(f"{variant:16s} {r['cpu_us_per_request']:7.1f} us/request, {r['loop_cpu_us_per_request']:7.1f} on the "
              f"event loop's thread, {r['wall_s']:.1f} s wall ({r['requests_per_cpu_s']:,} per CPU-second, "
              f"{ok}/{r['requests']} 2xx, x{r['cpu_us_per_request'] / base:.1f} the no-op)")  # fmt: skip


if __name__ == "__main__":
    main()
