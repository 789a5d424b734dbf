"""The composition root: create_app(settings) wires the parts together; it holds no logic of its own."""

from __future__ import annotations

import ipaddress
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler

from proxy import __version__, trafficlog
from proxy.cassettes import CassetteError, head_of, load_heads
from proxy.errors import error_response
from proxy.forward import ForwardConfig, forward
from proxy.interaction import Interaction
from proxy.matching import MatchPolicy, RequestFacts
from proxy.recorder import BACKLOG_WARNING, Recorder, relative_to
from proxy.recording import Redaction
from proxy.replay import ReplayIndex, miss_response, replay_response
from proxy.settings import RecordMode, Settings
from proxy.stored_routes import add_stored_routes
from proxy.worker import WorkerSink

log = logging.getLogger("proxy")

SETTINGS = web.AppKey("settings", Settings)
SESSION = web.AppKey("session", aiohttp.ClientSession)
RECORDER = web.AppKey("recorder", Recorder)
REPLAY_INDEX = web.AppKey("replay_index", ReplayIndex)
DB_WRITER = web.AppKey("db_writer", object)


@dataclass(slots=True)
class Counts:
    requests: int = 0
    forwarded: int = 0
    replayed: int = 0
    misses: int = 0
    errors: int = 0  # answered by the proxy itself because something failed (a cassette that broke)


COUNTS = web.AppKey("counts", Counts)


@dataclass(frozen=True, slots=True)
class Route:
    """What `handle` needs to know of the settings, worked out once: it runs for every request."""

    replays: bool
    records: bool
    forward: ForwardConfig

    @classmethod
    def of(cls, settings: Settings) -> Route:
        return cls(
            replays=settings.replays,
            records=settings.records,
            forward=ForwardConfig(
                upstream=settings.upstream,
                connect_timeout=settings.connect_timeout,
                first_byte_timeout=settings.first_byte_timeout,
                chunk_timeout=settings.chunk_timeout,
                mode=settings.mode.value,
            ),
        )


ROUTE = web.AppKey("route", Route)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def redaction_for(settings: Settings) -> Redaction:
    return Redaction(
        secret_headers=frozenset(name.lower() for name in settings.secret_headers),
        secret_query_params=frozenset(name.lower() for name in settings.secret_query_params),
        secret_body_fields=frozenset(settings.secret_body_fields),
    )


def match_policy_for(settings: Settings) -> MatchPolicy:
    return MatchPolicy(
        # a secret field is recorded as a marker, so it can't take part in matching
        ignore_body_fields=frozenset(settings.ignore_body_fields) | frozenset(settings.secret_body_fields),
        match_headers=tuple(name.lower() for name in settings.match_headers),
        on_exhausted=settings.on_exhausted,
    )


@dataclass(slots=True)
class LoadReport:
    """What replay found in the cassette directory: how many recordings it serves, and what it left out, why."""

    loaded: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def line(self, directory: Path) -> str:
        text = f"loaded {self.loaded} recording(s) from {directory}/"
        if self.skipped:
            reasons = ", ".join(f"{count} {reason}" for reason, count in self.skipped.most_common())
            text += f"; skipped {sum(self.skipped.values())}: {reasons}"
        return text


def load_replay_index(settings: Settings) -> tuple[ReplayIndex, LoadReport]:
    """Read every cassette under the directory into the index; bad files are skipped with one warning each."""
    index = ReplayIndex(match_policy_for(settings), forwards_misses=settings.mode is RecordMode.AUTO)
    report = LoadReport()
    directory = settings.cassettes
    if directory.is_dir():
        good, bad = load_heads(directory)
        for item in bad:
            log.warning("skipping cassette %s: %s", item.path, item.reason)
        report.skipped.update("unreadable" for _ in bad)
        for path, interaction in sorted(good, key=lambda pair: pair[1].metadata.recorded_at):
            reason = index.add(interaction, path)
            if reason is None:
                report.loaded += 1
            else:
                report.skipped[reason] += 1
    return index, report


async def _upstream_session(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=60)
    # auto_decompress off and no automatic Accept-Encoding/User-Agent: bytes and headers pass through as sent.
    session = aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,
        skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
        timeout=aiohttp.ClientTimeout(total=None, connect=settings.connect_timeout),
    )
    app[SESSION] = session
    yield
    await session.close()


async def _recording_sinks(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    writer: Any = None
    derive = None
    sink = None
    if settings.db_enabled:
        from analytics import store
        from analytics.prices import overrides_from, price_table
        from analytics.rows import interaction_rows

        # rows are made where the cassette is built, off the event loop; priced with the config's overrides
        derive = partial(interaction_rows, prices=price_table(overrides_from(settings.prices)))
        if settings.record_workers == "process":
            # The DuckDB writer lives in the recording worker too: its Arrow and DuckDB calls hold the GIL
            # for milliseconds per flush, which streamed chunks would otherwise wait behind.
            sink = WorkerSink(
                start=partial(store.start_in_worker, settings.db_path, settings.db_flush_interval),
                submit=store.submit_in_worker,
                stats=store.stats_in_worker,
                close=store.close_in_worker,
            )
        else:
            writer = store.DuckDBWriter(settings.db_path, flush_interval=settings.db_flush_interval)
            await writer.start()
            app[DB_WRITER] = writer
    recorder = Recorder(
        settings.cassettes,
        redaction_for(settings),
        settings.record_workers,
        derive,
        sink,
        settings.record_worker_priority,
    )
    recorder.needs_interaction = settings.replays
    await recorder.start()
    app[RECORDER] = recorder
    if writer is not None:

        def to_database(interaction: Interaction | None, path: Path | None, rows: Any) -> None:
            if rows is not None:  # None when making them failed (logged where it happened)
                writer.submit_rows(rows)

        recorder.listeners.append(to_database)
    if settings.replays:
        index = app[REPLAY_INDEX]

        def index_new(interaction: Interaction | None, path: Path | None, _: object) -> None:
            if interaction is not None and path is not None:
                index.add(head_of(interaction), path)

        recorder.listeners.append(index_new)
    yield
    await recorder.close()
    if writer is not None:
        await writer.close()


@web.middleware
async def refuse_tunnels(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A reverse proxy to one upstream: tunnelling to a host the client names would make it an open proxy.
    A middleware, because a CONNECT's authority-form target (`host:443`) matches no route."""
    if request.method == "CONNECT":
        return error_response(
            405,
            "CONNECT is not supported: this proxy forwards only to its upstream",
            "invalid_request_error",
            "method_not_allowed",
        )
    return await handler(request)


async def handle(request: web.Request) -> web.StreamResponse:
    app = request.app
    settings = app[SETTINGS]
    route = app[ROUTE]
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
    if route.replays:
        index = app[REPLAY_INDEX]
        query = request.rel_url.raw_query_string
        hit, facts = index.lookup(request.method, request.path, query, request.headers, body)
        if hit is not None:
            counts.replayed += 1
            started = time.perf_counter()
            try:
                response = await replay_response(request, hit, settings.timing, settings.speed)
            except CassetteError as exc:  # the file changed or broke after it was indexed
                counts.errors += 1
                log.warning("cannot replay %s: %s", hit.label, exc)
                response = error_response(500, f"cannot replay {hit.label}: {exc}", "proxy_error", "bad_cassette")
                response.headers["x-should-retry"] = "false"
                return response
            if trafficlog.enabled():
                took = (time.perf_counter() - started) * 1000.0
                label = relative_to(hit.path, settings.cassettes) or hit.label
                trafficlog.line(
                    trafficlog.REPLAYED, request.method, request.path, hit.facts.model, response.status, took, label
                )
            return response
        if not route.records:
            counts.misses += 1
            if facts is None:
                facts = RequestFacts.from_parts(request.method, request.path, query, request.headers.items(), body)
            response = miss_response(facts, index)
            if trafficlog.enabled():
                trafficlog.line(trafficlog.MISS, request.method, request.path, facts.model, response.status, None, None)
            return response
    counts.forwarded += 1
    return await forward(request, app[SESSION], route.forward, app[RECORDER], body)


@web.middleware
async def loopback_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    """`/_proxy/` tells what was recorded and can reset replay: only this machine may ask, whatever the
    listening address."""
    if request.path.startswith("/_proxy/") and not is_loopback(request.remote or ""):
        return error_response(403, "/_proxy/ answers only on loopback", "invalid_request_error", "forbidden")
    return await handler(request)


async def replay_reset(request: web.Request) -> web.Response:
    """Every repeat counter back to the first recording: a second run of a test suite starts afresh."""
    index = request.app.get(REPLAY_INDEX)
    if index is None:
        return error_response(409, "this proxy does not replay (mode record)", "invalid_request_error", "not_replaying")
    return web.json_response({"reset": True, "queues_rewound": index.reset(), "recordings": len(index)})


def summary_line(app: web.Application) -> str:
    """One line for a clean stop: what the proxy did while it ran."""
    counts = app[COUNTS]
    recorder = app.get(RECORDER)
    recorded = recorder.recorded if recorder is not None else 0
    errors = counts.errors + (recorder.write_errors + recorder.upstream_errors if recorder is not None else 0)
    return (
        f"proxy: stopped after {counts.requests} request(s): {recorded} recorded, {counts.replayed} replayed, "
        f"{counts.misses} miss(es), {errors} error(s)"
    )


async def health(request: web.Request) -> web.Response:
    app = request.app
    settings = app[SETTINGS]
    recorder = app.get(RECORDER)
    writer: Any = app.get(DB_WRITER)
    db: dict[str, Any] | None = None
    stats: Any = writer.stats() if writer is not None else None
    if recorder is not None and recorder.sink is not None:
        stats = await recorder.refresh_sink_stats(timeout=0.5)
    if stats is not None:
        db = {"rows_written": stats.rows_written, "write_errors": stats.write_errors, "last_error": stats.last_error}
    elif settings.db_enabled and settings.records:
        db = {"rows_written": 0, "write_errors": 0, "last_error": None}
    write_errors = (recorder.write_errors if recorder else 0) + (db["write_errors"] if db else 0)
    body = {
        "status": "degraded"
        if (recorder and (recorder.last_error or recorder.pending >= BACKLOG_WARNING or recorder.stalled_for))
        or (db and db["last_error"])
        else "ok",
        "version": __version__,
        "mode": settings.mode.value,
        "upstream": None if settings.mode.value == "replay" else settings.upstream,
        "cassettes": str(settings.cassettes),
        "counts": asdict(app[COUNTS]),
        "recordings": len(app[REPLAY_INDEX]) if settings.replays else None,
        "interactions_recorded": recorder.recorded if recorder else 0,
        "recording_pending": recorder.pending if recorder else 0,
        "recording_stalled_s": round(recorder.stalled_for, 1) if recorder else 0.0,
        "write_errors": write_errors,
        "cassette_write_errors": recorder.write_errors if recorder else 0,
        "last_write_error": recorder.last_error if recorder else None,
        "database": db,
    }
    return web.json_response(body)


def create_app(
    settings: Settings, replay_index: ReplayIndex | None = None, extra_routes: Sequence[web.AbstractRouteDef] = ()
) -> web.Application:
    """The app. `extra_routes` are added before the catch-all forwarding route: the composition root (cli.py)
    hands in routes of other packages this way (the report under `/_proxy/report`), so proxy/ imports none."""
    settings = settings.resolved()
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[refuse_tunnels, loopback_only])
    app[SETTINGS] = settings
    app[ROUTE] = Route.of(settings)
    app[COUNTS] = Counts()
    if settings.replays:
        app[REPLAY_INDEX] = replay_index if replay_index is not None else load_replay_index(settings)[0]
    if settings.records:
        app.cleanup_ctx.append(_upstream_session)
        app.cleanup_ctx.append(_recording_sinks)
    app.router.add_get("/_proxy/health", health)
    app.router.add_post("/_proxy/replay/reset", replay_reset)
    if settings.replays and settings.stored_completions == "local":
        add_stored_routes(app, app[REPLAY_INDEX], settings.cassettes, store_all=settings.store_all)
    app.router.add_routes(extra_routes)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


__all__ = ["Interaction", "create_app"]
