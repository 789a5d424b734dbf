"""The aiohttp app: create_app(settings, sinks=...) wires the parts together; the request handler routes each
request to replay or to the upstream.

What is served from (mode, cassette directory, replay index) is one `ProxyState` (state.py) held by the app,
swapped whole by `retarget`. The recording side (upstream session, runner, recorder) lives as long as the app.
Sinks other than the cassette files (the DuckDB rows) and routes of other packages (the report) are handed in
by the composition root (cli.py, or an embedding program): proxy/ imports neither.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp
from aiohttp import web

from proxy import __version__
from proxy.access import loopback_only, proxy_routes, refuse_tunnels
from proxy.cassettes import CassetteError
from proxy.errors import error_response
from proxy.forward import forward
from proxy.matching import RequestFacts
from proxy.pipeline import PipelineConfig, SinkFactory, Written
from proxy.recorder import BACKLOG_WARNING, Recorder, relative_to
from proxy.replay import describe_miss
from proxy.replay_answer import miss_response, replay_response
from proxy.runners import InProcessRunner, Runner
from proxy.settings import Settings
from proxy.silence import SilenceWatch
from proxy.state import LoadReport, ProxyState, redaction_for
from proxy.stored_routes import STORED, StoredSlot, add_stored_routes
from proxy.trafficlog import MISS, REPLAYED, TRAFFIC, Exchange, Traffic

log = logging.getLogger("proxy")


@dataclass(slots=True)
class Counts:
    requests: int = 0
    forwarded: int = 0
    replayed: int = 0
    misses: int = 0
    errors: int = 0  # answered by the proxy itself because something failed (a cassette that broke)


STATE = web.AppKey("state", ProxyState)
COUNTS = web.AppKey("counts", Counts)
SESSION = web.AppKey("session", aiohttp.ClientSession)
SILENCE = web.AppKey("silence", SilenceWatch)
RECORDER = web.AppKey("recorder", Recorder)


def _runner_for(settings: Settings, config: PipelineConfig) -> Runner:
    if settings.record_workers == "process":
        from proxy.worker_runner import WorkerRunner  # imported only where a worker is wanted

        return WorkerRunner(config, settings.record_worker_priority, settings.record_worker_idle_exit)
    return InProcessRunner(config)


def _recording(sinks: Sequence[SinkFactory], send_heads: bool) -> Any:
    async def context(app: web.Application) -> AsyncIterator[None]:
        settings = app[STATE].settings
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=60)
        # auto_decompress off, no automatic Accept-Encoding/User-Agent: bytes and headers pass through as sent.
        app[SESSION] = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
            timeout=aiohttp.ClientTimeout(total=None, connect=settings.connect_timeout),
        )
        app[SILENCE] = SilenceWatch()
        config = PipelineConfig(redaction_for(settings), tuple(sinks), send_heads)
        recorder = Recorder(_runner_for(settings, config), app[TRAFFIC])
        recorder.listeners.append(_index_new_recordings(app))
        app[RECORDER] = recorder
        try:
            await recorder.start()
            yield
        finally:
            await recorder.close()
            await app[SILENCE].close()
            await app[SESSION].close()

    return context


def _index_new_recordings(app: web.Application) -> Any:
    """In auto mode a recording replays as soon as it is written (into the directory served now)."""

    def index_new(written: Written) -> None:
        state = app[STATE]
        if written.head is None or written.cassette is None or state.index is None:
            return
        if written.directory == state.settings.cassettes:
            state.index.add(written.head, written.directory / written.cassette)

    return index_new


async def handle(request: web.Request) -> web.StreamResponse:
    app = request.app
    state = app[STATE]
    settings, route, index = state.settings, state.route, state.index
    counts = app[COUNTS]
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return error_response(
            413,
            f"request body larger than max_body_bytes ({settings.max_body_bytes} bytes)",
            "invalid_request_error",
            "request_too_large",
        )
    counts.requests += 1
    if index is not None:
        query = request.rel_url.raw_query_string
        hit, facts = index.lookup(request.method, request.path, query, request.headers, body)
        if hit is not None:
            counts.replayed += 1
            started = time.perf_counter()
            try:
                # a recording's file is read and prepared on its first replay: off the event loop
                prepared = hit.prepared if hit.prepared is not None else await asyncio.to_thread(hit.prepare)
                response = await replay_response(request, prepared, settings.timing, settings.speed)
            except CassetteError as exc:  # the file changed or broke after it was indexed
                counts.errors += 1
                log.warning("cannot replay %s: %s", hit.label, exc)
                response = error_response(500, f"cannot replay {hit.label}: {exc}", "proxy_error", "bad_cassette")
                response.headers["x-should-retry"] = "false"
                return response
            traffic = app[TRAFFIC]
            if traffic.wanted():
                took = (time.perf_counter() - started) * 1000.0
                exchange = Exchange(
                    REPLAYED, request.method, request.path, hit.facts.model, response.status, took, hit.path
                )
                traffic.report(exchange, relative_to(hit.path, settings.cassettes) or hit.label)
            return response
        if not route.records:
            counts.misses += 1
            if facts is None:
                facts = RequestFacts.from_parts(request.method, request.path, query, request.headers.items(), body)
            message = describe_miss(facts, index)
            traffic = app[TRAFFIC]
            if traffic.wanted():
                exchange = Exchange(MISS, request.method, request.path, facts.model, 404, None, None, message)
                traffic.report(exchange, None)
            return miss_response(message)
    counts.forwarded += 1
    return await forward(request, app[SESSION], route.forward, app[RECORDER], body, app[SILENCE])


async def replay_reset(request: web.Request) -> web.Response:
    """Every repeat counter back to the first recording: a second run of a test suite starts afresh."""
    index = request.app[STATE].index
    if index is None:
        return error_response(409, "this proxy does not replay (mode record)", "invalid_request_error", "not_replaying")
    return web.json_response({"reset": True, "queues_rewound": index.reset(), "recordings": len(index)})


def summary_line(app: web.Application) -> str:
    """One line for a clean stop: what the proxy did while it ran."""
    counts = app[COUNTS]
    recorder = app.get(RECORDER)
    recorded = recorder.recorded if recorder is not None else 0
    errors = counts.errors + (recorder.write_errors + recorder.upstream_errors if recorder is not None else 0)
    stored = app[TRAFFIC].stored
    return (
        f"proxy: stopped after {counts.requests + stored} request(s): {recorded} recorded, {counts.replayed} "
        f"replayed, {counts.misses} miss(es), " + (f"{stored} stored-API, " if stored else "") + f"{errors} error(s)"
    )


async def health(request: web.Request) -> web.Response:
    app = request.app
    state = app[STATE]
    settings = state.settings
    recorder = app.get(RECORDER)
    db: dict[str, Any] | None = None
    if recorder is not None:
        for stats in await recorder.refresh_sink_stats(timeout=0.5):
            if stats.name == "database":
                db = {"rows_written": stats.rows_written, "write_errors": stats.write_errors}
                db["last_error"] = stats.last_error
        if db is None and settings.db_enabled and settings.records:  # its worker has not reported yet
            db = {"rows_written": 0, "write_errors": 0, "last_error": None}
    write_errors = (recorder.write_errors if recorder else 0) + (db["write_errors"] if db else 0)
    degraded = recorder is not None and bool(
        recorder.last_error or recorder.pending >= BACKLOG_WARNING or recorder.stalled_for
    )
    body = {
        "status": "degraded" if degraded or (db and db["last_error"]) else "ok",
        "version": __version__,
        "mode": settings.mode.value,
        "event_loop": type(asyncio.get_running_loop()).__module__.partition(".")[0],  # uvloop or asyncio
        "upstream": None if settings.mode.value == "replay" else settings.upstream,
        "cassettes": str(settings.cassettes),
        "counts": {**asdict(app[COUNTS]), "stored": app[TRAFFIC].stored},
        "recordings": len(state.index) if state.index is not None else None,
        "interactions_recorded": recorder.recorded if recorder else 0,
        "recording_pending": recorder.pending if recorder else 0,
        "recording_stalled_s": round(recorder.stalled_for, 1) if recorder else 0.0,
        "write_errors": write_errors,
        "cassette_write_errors": recorder.write_errors if recorder else 0,
        "last_write_error": recorder.last_error if recorder else None,
        "database": db,
    }
    return web.json_response(body)


def retarget(app: web.Application, settings: Settings) -> LoadReport:
    """Serve from other settings (another cassette directory, another mode) from the next request on. The
    recording side stays: an app that may ever record must have been created with `may_record`."""
    new = ProxyState.build(settings)
    if new.settings.records and RECORDER not in app:
        raise ValueError("this proxy was started without a recording side (create_app(..., may_record=True))")
    app[STATE].take(new)
    app[STORED].current = new.stored
    return new.report


def create_app(
    settings: Settings,
    *,
    sinks: Sequence[SinkFactory] = (),
    extra_routes: Sequence[web.AbstractRouteDef] = (),
    may_record: bool | None = None,
) -> web.Application:
    """The app. `sinks` get every recorded interaction besides its cassette (built where the recording pipeline
    runs); `extra_routes` go before the catch-all forwarding route (the report under `/_proxy/report`);
    `may_record` keeps a recording side even when the mode does not record now, for `retarget`."""
    state = ProxyState.build(settings)
    app = web.Application(client_max_size=state.settings.max_body_bytes)
    refuse_tunnels(app.router)
    app[STATE] = state
    app[COUNTS] = Counts()
    app[TRAFFIC] = Traffic()
    if state.settings.records if may_record is None else may_record:
        app.cleanup_ctx.append(_recording(sinks, send_heads=may_record is True or state.settings.replays))
    app.router.add_get("/_proxy/health", loopback_only(health))
    app.router.add_post("/_proxy/replay/reset", loopback_only(replay_reset))
    add_stored_routes(app, StoredSlot(handle, state.stored))
    app.router.add_routes(list(proxy_routes(extra_routes)))
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


__all__ = ["COUNTS", "RECORDER", "STATE", "create_app", "handle", "retarget", "summary_line"]
