"""The pipeline in the recording worker process: batching, revival after a death, and stall reports.

Recordings finished in one event-loop iteration leave as one frame at its end. A worker that dies (killed,
out of memory) is replaced, and the batches it held are sent again, one recording at a time; a recording that
kills a second worker is given up on, alone, and counted. A worker that finishes nothing for `stall_warning`
seconds while it holds work is reported once per stall (an idle-priority worker on a machine kept busy).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import pickle
from abc import abstractmethod
from typing import Any

from proxy.free_memory import BACKLOG_WORTH_TRIMMING, release_free_memory
from proxy.pipeline import PipelineConfig, SinkStats
from proxy.recording import Recording
from proxy.runners import Runner
from proxy.spool import FrameSpool, frame_bytes
from proxy.worker import Batch, WorkerChannel
from proxy.worker_watch import SinkTotals, StallWatch
from proxy.worker_wire import Message, Priority, WorkerConfig, batch_payload, frame, recordings_of

log = logging.getLogger("proxy.record")


class WorkerLife(Runner):
    """Which worker process recordings go to: started in the background, replaced when it dies, let go when
    idle. `idle_exit`: after that many seconds with nothing to do, the worker flushes its sinks and exits, so its
    memory (DuckDB's, about 60 MB) goes back to the system; the next recording starts a new one in
    the background, as at startup. 0 keeps it for the proxy's whole life."""

    def __init__(self, config: PipelineConfig, priority: Priority = "idle", idle_exit: float = 0.0) -> None:
        super().__init__()
        self.config = WorkerConfig(config, priority)
        self.idle_exit = idle_exit
        self._idle_timer: asyncio.TimerHandle | None = None
        self._retiring: asyncio.Task[None] | None = None
        self._totals = SinkTotals()
        self._channel: WorkerChannel | None = None
        self._reviving: asyncio.Task[None] | None = None
        self._batches: dict[int, Batch] = {}  # sent and not answered for, by number
        self.spool = FrameSpool()  # where their frames wait: in memory up to a budget, then in a file
        self._sent_since_drained = 0  # bytes of frames sent since nothing was last waiting
        self._collecting: list[Recording] = []  # this loop iteration's batch
        self._queued = 0  # recordings in _collecting and _batches
        self._seq = 0
        self._drained = asyncio.Event()
        self._drained.set()
        self.stall = StallWatch(priority, lambda: bool(self._batches), lambda: self._queued)

    @abstractmethod
    def _on_message(self, message: Message) -> None: ...

    @abstractmethod
    def _send_batch(self, recordings: list[Recording], attempt: int) -> None: ...

    @abstractmethod
    def _forget(self, count: int, reason: str) -> None: ...

    async def start(self) -> None:
        """Start the worker in the background: the proxy listens at once (the worker's imports and the sinks'
        start take a few hundred ms), and recordings made meanwhile wait in their frames until it is ready."""
        self._reviving = asyncio.get_running_loop().create_task(self._revive())

    async def _open_channel(self) -> WorkerChannel:
        channel = WorkerChannel(self.config, self._on_message, lambda asked: None)
        channel.on_exit = functools.partial(self._on_exit, channel)
        await channel.start()
        return channel

    @property
    def worker_pid(self) -> int | None:
        return self._channel.pid if self._channel is not None else None

    def _retire_soon(self) -> None:
        self._idle_timer = None
        if self._queued == 0 and self._channel is not None and self._reviving is None:
            self._retiring = asyncio.get_running_loop().create_task(self._retire(self._channel))

    async def _retire(self, channel: WorkerChannel) -> None:
        """Let an idle worker go: it is no longer the one recordings go to (a recording arriving now starts a
        new one), then it flushes its sinks and exits; its counters are kept."""
        self._channel = None
        channel.closing = True
        stats = await channel.ask("close", timeout=120)
        if stats:
            self.sink_stats = self._totals.retire(stats)
        await channel.wait_closed()

    def _on_exit(self, channel: WorkerChannel, asked: bool) -> None:
        if channel is not self._channel:
            return  # a worker retired when idle: it was let go on purpose
        self._channel = None
        if not asked:
            # The worker died (killed, out of memory). Start a new one and hand it what the old one held.
            self.on_lost(0, "recording worker died; started a new one")
            self._reviving = asyncio.get_running_loop().create_task(self._revive(after_death=True))

    async def _revive(self, after_death: bool = False) -> None:
        """A worker for the batches waiting: at startup, after an idle exit, or after a death. After a death,
        each recording the dead worker may have held goes again on its own, once: a recording that kills the
        worker a second time is given up on, alone."""
        orphans: dict[int, Batch] = {}
        if after_death:
            orphans, self._batches = self._batches, {}
        try:
            self._channel = await self._open_channel()
        except Exception as exc:
            self._reviving = None
            waiting, self._batches = self._batches, {}  # made while it was starting: nobody to send them to
            for batch in (*orphans.values(), *waiting.values()):
                self.spool.let_go(batch.frame)
            lost = sum(b.size for b in orphans.values()) + sum(b.size for b in waiting.values())
            self._forget(lost, f"recording worker could not start: {exc!r}")
            return
        self._reviving = None
        for batch in self._batches.values():  # made while the worker was starting
            self._channel.send(batch.frame)
        for batch in orphans.values():
            self.spool.let_go(batch.frame)
            if batch.attempt > 1:
                self._forget(batch.size, "recording worker died twice on the same recording")
                continue
            recordings = recordings_of(pickle.loads(frame_bytes(batch.frame)[4:])[2])
            for recording in recordings:
                self._send_batch([recording], attempt=batch.attempt + 1)

    # --- questions and the end ---


class WorkerRunner(WorkerLife):
    """The pipeline in the worker: recordings batched per event-loop iteration, answers handed on, the end."""

    @property
    def stalled_for(self) -> float:
        return self.stall.stalled_for

    @property
    def pending(self) -> int:
        return self._queued

    def submit(self, recording: Recording) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
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
            data = frame(("batch", self._seq, batch_payload(recordings)))
        except Exception as exc:  # an unpicklable recording is a bug of ours: count it, keep the traffic
            self._forget(len(recordings), f"could not hand recordings to the worker: {exc!r}")
            return
        if not self._batches:
            self.stall.progressed()
        kept = self.spool.keep(data)
        self._batches[self._seq] = Batch(kept, len(recordings), attempt)
        self._sent_since_drained += len(data)
        if self._channel is not None:
            self._channel.send(kept)
        elif self._reviving is None:
            self._reviving = asyncio.get_running_loop().create_task(self._revive())

    def _on_message(self, message: Message) -> None:
        kind, seq, body = message
        if kind == "done":
            batch = self._batches.pop(seq, None)
            if batch is not None:
                self.spool.let_go(batch.frame)
            results, stats = body
            if stats is not None:  # the last of the answers sent together (worker_process.Answers)
                self.sink_stats = self._totals.of(stats)
            for written in results:
                self.on_written(written)
            if batch is not None:
                self._settled(batch.size)
            self.stall.progressed()
            if self._queued == 0 and self.idle_exit and self._idle_timer is None:
                self._idle_timer = asyncio.get_running_loop().call_later(self.idle_exit, self._retire_soon)

    # --- deaths ---

    def _settled(self, count: int) -> None:
        self._queued -= count
        if self._queued == 0:
            self._drained.set()
            self.spool.empty()
            if self._sent_since_drained >= BACKLOG_WORTH_TRIMMING:
                # the frames of a burst are freed now, but the allocator would keep their memory (free_memory.py)
                asyncio.get_running_loop().run_in_executor(None, release_free_memory)
            self._sent_since_drained = 0

    def _forget(self, count: int, reason: str) -> None:
        self.on_lost(count, reason)
        self._settled(count)

    async def _ask(self, kind: str, timeout: float) -> Any:
        return None if self._channel is None else await self._channel.ask(kind, timeout)

    async def refresh_sink_stats(self, timeout: float) -> tuple[SinkStats, ...]:
        """The sinks' counters; if the worker is busy with a backlog, the last ones known do."""
        if self.config.pipeline.sinks:
            with contextlib.suppress(TimeoutError):
                stats = await self._ask("stats", timeout)
                if stats is not None:
                    self.sink_stats = self._totals.of(stats)
        return self.sink_stats

    async def settle(self) -> None:
        self._seal()
        while self._queued:
            await self._drained.wait()

    async def close(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        if self._reviving is not None:  # still starting: let it, so what waits for it is written
            await asyncio.gather(self._reviving, return_exceptions=True)
        if self._retiring is not None:  # an idle worker still flushing its sinks: its last rows must land
            await asyncio.gather(self._retiring, return_exceptions=True)
        await self.settle()
        self.stall.stop()
        self.spool.close()
        channel = self._channel
        if channel is None:
            return
        channel.closing = True
        try:
            # the sinks' last flush happens here; a stuck worker is not waited for forever
            stats = await self._ask("close", timeout=120)
            if stats is not None:
                self.sink_stats = self._totals.of(stats)
        except Exception as exc:
            log.error("could not close the recording sinks in the worker: %r", exc)
            channel.kill()
        await channel.wait_closed()
