"""The recording side of the proxy, on the event loop: hands each finished exchange to the runner and keeps
count of what came of it.

`submit` returns at once and never raises into the request that produced the recording. What the runner
reports back is counted (recorded, write errors, upstream failures), logged as the request's traffic line,
and passed to listeners (the replay index learns new recordings in auto mode). A failure to write is logged
once per distinct reason, counted, and reported by the health endpoint; it never reaches the client.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from proxy.pipeline import SinkStats, Written
from proxy.recording import Recording
from proxy.runners import Runner
from proxy.trafficlog import FORWARDED, RECORDED, Exchange, Traffic

log = logging.getLogger("proxy.record")

# A backlog this long is worth a warning and a "degraded" health status: the runner is not keeping up.
BACKLOG_WARNING = 5_000

Listener = Callable[[Written], None]


def relative_to(path: Path | None, root: Path) -> str | None:
    if path is None:
        return None
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


class Recorder:
    def __init__(self, runner: Runner, traffic: Traffic | None = None) -> None:
        self.runner = runner
        self.traffic = traffic if traffic is not None else Traffic()
        runner.on_written = self._written
        runner.on_lost = self._lost
        self.listeners: list[Listener] = []
        self.recorded = 0
        self.write_errors = 0
        self.upstream_errors = 0  # exchanges the upstream failed (unreachable, timed out, reset)
        self.last_error: str | None = None
        self._reasons_logged: set[str] = set()

    async def start(self) -> None:
        await self.runner.start()

    @property
    def pending(self) -> int:
        return self.runner.pending

    @property
    def stalled_for(self) -> float:
        return self.runner.stalled_for

    @property
    def worker_pid(self) -> int | None:
        return self.runner.worker_pid

    def submit(self, recording: Recording) -> None:
        """Hand a finished exchange over; never raises into the request that produced it."""
        try:
            self.runner.submit(recording)
        except Exception as exc:
            self._count_error(f"recording failed: {exc!r}")
            return
        if self.runner.pending == BACKLOG_WARNING:
            log.warning(
                "recording is %d interactions behind the traffic: they wait until it catches up "
                "(nothing is dropped; /_proxy/health shows recording_pending)",
                BACKLOG_WARNING,
            )

    def _written(self, written: Written) -> None:
        if written.error is None and written.cassette is not None:
            self.recorded += 1
            if self.last_error is not None:
                log.warning("cassette writing resumed")
                self.last_error = None
                self._reasons_logged.clear()
        else:
            self._count_error(written.error or "recording failed")
        if written.summary is not None:
            method, path, model, status, total_ms, failed = written.summary
            self.upstream_errors += failed
            if self.traffic.wanted():
                outcome = RECORDED if written.cassette is not None else FORWARDED
                cassette = written.directory / written.cassette if written.cassette is not None else None
                exchange = Exchange(outcome, method, path, model, status, total_ms, cassette)
                self.traffic.report(exchange, written.cassette)
        for listener in self.listeners:
            try:
                listener(written)
            except Exception:
                log.exception("a recording listener failed")

    def _lost(self, count: int, reason: str) -> None:
        for _ in range(max(count, 1)):
            self._count_error(reason)

    def _count_error(self, reason: str) -> None:
        self.write_errors += 1
        self.last_error = reason
        if reason not in self._reasons_logged:
            self._reasons_logged.add(reason)
            log.error("%s (traffic continues; further identical errors are counted, not logged)", reason)

    async def refresh_sink_stats(self, timeout: float) -> tuple[SinkStats, ...]:
        return await self.runner.refresh_sink_stats(timeout)

    async def close(self) -> None:
        """Wait for every submitted recording, flush the sinks, then stop the runner."""
        await self.runner.close()
