"""The no-op baseline for bench/beacon_bench.py: the least a Litestar beacon endpoint can do.

One ``POST /api/v1/beacon`` that reads the body and answers 204, served by uvicorn with the same
options ``fieldlab serve`` uses (app/cli.py), so the difference to fieldlab is fieldlab's own
work: rate limiting, site lookup, decoding, normalising, queueing and waiting for the commit.

Run: ``python -m bench.noop_app --host 127.0.0.1 --port 8001 --workers 1`` (from the checkout).
"""

from __future__ import annotations

import argparse
from typing import Any

from litestar import Litestar, Request, Response, post
from litestar.status_codes import HTTP_204_NO_CONTENT


@post("/api/v1/beacon", status_code=HTTP_204_NO_CONTENT)
async def beacon(request: Request[Any, Any, Any]) -> Response[None]:
    await request.body()
    return Response(None, status_code=HTTP_204_NO_CONTENT)


def create_app() -> Litestar:
    # The same app-level knobs as app/server.py where they touch the hot path (body limit,
    # no debug, logging left to uvicorn), and nothing else.
    return Litestar(route_handlers=[beacon], request_max_body_size=65536, debug=False, logging_config=None)


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args()
    # Keep in step with app/cli.py `serve`. Neither names loop= or http=: uvicorn then picks
    # uvloop and httptools (both come with uvicorn[standard]) for both servers alike.
    uvicorn.run(
        "bench.noop_app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        access_log=False,
        timeout_graceful_shutdown=30,
        server_header=False,
        log_config=None,
    )


if __name__ == "__main__":
    main()
