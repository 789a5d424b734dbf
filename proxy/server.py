"""Run the proxy until SIGINT or SIGTERM, then stop cleanly: stop accepting, drain, flush every record."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Sequence

from aiohttp import web

from proxy import trafficlog
from proxy.access import is_loopback
from proxy.app import summary_line
from proxy.collector import collect_young_less_often
from proxy.embed import start_proxy
from proxy.errors import CassetteDirError, ConfigError
from proxy.pipeline import SinkFactory
from proxy.settings import RecordMode, Settings

log = logging.getLogger("proxy")


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    # aiohttp's access log line per request is noise for a local tool; errors still show.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def startup_line(settings: Settings, port: int) -> str:
    where = f"http://{settings.host}:{port}"
    if settings.mode is RecordMode.REPLAY:
        return f"proxy replay: listening on {where}/v1, serving recordings from {settings.cassettes}/ (offline)"
    db = f" and {settings.db_path}" if settings.db_enabled else ""
    verb = "recording" if settings.mode is RecordMode.RECORD else "replaying hits from and recording misses"
    return (
        f"proxy {settings.mode.value}: listening on {where}/v1, forwarding to {settings.upstream}/v1, "
        f"{verb} to {settings.cassettes}/{db}"
    )


async def serve(
    settings: Settings,
    *,
    sinks: Sequence[SinkFactory] = (),
    extra_routes: Sequence[web.AbstractRouteDef] = (),
    ready: asyncio.Event | None = None,
) -> None:
    asked = settings.mode
    settings = settings.resolved()
    if asked is RecordMode.ONCE:
        found = "found recordings: replaying only" if settings.replays else "no recordings yet: recording"
        log.info("mode once: %s in %s", found, settings.cassettes)
    if settings.mode is RecordMode.REPLAY and not settings.cassettes.is_dir():
        raise CassetteDirError(f"cassette directory not found: {settings.cassettes}")
    proxy = await start_proxy(settings, sinks=sinks, extra_routes=extra_routes)
    state = proxy.state
    if state.index is not None:
        report = state.report.line(settings.cassettes)
        if settings.mode is RecordMode.REPLAY and len(state.index) == 0:
            await proxy.stop()
            raise CassetteDirError(f"no usable cassettes in {settings.cassettes} ({report})")
        print(f"proxy {settings.mode.value}: {report}", flush=True)
    if not is_loopback(settings.host):
        log.warning(
            "listening on %s, which is not a loopback address: anyone who can reach this machine can use "
            "the proxy (and the API key its clients send) and read /_proxy/health",
            settings.host,
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    # Printed once the signal handlers are in place: a supervisor may stop us as soon as it reads this line.
    print(startup_line(settings, proxy.port), flush=True)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        # A second signal while draining must not kill the process half-way through flushing.
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, log.warning, "already stopping: finishing in-flight requests")
        log.info("stopping: draining in-flight requests (up to %gs) and flushing records", settings.drain_timeout)
        await proxy.stop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        print(summary_line(proxy.app), flush=True)


def run(
    settings: Settings, *, sinks: Sequence[SinkFactory] = (), extra_routes: Sequence[web.AbstractRouteDef] = ()
) -> None:
    configure_logging(settings.log_level)
    if settings.quiet:
        trafficlog.quiet()
    collect_young_less_often()
    with asyncio.Runner(loop_factory=loop_factory(settings.event_loop)) as runner:
        runner.run(serve(settings, sinks=sinks, extra_routes=extra_routes))


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when asked for or, with "auto", when installed; None for asyncio's own. uvloop is optional
    (never needed for the README's commands): with it `proxy replay` takes 11-12% less CPU per request, and
    `proxy record`'s own process 6% less per request and 18% less per streamed event (README "Performance")."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ConfigError(
                "event_loop is uvloop, but uvloop is not installed: pip install 'llm-cassette-proxy[fast]'"
            ) from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory
