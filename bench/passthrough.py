"""The floor: a bare aiohttp pass-through proxy. No parsing, no recording, nothing but forwarding.

Same server setup as `proxy record` (aiohttp AppRunner, no access log, handler cancellation), a pooled
ClientSession with auto_decompress off, the body streamed back with iter_any as it arrives.

Run: `python bench/passthrough.py --port P --upstream http://127.0.0.1:U`; prints `ready` when listening.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator

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
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
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


def build_app(upstream: str) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[UPSTREAM] = upstream.rstrip("/")
    app.cleanup_ctx.append(_session)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    asyncio.run(serve_until_signal(build_app(args.upstream), args.port))


if __name__ == "__main__":
    main()
