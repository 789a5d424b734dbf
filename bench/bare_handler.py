"""The replay floor: a bare aiohttp handler that answers every request with the same recorded bytes.

It reads the request body (as `proxy replay` does) and returns a prebuilt status, headers and body: no
matching, no lookup. The payload file is JSON {"status", "content_type", "headers", "body_b64"}, written by
run.py from what `proxy replay` itself sent back for the benchmark's request, so both send the same bytes.

Run: `python bench/bare_handler.py --port P --payload FILE`; prints `ready` when listening.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
from pathlib import Path

from aiohttp import web
from multidict import CIMultiDict
from serving import serve_until_signal


def build_app(status: int, headers: list[tuple[str, str]], body: bytes) -> web.Application:
    prebuilt = CIMultiDict(headers)

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=status, body=body, headers=prebuilt)

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--payload", type=Path, required=True)
    args = parser.parse_args()
    payload = json.loads(args.payload.read_text())
    headers = [tuple(pair) for pair in payload.get("headers") or [("Content-Type", payload["content_type"])]]
    app = build_app(payload["status"], headers, base64.b64decode(payload["body_b64"]))
    asyncio.run(serve_until_signal(app, args.port))


if __name__ == "__main__":
    main()
