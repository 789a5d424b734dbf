"""What the proxy keeps watch of about its recording workers: a worker that stalls, and the sinks' counters
across the workers that come and go (a worker exits when idle, or dies, and its counters must not vanish)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from proxy.pipeline import SinkStats
from proxy.worker_wire import Priority

log = logging.getLogger("proxy.record")

# Seconds the worker may go without finishing a batch it holds before it counts as stalled.
STALL_WARNING = 30.0


class StallWatch:
    """Tells when the worker holds work and finishes none for `warning` seconds: warns once per stall, and
    says how long it has lasted (`/_proxy/health` shows it)."""

    def __init__(self, priority: Priority, holding: Callable[[], bool], waiting: Callable[[], int]) -> None:
        self.warning = STALL_WARNING
        self.priority = priority
        self._holding = holding
        self._waiting = waiting
        self._since = 0.0  # loop time the worker last finished a batch, or got one while holding nothing
        self._timer: asyncio.TimerHandle | None = None
        self._warned = False

    def progressed(self) -> None:
        """The worker finished a batch, or was handed one while holding nothing: its clock starts again."""
        loop = asyncio.get_running_loop()
        if self._warned:
            log.info("the recording worker is making progress again (%d recordings pending)", self._waiting())
            self._warned = False
        self._since = loop.time()
        if self._timer is None:
            self._timer = loop.call_later(self.warning, self._check)

    def _check(self) -> None:
        """Warn once per stall; the next `progressed` arms the timer again."""
        self._timer = None
        if not self._holding() or self._warned:
            return
        loop = asyncio.get_running_loop()
        waited = loop.time() - self._since
        if waited < self.warning:  # it finished something since the timer was armed
            self._timer = loop.call_later(self.warning - waited, self._check)
            return
        self._warned = True
        advice = (
            'it runs at record_worker_priority = "idle" and other work keeps the CPU busy; "low" keeps pace'
            if self.priority == "idle"
            else "it may be starved of CPU or stuck"
        )
        log.warning(
            "the recording worker has finished nothing for %.0f s while %d recordings wait: %s "
            "(nothing is dropped; /_proxy/health says degraded until it catches up)",
            waited,
            self._waiting(),
            advice,
        )

    @property
    def stalled_for(self) -> float:
        if not self._holding():
            return 0.0
        waited = asyncio.get_running_loop().time() - self._since
        return waited if waited >= self.warning else 0.0

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class SinkTotals:
    """Sink counters across workers: those of the workers that exited when idle, plus the current one's."""

    def __init__(self) -> None:
        self._retired: dict[str, SinkStats] = {}

    def of(self, current: tuple[SinkStats, ...]) -> tuple[SinkStats, ...]:
        summed = []
        for stats in current:
            old = self._retired.get(stats.name)
            if old is not None:
                stats = SinkStats(
                    stats.name,
                    old.rows_written + stats.rows_written,
                    old.write_errors + stats.write_errors,
                    stats.last_error,
                    old.rows_dropped + stats.rows_dropped,
                )
            summed.append(stats)
        return tuple(summed)

    def retire(self, last: tuple[SinkStats, ...]) -> tuple[SinkStats, ...]:
        """A worker's final counters, kept; returns the totals."""
        self._retired = {stats.name: stats for stats in self.of(last)}
        return tuple(self._retired.values())
