"""Where the recording pipeline runs: one interface, two places.

`InProcessRunner` runs it on one thread of this process: nothing to start, for embedding (the pytest plugin)
and small use. `WorkerRunner` (worker_runner.py) runs it in the recording worker process, the default of
`proxy record`: building a cassette is milliseconds of Python for a long stream, and on a thread it holds the
GIL that the event loop needs for the next streamed chunk (measured: +3-5 ms time to first chunk). The
pipeline and its sinks are the same in both; only where they run differs.

Both are driven from the event loop: `submit` returns at once, `on_written` is called on the loop with what
came of each recording, and `on_lost` with recordings the runner itself lost (counted as errors).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from proxy.pipeline import Pipeline, PipelineConfig, SinkStats, Written
from proxy.recording import Recording

OnWritten = Callable[[Written], None]
OnLost = Callable[[int, str], None]  # how many recordings, and why


def _ignore_written(written: Written) -> None:
    pass


def _ignore_lost(count: int, reason: str) -> None:
    pass


class Runner(ABC):
    def __init__(self) -> None:
        self.on_written: OnWritten = _ignore_written
        self.on_lost: OnLost = _ignore_lost
        self.sink_stats: tuple[SinkStats, ...] = ()

    @abstractmethod
    async def start(self) -> None:
        """Be ready for the first recording (start the worker, build the sinks)."""

    @abstractmethod
    def submit(self, recording: Recording) -> None:
        """Hand a finished exchange over; never blocks."""

    @property
    @abstractmethod
    def pending(self) -> int:
        """Recordings handed over and not yet written."""

    @property
    def stalled_for(self) -> float:
        """Seconds the runner has held work without finishing any, once that counts as a stall; else 0."""
        return 0.0

    @property
    def worker_pid(self) -> int | None:
        return None

    async def refresh_sink_stats(self, timeout: float) -> tuple[SinkStats, ...]:
        return self.sink_stats

    @abstractmethod
    async def settle(self) -> None:
        """Return once every recording handed over so far is written (and reported)."""

    @abstractmethod
    async def close(self) -> None:
        """Write every recording handed over, close the sinks (their last flush), stop."""


class InProcessRunner(Runner):
    """The pipeline on one thread of this process, in submission order."""

    def __init__(self, config: PipelineConfig) -> None:
        super().__init__()
        self.pipeline = Pipeline(config)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recording")
        self._inflight: set[asyncio.Future[Written]] = set()

    async def start(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self.pipeline.open)

    def submit(self, recording: Recording) -> None:
        future = asyncio.get_running_loop().run_in_executor(self._thread, self.pipeline.run, recording)
        self._inflight.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: asyncio.Future[Written]) -> None:
        self._inflight.discard(future)
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:  # Pipeline.run never raises; a broken executor still must not lose count
            self.on_lost(1, f"recording failed: {exc!r}")
            return
        self.on_written(future.result())

    @property
    def pending(self) -> int:
        return len(self._inflight)

    async def refresh_sink_stats(self, timeout: float) -> tuple[SinkStats, ...]:
        self.sink_stats = self.pipeline.stats()  # counters read across threads: a snapshot is enough
        return self.sink_stats

    async def settle(self) -> None:
        while self._inflight:
            await asyncio.gather(*list(self._inflight), return_exceptions=True)

    async def close(self) -> None:
        await self.settle()
        loop = asyncio.get_running_loop()
        self.sink_stats = await loop.run_in_executor(self._thread, self.pipeline.close)
        self._thread.shutdown(wait=True)
