"""Serve an aiohttp app the way `proxy` does (AppRunner, no access log, handler cancellation) until a signal."""

from __future__ import annotations

import asyncio
import signal

from aiohttp import web


async def serve_until_signal(app: web.Application, port: int) -> None:
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, reuse_address=True).start()
    print("ready", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
