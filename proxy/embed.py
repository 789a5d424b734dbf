"""Start a proxy inside a running program: one call, a free loopback port, a base URL, a clean stop.

    async with await start_proxy(Settings(mode="replay", cassettes=Path("cassettes"))) as proxy:
        client = openai.AsyncOpenAI(base_url=proxy.base_url, api_key="unused")

`start_proxy` runs on the caller's event loop; `ProxyThread` gives a synchronous program (a pytest session) a
proxy on an event loop of its own, in a daemon thread. `proxy serve` is one more caller of `start_proxy`.

The listening socket is bound before anything else starts, so a port in use fails at once and leaves no file
behind (no cassette directory, no database).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import socket
import threading
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from proxy.app import RECORDER, STATE, create_app, retarget
from proxy.errors import ProxyError
from proxy.pipeline import SinkFactory
from proxy.settings import Settings
from proxy.state import LoadReport, ProxyState
from proxy.trafficlog import TRAFFIC, Exchange

__all__ = ["EmbeddedProxy", "ProxyThread", "start_proxy"]

_T = TypeVar("_T")


@dataclass
class EmbeddedProxy:
    app: web.Application
    runner: web.AppRunner
    url: str  # http://HOST:PORT, without /v1
    _stopped: bool = field(default=False, repr=False)

    @property
    def base_url(self) -> str:
        """What an OpenAI client takes as `base_url`."""
        return f"{self.url}/v1"

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def state(self) -> ProxyState:
        return self.app[STATE]

    @property
    def settings(self) -> Settings:
        return self.app[STATE].settings

    def retarget(self, cassettes: Path, mode: str, **overrides: Any) -> LoadReport:
        """Serve from another cassette directory, in another mode, from the next request on (on the proxy's
        loop). Recordings of earlier requests still land where they were made for."""
        values = {**self.settings.model_dump(), "cassettes": cassettes, "mode": mode, **overrides}
        return retarget(self.app, Settings.model_validate(values))

    def observe(self, observer: Callable[[Exchange], None]) -> None:
        """Call `observer` with every exchange from now on (on the proxy's loop): what was recorded, replayed,
        missed (with the message that explains the miss) or answered from the stored completions."""
        self.app[TRAFFIC].observers.append(observer)

    async def settle(self) -> None:
        """Return once every recording made so far is written and reported (a test's cassettes are complete)."""
        recorder = self.app.get(RECORDER)
        if recorder is not None:
            await recorder.runner.settle()

    async def stop(self) -> None:
        """Stop accepting, let running requests finish (up to `drain_timeout`), write every recording."""
        if not self._stopped:
            self._stopped = True
            await self.runner.cleanup()

    async def __aenter__(self) -> EmbeddedProxy:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()


def _bind(host: str, port: int) -> socket.socket:
    try:
        return socket.create_server((host, port), reuse_port=False)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise ProxyError(f"cannot listen on {host}:{port}: {reason}") from None


async def start_proxy(
    settings: Settings | None = None,
    *,
    sinks: Sequence[SinkFactory] = (),
    extra_routes: Sequence[web.AbstractRouteDef] = (),
    may_record: bool | None = None,
) -> EmbeddedProxy:
    """A running proxy on the current event loop; `settings` defaults to replaying `cassettes/` on a free port
    (port 0). Raises ProxyError (a one-line message) when it cannot listen."""
    if settings is None:
        settings = Settings.model_validate({"mode": "replay", "port": 0, "record_workers": "in-process"})
    sock = _bind(settings.host, settings.port)
    try:
        app = create_app(settings, sinks=sinks, extra_routes=extra_routes, may_record=may_record)
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=settings.drain_timeout)
        await runner.setup()
    except BaseException:
        sock.close()
        raise
    site = web.SockSite(runner, sock)
    await site.start()
    host, port = sock.getsockname()[:2]
    return EmbeddedProxy(app, runner, f"http://{host}:{port}")


class ProxyThread:
    """A proxy on its own event loop in a daemon thread, for synchronous callers. `start` returns once it
    listens; `call` runs a function on the proxy's loop (where its state may be touched); `stop` drains it."""

    def __init__(self, settings: Settings | None = None, **kwargs: Any) -> None:
        self._settings = settings
        self._kwargs = kwargs
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="proxy", daemon=True)
        self.proxy: EmbeddedProxy | None = None

    def start(self, timeout: float = 30.0) -> EmbeddedProxy:
        self._thread.start()
        self.proxy = self._run(start_proxy(self._settings, **self._kwargs), timeout)
        return self.proxy

    def _run(self, coroutine: Coroutine[Any, Any, _T], timeout: float) -> _T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def call(self, function: Callable[..., _T], *args: Any, timeout: float = 30.0) -> _T:
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(function(*args))
            except BaseException as exc:
                future.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return future.result(timeout)

    def settle(self, timeout: float = 60.0) -> None:
        """EmbeddedProxy.settle, from the caller's thread."""
        if self.proxy is not None:
            self._run(self.proxy.settle(), timeout)

    def stop(self, timeout: float = 60.0) -> None:
        try:
            if self.proxy is not None:
                self._run(self.proxy.stop(), timeout)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
            self._loop.close()
