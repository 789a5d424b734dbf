"""The recording sink: turns finished Recordings into cassette files, off the event loop.

`submit` returns at once; the work is tracked, so a clean stop (`close`) waits for every recording that
was handed over. A failure to write is logged once per distinct reason, counted, and reported by the health
endpoint; it never reaches the client.

Where the work runs is a decision about the GIL. Building a cassette is milliseconds of Python for a long
stream (SSE decoding, JSON, reassembly, serialising); in a thread it holds the GIL the event loop needs, and
the next stream's first chunk waits behind it (measured: +3-5 ms time to first chunk). So `proxy record`
uses one worker *process* (`workers="process"`, see worker.py), which also lets recording run on the other
core; recordings go to it in batches, one per event-loop iteration. The process hands back the interaction
without its stream events (they are in the cassette file), or nothing but the outcome when no listener needs
the interaction. Threads (`workers="thread"`) remain for embedding and for fast in-process tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from proxy import trafficlog
from proxy.cassettes import write_cassette
from proxy.interaction import Interaction
from proxy.recording import Recording, Redaction, build_interaction
from proxy.worker import Batch, Message, Priority, WorkerChannel, WorkerConfig, WorkerSink, frame

log = logging.getLogger("proxy.record")

# A backlog this long is worth a warning and a "degraded" health status: the worker is not keeping up.
BACKLOG_WARNING = 5_000
# Seconds the worker may go without finishing a batch it holds before it counts as stalled (logged once per
# stall, and `/_proxy/health` says degraded): an idle-priority worker on a machine kept busy by other work.
STALL_WARNING = 30.0

# Listeners get the interaction (None when `needs_interaction` is off and a worker process made it), its
# cassette path (None if it could not be written) and what `derive` made of it in the worker (or None).
OnRecorded = Callable[[Interaction | None, Path | None, Any], None]
# Runs in the worker after the cassette is written: (interaction, path relative to the cassette dir) -> value.
# Module-level functions only: it crosses to the worker process by reference.
Derive = Callable[[Interaction, str | None], Any]

__all__ = ["BACKLOG_WARNING", "Recorder", "WorkerSink", "build_and_write"]


# What the traffic log line of a recorded exchange needs: method, path, requested model, status, total ms, and
# whether the upstream failed. Small, so it crosses back from the worker cheaply.
Summary = tuple[str, str, str | None, int, float | None, bool]


@dataclass(slots=True)
class _Result:
    interaction: Interaction | None
    path: Path | None
    error: str | None
    derived: Any = None
    sink_stats: Any = None
    summary: Summary | None = None


def summary_of(interaction: Interaction) -> Summary:
    request = interaction.request
    return (
        request.method,
        request.path,
        interaction.requested_model,
        interaction.response.status,
        interaction.timings.total_ms,
        interaction.outcome.error is not None,
    )


def relative_to(path: Path | None, root: Path) -> str | None:
    if path is None:
        return None
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


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
    summary = summary_of(interaction)
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
        return _Result(None, path, error, derived, sink_stats, summary)
    if send_back == "light" and path is not None and interaction.response.events is not None:
        # Listeners (rows, replay index) need no events; the file has them. Keeps the trip back small.
        interaction.response.events = []
    return _Result(interaction, path, error, derived, sink_stats, summary)


class Recorder:
    def __init__(
        self,
        directory: Path,
        redaction: Redaction,
        workers: Literal["thread", "process"] = "thread",
        derive: Derive | None = None,
        sink: WorkerSink | None = None,
        priority: Priority = "idle",
    ) -> None:
        self.directory = directory
        self.priority = priority
        self.derive = derive
        self.sink = sink if workers == "process" else None
        self.sink_stats: Any = None
        self.redaction = redaction
        self.listeners: list[OnRecorded] = []
        self.recorded = 0
        self.write_errors = 0
        self.upstream_errors = 0  # exchanges the upstream failed (unreachable, timed out, reset)
        self.last_error: str | None = None
        self._reasons_logged: set[str] = set()
        self._in_process = workers == "process"
        # Whether a listener needs the Interaction itself (the replay index in auto mode), not just its rows.
        self.needs_interaction = True
        # thread mode: every recording handed over and not yet finished
        self._threads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="cassette-writer")
        self._inflight: set[asyncio.Future[_Result]] = set()
        # process mode: the worker, the batches it has not answered for (by number), and this iteration's batch
        self._channel: WorkerChannel | None = None
        self._reviving: asyncio.Task[None] | None = None
        self._batches: dict[int, Batch] = {}
        self._collecting: list[Recording] = []
        self._queued = 0  # recordings in _collecting and _batches
        self._seq = 0
        self._replies: dict[int, asyncio.Future[Any]] = {}  # answers to "stats" and "close"
        self._drained = asyncio.Event()
        self._drained.set()
        self.stall_warning = STALL_WARNING
        self._waiting_since = 0.0  # loop time the worker last finished a batch, or got one with nothing pending
        self._stall_timer: asyncio.TimerHandle | None = None
        self._stall_warned = False

    async def start(self) -> None:
        """Start the worker process now, so the first recording doesn't wait for it to boot."""
        if self._in_process:
            self._channel = await self._open_channel()

    async def _open_channel(self) -> WorkerChannel:
        config = WorkerConfig(
            self.directory,
            self.redaction,
            "light" if self.needs_interaction else "none",
            self.derive,
            self.sink,
            self.priority,
        )
        channel = WorkerChannel(config, self._on_message, self._on_exit)
        await channel.start()
        return channel

    @property
    def pending(self) -> int:
        return len(self._inflight) + self._queued

    @property
    def worker_pid(self) -> int | None:
        return self._channel.pid if self._channel is not None else None

    def submit(self, recording: Recording) -> None:
        """Hand a finished exchange over; never raises into the request that produced it."""
        try:
            if self._in_process:
                self._collect(recording)
            else:
                self._submit_to_thread(recording)
        except Exception as exc:
            self._count_error(f"recording worker failed: {exc!r}")
            return
        if self.pending == BACKLOG_WARNING:
            log.warning(
                "recording is %d interactions behind the traffic: memory grows until it catches up "
                "(nothing is dropped; /_proxy/health shows recording_pending)",
                BACKLOG_WARNING,
            )

    # --- thread mode ---

    def _submit_to_thread(self, recording: Recording) -> None:
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(
            self._threads, build_and_write, recording, self.directory, self.redaction, "full", self.derive, None
        )
        self._inflight.add(future)
        future.add_done_callback(self._thread_done)

    def _thread_done(self, future: asyncio.Future[_Result]) -> None:
        self._inflight.discard(future)
        if future.cancelled():
            return
        try:
            result = future.result()
        except Exception as exc:  # count, never raise
            result = _Result(None, None, f"recording worker failed: {exc!r}")
        self._handle(result)

    # --- process mode ---

    def _collect(self, recording: Recording) -> None:
        """Gather the recordings finished in this loop iteration; they leave as one frame at its end."""
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
            self._progressed()
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
            for result in results:
                self._handle(result)
            if batch is not None:
                self._settled(batch.size)
            self._progressed()
        elif (reply := self._replies.pop(seq, None)) is not None and not reply.done():
            reply.set_result(body)

    def _progressed(self) -> None:
        """The worker finished a batch, or was handed one with nothing else pending: its clock starts again."""
        loop = asyncio.get_running_loop()
        if self._stall_warned:
            log.info("the recording worker is making progress again (%d recordings pending)", self._queued)
            self._stall_warned = False
        self._waiting_since = loop.time()
        if self._stall_timer is None:
            self._stall_timer = loop.call_later(self.stall_warning, self._check_stall)

    def _check_stall(self) -> None:
        """Warn once per stall; the next `_progressed` arms the timer again."""
        self._stall_timer = None
        if not self._batches or self._stall_warned:
            return
        loop = asyncio.get_running_loop()
        waited = loop.time() - self._waiting_since
        if waited < self.stall_warning:  # it finished something since the timer was armed
            self._stall_timer = loop.call_later(self.stall_warning - waited, self._check_stall)
            return
        self._stall_warned = True
        advice = (
            'it runs at record_worker_priority = "idle" and other work keeps the CPU busy; "low" keeps pace'
            if self.priority == "idle"
            else "it may be starved of CPU or stuck"
        )
        log.warning(
            "the recording worker has finished nothing for %.0f s while %d recordings wait: %s "
            "(nothing is dropped; /_proxy/health says degraded until it catches up)",
            waited,
            self._queued,
            advice,
        )

    @property
    def stalled_for(self) -> float:
        """Seconds the worker has been holding work without finishing any, once past `stall_warning`; else 0."""
        if not self._batches:
            return 0.0
        waited = asyncio.get_running_loop().time() - self._waiting_since
        return waited if waited >= self.stall_warning else 0.0

    def _settled(self, count: int) -> None:
        self._queued -= count
        if self._queued == 0:
            self._drained.set()

    def _forget(self, count: int, reason: str) -> None:
        for _ in range(count):
            self._count_error(reason)
        self._settled(count)

    def _on_exit(self, asked: bool) -> None:
        for reply in self._replies.values():
            if not reply.done():
                reply.set_result(None)
        self._replies.clear()
        self._channel = None
        if not asked:
            # The worker died (killed, out of memory). Start a new one and hand it what the old one held.
            self._count_error("recording worker died; started a new one")
            self._reviving = asyncio.get_running_loop().create_task(self._revive())

    async def _revive(self) -> None:
        """A new worker for the batches still unanswered. Each recording the dead worker may have held goes
        again on its own, once: a recording that kills the worker a second time is given up on, alone."""
        orphans, self._batches = self._batches, {}
        try:
            self._channel = await self._open_channel()
        except Exception as exc:
            self._reviving = None
            self._forget(sum(b.size for b in orphans.values()), f"recording worker could not start: {exc!r}")
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

    async def _ask(self, kind: str, timeout: float) -> Any:
        """Send a request after everything queued; the worker answers once it has done what came before."""
        if self._channel is None:
            return None
        self._seq += 1
        reply = asyncio.get_running_loop().create_future()
        self._replies[self._seq] = reply
        self._channel.send(frame((kind, self._seq, None)))
        try:
            return await asyncio.wait_for(reply, timeout)
        finally:
            self._replies.pop(self._seq, None)

    # --- both ---

    def _handle(self, result: _Result) -> None:
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
        if result.summary is not None:
            method, path, model, status, total_ms, failed = result.summary
            self.upstream_errors += failed
            if trafficlog.enabled():
                outcome = trafficlog.RECORDED if result.path is not None else trafficlog.FORWARDED
                trafficlog.line(
                    outcome, method, path, model, status, total_ms, relative_to(result.path, self.directory)
                )
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
            with contextlib.suppress(TimeoutError):  # busy with a backlog: keep the last known counters
                stats = await self._ask("stats", timeout)
                if stats is not None:
                    self.sink_stats = stats
        return self.sink_stats

    async def close(self) -> None:
        """Wait for every submitted recording, flush the sink, then stop the workers."""
        while self._inflight:
            await asyncio.gather(*list(self._inflight), return_exceptions=True)
        self._threads.shutdown(wait=True)
        if not self._in_process:
            return
        self._seal()
        while self._queued:
            await self._drained.wait()
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        channel = self._channel
        if channel is None:
            return
        channel.closing = True
        try:
            # the DuckDB writer's last flush happens here; a stuck worker is not waited for forever
            stats = await self._ask("close", timeout=120)
            if stats is not None:
                self.sink_stats = stats
        except Exception as exc:
            log.error("could not flush the database writer in the recording worker: %r", exc)
            if channel.process is not None and channel.process.is_alive():
                channel.process.kill()
        await channel.wait_closed()
