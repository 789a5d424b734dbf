"""The recording worker process, and the channel the proxy talks to it through.

The worker runs the recording pipeline (pipeline.py) for the proxy, below the traffic's priority, on the
other core when there is one. Why not a ProcessPoolExecutor: it costs a pipe write, a wake-up of its manager
thread and a future per task, and it keeps every queued task as live Python objects in the proxy's memory until
the worker takes it. Under a burst, the recording worker (which yields the core to the traffic) falls thousands
of recordings behind, so both costs were large: a quarter of the proxy's CPU at 1,500 requests/s went to the
executor's bookkeeping, and the queued objects grew the heap by 30 MB that Python never gave back.

So the channel is one Unix socket pair. The event loop gathers the recordings finished in one loop iteration,
pickles them at once into one frame (a 4-byte big-endian length, then the pickle) and lets the objects go;
a waiting frame is one bytes object, or past a budget its place in a spool file (spool.py). The worker
answers each batch with one frame of results, in order.

The frames and the messages both ends exchange are in worker_wire.py.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from proxy.spool import Frame, frame_bytes
from proxy.worker_wire import FRAME_LENGTH, Message, WorkerConfig, frame

log = logging.getLogger("proxy.record")


@dataclass(slots=True)
class Batch:
    """Recordings sent (or waiting to be sent) as one frame, until the worker answers for them."""

    frame: Frame
    size: int
    attempt: int


class WorkerChannel:
    """One worker process and the socket to it. `send` is for the event loop and never blocks: frames wait
    in order and go out as fast as the worker reads. `on_message` gets each answer; `on_exit` is told when
    the worker is gone (with whether it was asked to go)."""

    def __init__(
        self,
        config: WorkerConfig,
        on_message: Callable[[Message], None],
        on_exit: Callable[[bool], None],
    ) -> None:
        self.config = config
        self.on_message = on_message
        self.on_exit = on_exit
        self.process: subprocess.Popen[bytes] | None = None
        self.closing = False
        self._writer: asyncio.StreamWriter | None = None
        self._outbox: asyncio.Queue[Frame] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._replies: dict[int, asyncio.Future[Any]] = {}  # questions asked, by (negative) number
        self._asked = 0

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    async def start(self) -> None:
        """Start the worker process; returns once it is ready (its sinks started).

        A fresh interpreter (`python -m proxy.worker_process FD`), not multiprocessing: a program that embeds the proxy
        needs no `if __name__ == "__main__"` guard (spawn re-runs the main module), no resource-tracker
        process comes along (13 MB), and nothing is forked from a process with a running event loop."""
        ours, theirs = socket.socketpair()
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "proxy.worker_process", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                env=_worker_environment(),
            )
        finally:
            theirs.close()
        self.process = process
        reader, self._writer = await asyncio.open_unix_connection(sock=ours, limit=2**20)
        self._writer.write(frame(("config", 0, self.config)))
        ready = await _read_message(reader)
        if ready is None or ready[0] != "ready":
            await self._exited()
            raise RuntimeError(f"the recording worker did not start (exit code {process.returncode})")
        self._tasks = [
            asyncio.create_task(self._send_loop(), name="recording-channel-send"),
            asyncio.create_task(self._receive_loop(reader), name="recording-channel-receive"),
        ]

    def send(self, data: Frame) -> None:
        self._outbox.put_nowait(data)

    async def ask(self, kind: str, timeout: float) -> Any:
        """A question ("stats", "close") sent after everything queued: the worker answers once it has done what
        came before. None when the worker went away first. Numbered below zero, apart from the batches."""
        self._asked -= 1
        seq = self._asked
        reply = asyncio.get_running_loop().create_future()
        self._replies[seq] = reply
        self.send(frame((kind, seq, None)))
        try:
            return await asyncio.wait_for(reply, timeout)
        finally:
            self._replies.pop(seq, None)

    async def _send_loop(self) -> None:
        assert self._writer is not None
        try:
            while True:
                waiting = [await self._outbox.get()]
                size = _size(waiting[0])
                while size < SENT_AT_ONCE and not self._outbox.empty():
                    waiting.append(self._outbox.get_nowait())
                    size += _size(waiting[-1])
                if all(isinstance(data, bytes) for data in waiting):
                    self._writer.write(_joined(waiting))
                else:  # spooled frames are read in a thread: the event loop never waits on the disk
                    self._writer.write(await asyncio.to_thread(_joined, waiting))
                await self._writer.drain()  # the worker reads slower than we send: the frames wait in the queue
        except (ConnectionError, OSError):
            return  # the receive loop sees the end and reports it

    async def _receive_loop(self, reader: asyncio.StreamReader) -> None:
        try:
            while (message := await _read_message(reader)) is not None:
                reply = self._replies.pop(message[1], None)
                if reply is not None:
                    if not reply.done():
                        reply.set_result(message[2])
                    continue
                try:
                    self.on_message(message)
                except Exception:  # a bug in handling one answer must not stop the channel
                    log.exception("could not handle an answer from the recording worker")
        except (ConnectionError, OSError):
            pass
        except Exception:  # an unreadable frame: the channel cannot be trusted, start over with a new worker
            log.exception("the channel to the recording worker broke")
            self.kill()
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
        await self._exited()
        for reply in self._replies.values():
            if not reply.done():
                reply.set_result(None)
        self.on_exit(self.closing)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()

    async def _exited(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self.process is not None:
            try:
                await asyncio.to_thread(self.process.wait, 10)
            except subprocess.TimeoutExpired:  # asked to leave and did not: it holds nothing we still need
                self.process.kill()
                await asyncio.to_thread(self.process.wait, 5)

    async def wait_closed(self) -> None:
        await asyncio.gather(*self._tasks, return_exceptions=True)


# DuckDB allocates through the jemalloc it bundles, which keeps freed pages for seconds before it returns them.
# The worker writes in bursts, so those pages only raised its peak: returned at once, a catch-up of 80,000
# recordings peaked 7-9 MB lower in-process (70 -> 61-63 MB), for 3-6% more CPU in the writer. A setting the user
# made is kept.
DUCKDB_ALLOCATOR = ("DUCKDB_JE_MALLOC_CONF", "dirty_decay_ms:0,muzzy_decay_ms:0")


def _worker_environment() -> dict[str, str]:
    name, value = DUCKDB_ALLOCATOR
    return {name: value, **os.environ}


# Frames that wait go out together, up to this many bytes in one write. Through a backlog they all wait in the
# spool file, and reading them back one thread hop each was most of what the proxy spent after a burst.
SENT_AT_ONCE = 256 * 1024


def _size(waiting: Frame) -> int:
    return len(waiting) if isinstance(waiting, bytes) else waiting.length


def _joined(waiting: list[Frame]) -> bytes:
    return b"".join(frame_bytes(data) for data in waiting)


async def _read_message(reader: asyncio.StreamReader) -> Message | None:
    try:
        header = await reader.readexactly(FRAME_LENGTH.size)
        payload = await reader.readexactly(FRAME_LENGTH.unpack(header)[0])
    except asyncio.IncompleteReadError:
        return None
    message: Message = pickle.loads(payload)
    return message
