"""The pipeline in the recording worker process: batching, revival after a death, and stall reports.

Recordings finished in one event-loop iteration leave as one frame at its end. A worker that dies (killed,
out of memory) is replaced, and the batches it held are sent again, one recording at a time; a recording that
kills a second worker is given up on, alone, and counted. A worker that finishes nothing for `stall_warning`
seconds while it holds work is reported once per stall (an idle-priority worker on a machine kept busy).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
from collections.abc import Callable
from typing import Any

from proxy.pipeline import PipelineConfig, SinkStats
from proxy.recording import Recording
from proxy.runners import Runner
from proxy.worker import Batch, Message, Priority, WorkerChannel, WorkerConfig, frame

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


class WorkerRunner(Runner):
    def __init__(self, config: PipelineConfig, priority: Priority = "idle") -> None:
        super().__init__()
        self.config = WorkerConfig(config, priority)
        self._channel: WorkerChannel | None = None
        self._reviving: asyncio.Task[None] | None = None
        self._batches: dict[int, Batch] = {}  # sent and not answered for, by number
        self._collecting: list[Recording] = []  # this loop iteration's batch
        self._queued = 0  # recordings in _collecting and _batches
        self._seq = 0
        self._drained = asyncio.Event()
        self._drained.set()
        self.stall = StallWatch(priority, lambda: bool(self._batches), lambda: self._queued)

    async def start(self) -> None:
        """Start the worker in the background: the proxy listens at once (the worker's imports and the sinks'
        start take a few hundred ms), and recordings made meanwhile wait in their frames until it is ready."""
        self._reviving = asyncio.get_running_loop().create_task(self._revive())

    @property
    def stalled_for(self) -> float:
        return self.stall.stalled_for

    async def _open_channel(self) -> WorkerChannel:
        channel = WorkerChannel(self.config, self._on_message, self._on_exit)
        await channel.start()
        return channel

    @property
    def pending(self) -> int:
        return self._queued

    @property
    def worker_pid(self) -> int | None:
        return self._channel.pid if self._channel is not None else None

    def submit(self, recording: Recording) -> None:
        self._collecting.append(recording)
        self._queued += 1
        self._drained.clear()
        if len(self._collecting) == 1:
            asyncio.get_running_loop().call_soon(self._seal)

    def _seal(self) -> None:
        recordings, self._collecting = self._collecting, []
        if recordings:
            self._send_batch(recordings, attempt=1)

    def _send_batch(self, recordings: list[Recording], attempt: int) -> None:
        self._seq += 1
        try:
            data = frame(("batch", self._seq, recordings))
        except Exception as exc:  # an unpicklable recording is a bug of ours: count it, keep the traffic
            self._forget(len(recordings), f"could not hand recordings to the worker: {exc!r}")
            return
        if not self._batches:
            self.stall.progressed()
        self._batches[self._seq] = Batch(data, len(recordings), attempt)
        if self._channel is not None:
            self._channel.send(data)
        elif self._reviving is None:
            self._reviving = asyncio.get_running_loop().create_task(self._revive())

    def _on_message(self, message: Message) -> None:
        kind, seq, body = message
        if kind == "done":
            batch = self._batches.pop(seq, None)
            results, self.sink_stats = body
            for written in results:
                self.on_written(written)
            if batch is not None:
                self._settled(batch.size)
            self.stall.progressed()

    # --- deaths ---

    def _settled(self, count: int) -> None:
        self._queued -= count
        if self._queued == 0:
            self._drained.set()

    def _forget(self, count: int, reason: str) -> None:
        self.on_lost(count, reason)
        self._settled(count)

    def _on_exit(self, asked: bool) -> None:
        self._channel = None
        if not asked:
            # The worker died (killed, out of memory). Start a new one and hand it what the old one held.
            self.on_lost(0, "recording worker died; started a new one")
            self._reviving = asyncio.get_running_loop().create_task(self._revive())

    async def _revive(self) -> None:
        """A new worker for the batches still unanswered. Each recording the dead worker may have held goes
        again on its own, once: a recording that kills the worker a second time is given up on, alone."""
        orphans, self._batches = self._batches, {}
        try:
            self._channel = await self._open_channel()
        except Exception as exc:
            self._reviving = None
            waiting, self._batches = self._batches, {}  # made while it was starting: nobody to send them to
            lost = sum(b.size for b in orphans.values()) + sum(b.size for b in waiting.values())
            self._forget(lost, f"recording worker could not start: {exc!r}")
            return
        self._reviving = None
        for batch in self._batches.values():  # made while the new worker was starting
            self._channel.send(batch.frame)
        for batch in orphans.values():
            if batch.attempt > 1:
                self._forget(batch.size, "recording worker died twice on the same recording")
                continue
            recordings: list[Recording] = pickle.loads(batch.frame[4:])[2]
            for recording in recordings:
                self._send_batch([recording], attempt=batch.attempt + 1)

    # --- questions and the end ---

    async def _ask(self, kind: str, timeout: float) -> Any:
        return None if self._channel is None else await self._channel.ask(kind, timeout)

    async def refresh_sink_stats(self, timeout: float) -> tuple[SinkStats, ...]:
        """The sinks' counters; if the worker is busy with a backlog, the last ones known do."""
        if self.config.pipeline.sinks:
            with contextlib.suppress(TimeoutError):
                stats = await self._ask("stats", timeout)
                if stats is not None:
                    self.sink_stats = stats
        return self.sink_stats

    async def settle(self) -> None:
        self._seal()
        while self._queued:
            await self._drained.wait()

    async def close(self) -> None:
        if self._reviving is not None:  # still starting: let it, so what waits for it is written
            await asyncio.gather(self._reviving, return_exceptions=True)
        await self.settle()
        self.stall.stop()
        channel = self._channel
        if channel is None:
            return
        channel.closing = True
        try:
            # the sinks' last flush happens here; a stuck worker is not waited for forever
            stats = await self._ask("close", timeout=120)
            if stats is not None:
                self.sink_stats = stats
        except Exception as exc:
            log.error("could not close the recording sinks in the worker: %r", exc)
            if channel.process is not None and channel.process.is_alive():
                channel.process.kill()
        await channel.wait_closed()
