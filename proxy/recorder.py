"""The recording sink: turns finished Recordings into cassette files, off the event loop.

`submit` returns at once; the work is tracked, so a clean stop (`close`) waits for every recording that
was handed over. A failure to write is logged once per distinct reason, counted, and reported by the health
endpoint; it never reaches the client.

Where the work runs is a decision about the GIL. Building a cassette is milliseconds of Python for a long
stream (SSE decoding, JSON, reassembly, serialising); in a thread it holds the GIL the event loop needs, and
the next stream's first chunk waits behind it (measured: +3-5 ms time to first chunk). So `proxy record`
uses one worker *process* (`workers="process"`), which also lets recording run on the other core. The
process hands back the interaction without its stream events (they are in the cassette file), so little
crosses back. Threads (`workers="thread"`) remain for embedding and for fast in-process tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from proxy.cassettes import write_cassette
from proxy.interaction import Interaction
from proxy.recording import Recording, Redaction, build_interaction

log = logging.getLogger("proxy.record")

# A backlog this long is worth a warning and a "degraded" health status: the worker is not keeping up.
BACKLOG_WARNING = 5_000

# Listeners get the interaction (None when `needs_interaction` is off and a worker process made it), its
# cassette path (None if it could not be written) and what `derive` made of it in the worker (or None).
OnRecorded = Callable[[Interaction | None, Path | None, Any], None]
# Runs in the worker after the cassette is written: (interaction, path relative to the cassette dir) -> value.
# Module-level functions only: it crosses to the worker process by reference.
Derive = Callable[[Interaction, str | None], Any]


@dataclass(slots=True)
class _Result:
    interaction: Interaction | None
    path: Path | None
    error: str | None
    derived: Any = None
    sink_stats: Any = None


@dataclass(frozen=True)
class WorkerSink:
    """A consumer of derived values that lives in the worker process (the DuckDB writer): module-level
    functions, so they cross to the worker by reference. `start` runs once when the worker boots, `submit`
    takes each derived value and returns the sink's counters, `stats` and `close` return them too."""

    start: Callable[[], None]
    submit: Callable[[Any], Any]
    stats: Callable[[], Any]
    close: Callable[[], Any]


def relative_to(path: Path | None, root: Path) -> str | None:
    if path is None:
        return None
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _worker_init(start_sink: Callable[[], None] | None = None) -> None:
    """In the worker: Ctrl-C reaches the whole process group, but only the parent decides when to stop (it
    drains the queue of recordings first). If the parent dies without a word (kill -9), the worker leaves too,
    instead of lingering as an orphan holding the parent's terminal and pipes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # When both must share a core, the traffic goes first: recording can wait, a streamed chunk should not.
    os.nice(10)
    parent = os.getppid()

    def watch_parent() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(0)

    threading.Thread(target=watch_parent, name="parent-watch", daemon=True).start()
    if start_sink is not None:
        start_sink()


def build_and_write(
    recording: Recording,
    directory: Path,
    redaction: Redaction,
    send_back: Literal["full", "light", "none"],
    derive: Derive | None = None,
    sink_submit: Callable[[Any], Any] | None = None,
) -> _Result:
    """Build the Interaction and write its cassette. Runs in a worker thread or process."""
    try:
        interaction = build_interaction(recording, redaction)
    except Exception as exc:  # a bug in our own code must not lose the traffic's flow
        log.exception("could not build a recording of %s %s", recording.method, recording.path)
        return _Result(None, None, f"build failed: {exc!r}")
    try:
        path: Path | None = write_cassette(directory, interaction)
        error = None
    except OSError as exc:
        path, error = None, f"cannot write cassette in {directory}: {exc.strerror or exc}"
    derived = None
    if derive is not None:
        try:
            derived = derive(interaction, relative_to(path, directory))
        except Exception:
            log.exception("could not derive rows from interaction %s", interaction.id)
    sink_stats = None
    if sink_submit is not None and derived is not None:
        sink_stats, derived = sink_submit(derived), None
    if send_back == "none":
        # Nobody in the proxy needs the interaction itself (only its rows): nothing to pickle back.
        return _Result(None, path, error, derived, sink_stats)
    if send_back == "light" and path is not None and interaction.response.events is not None:
        # Listeners (rows, replay index) need no events; the file has them. Keeps the trip back small.
        interaction.response.events = []
    return _Result(interaction, path, error, derived, sink_stats)


class Recorder:
    def __init__(
        self,
        directory: Path,
        redaction: Redaction,
        workers: Literal["thread", "process"] = "thread",
        derive: Derive | None = None,
        sink: WorkerSink | None = None,
    ) -> None:
        self.directory = directory
        self.derive = derive
        self.sink = sink if workers == "process" else None
        self.sink_stats: Any = None
        self.redaction = redaction
        self.listeners: list[OnRecorded] = []
        self.recorded = 0
        self.write_errors = 0
        self.last_error: str | None = None
        self._reasons_logged: set[str] = set()
        self._in_process = workers == "process"
        # Whether a listener needs the Interaction itself (the replay index in auto mode), not just its rows.
        self.needs_interaction = True
        self._executor = self._new_executor()
        # every recording handed over and not yet finished, with its attempt number
        self._inflight: dict[asyncio.Future[_Result], tuple[Recording, int]] = {}

    def _new_executor(self) -> Executor:
        if self._in_process:
            return ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),  # never fork a process with a running loop
                initializer=_worker_init,
                initargs=(self.sink.start if self.sink else None,),
            )
        return ThreadPoolExecutor(max_workers=2, thread_name_prefix="cassette-writer")

    async def start(self) -> None:
        """Start the worker now, so the first recording doesn't wait for a process to boot."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, int)

    @property
    def pending(self) -> int:
        return len(self._inflight)

    def submit(self, recording: Recording, attempt: int = 1) -> None:
        """Hand a finished exchange over; never raises into the request that produced it."""
        try:
            self._submit(recording, attempt)
        except BrokenProcessPool:
            # The worker died (killed, out of memory). Start a new one and hand this recording to it.
            self._count_error("recording worker died; started a new one")
            self._executor.shutdown(wait=False)
            self._executor = self._new_executor()
            try:
                self._submit(recording, attempt)
            except Exception as exc:
                self._count_error(f"recording worker failed: {exc!r}")
        except Exception as exc:
            self._count_error(f"recording worker failed: {exc!r}")

    def _submit(self, recording: Recording, attempt: int) -> None:
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(
            self._executor,
            build_and_write,
            recording,
            self.directory,
            self.redaction,
            ("light" if self.needs_interaction else "none") if self._in_process else "full",
            self.derive,
            self.sink.submit if self.sink else None,
        )
        self._inflight[future] = (recording, attempt)
        if len(self._inflight) == BACKLOG_WARNING:
            log.warning(
                "recording is %d interactions behind the traffic: memory grows until it catches up "
                "(nothing is dropped; /_proxy/health shows recording_pending)",
                BACKLOG_WARNING,
            )
        future.add_done_callback(self._done)

    def _done(self, future: asyncio.Future[_Result]) -> None:
        recording, attempt = self._inflight.pop(future)
        if future.cancelled():
            return
        try:
            result = future.result()
        except BrokenProcessPool:
            if attempt == 1:  # the worker died with this recording queued: give it one more go, in a new one
                self.submit(recording, attempt + 1)
                return
            result = _Result(None, None, "recording worker died twice on the same recording")
        except Exception as exc:  # count, never raise
            result = _Result(None, None, f"recording worker failed: {exc!r}")
        if result.sink_stats is not None:
            self.sink_stats = result.sink_stats
        if result.error is None:
            self.recorded += 1
            if self.last_error is not None:
                log.warning("cassette writing resumed")
                self.last_error = None
                self._reasons_logged.clear()
        else:
            self._count_error(result.error)
        if result.interaction is not None or result.derived is not None:
            for listener in self.listeners:
                try:
                    listener(result.interaction, result.path, result.derived)
                except Exception:
                    log.exception("a recording listener failed")

    def _count_error(self, reason: str) -> None:
        self.write_errors += 1
        self.last_error = reason
        if reason not in self._reasons_logged:
            self._reasons_logged.add(reason)
            log.error("%s (traffic continues; further identical errors are counted, not logged)", reason)

    async def refresh_sink_stats(self, timeout: float) -> Any:
        """Ask the worker for the sink's counters; if it is busy with a backlog, the last ones known do."""
        if self.sink is not None:
            loop = asyncio.get_running_loop()
            with contextlib.suppress(Exception):  # a timeout or a dead worker: keep the last known counters
                self.sink_stats = await asyncio.wait_for(loop.run_in_executor(self._executor, self.sink.stats), timeout)
        return self.sink_stats

    async def close(self) -> None:
        """Wait for every submitted recording, flush the sink, then stop the workers."""
        while self._inflight:
            await asyncio.gather(*list(self._inflight), return_exceptions=True)
        if self.sink is not None:
            loop = asyncio.get_running_loop()
            try:
                self.sink_stats = await loop.run_in_executor(self._executor, self.sink.close)
            except Exception as exc:
                log.error("could not flush the database writer in the recording worker: %r", exc)
        self._executor.shutdown(wait=True)
