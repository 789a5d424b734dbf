"""The floor: a bare aiohttp pass-through proxy. No parsing, no recording, nothing but forwarding.

Same server setup as `proxy record` (aiohttp AppRunner, no access log, handler cancellation), a pooled
ClientSession with auto_decompress off, the body streamed back with iter_any as it arrives.

With `--tee DIR` it also keeps a copy of every response body, one file per exchange written when the
exchange ends: the floor for what recording costs per streamed event (issue #16 compares against it).

Run: `python bench/passthrough.py --port P --upstream http://127.0.0.1:U [--tee DIR]`; prints `ready` when
listening.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from serving import serve_until_signal
from yarl import URL

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
NOT_FORWARDED = HOP_BY_HOP | {"host", "content-length"}
NOT_RETURNED = HOP_BY_HOP | {"content-length"}

SESSION = web.AppKey("session", aiohttp.ClientSession)
UPSTREAM = web.AppKey("upstream", str)
TEE = web.AppKey("tee", Path)


async def handle(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    out_headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in NOT_FORWARDED)
    url = URL(request.app[UPSTREAM] + request.rel_url.raw_path_qs, encoded=True)
    async with request.app[SESSION].request(
        request.method, url, headers=out_headers, data=body or None, allow_redirects=False
    ) as upstream:
        response = web.StreamResponse(
            status=upstream.status,
            reason=upstream.reason,
            headers=CIMultiDict((k, v) for k, v in upstream.headers.items() if k.lower() not in NOT_RETURNED),
        )
        if upstream.content_length is not None:
            response.content_length = upstream.content_length
        await response.prepare(request)
        tee = request.app.get(TEE)
        copy: list[bytes] = []
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
            if tee is not None:
                copy.append(chunk)
        await response.write_eof()
        if tee is not None:
            (tee / f"{next(_EXCHANGES)}.body").write_bytes(b"".join(copy))
        return response


async def _session(app: web.Application) -> AsyncIterator[None]:
    app[SESSION] = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60),
        auto_decompress=False,
        skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
        timeout=aiohttp.ClientTimeout(total=None, connect=10),
    )
    yield
    await app[SESSION].close()


_EXCHANGES = itertools.count()


def build_app(upstream: str, tee: Path | None = None) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[UPSTREAM] = upstream.rstrip("/")
    if tee is not None:
        tee.mkdir(parents=True, exist_ok=True)
        app[TEE] = tee
    app.cleanup_ctx.append(_session)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--tee", type=Path, help="keep a copy of every response body in this folder")
    args = parser.parse_args()
    asyncio.run(serve_until_signal(build_app(args.upstream, args.tee), args.port))


if __name__ == "__main__":
    main()
