"""The recording worker process itself: `python -m proxy.worker_process FD`, started by worker.py's channel.

It lowers its own priority below the traffic's, watches that its parent is alive, then runs the recording
pipeline on each batch the proxy sends and answers with what was written. Blocking I/O throughout: it is a
process of its own.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import signal
import socket
import sys
import threading
import time

from proxy.pipeline import Pipeline, Written
from proxy.worker_wire import FRAME_LENGTH, Message, Priority, WorkerConfig, frame, recordings_of

LOW_NICE = 10  # what "low" adds to the worker's niceness


def _read_exactly(sock: socket.socket, size: int) -> bytearray | None:
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        count = sock.recv_into(view[got:])
        if count == 0:
            return None
        got += count
    return buffer


def _receive(sock: socket.socket) -> Message | None:
    header = _read_exactly(sock, FRAME_LENGTH.size)
    if header is None:
        return None
    payload = _read_exactly(sock, FRAME_LENGTH.unpack(header)[0])
    return None if payload is None else pickle.loads(payload)


def lower_priority(priority: Priority) -> None:
    """Make this process yield the CPU to the traffic.

    "idle" (Linux SCHED_IDLE) runs the worker only when nothing else wants the core, and a waking event loop
    preempts it at once: a streamed chunk never waits for a cassette. "low" (nice 10) still gives the worker
    about a tenth of a contended core, so recording keeps pace on a machine that other work keeps busy.
    Neither can be undone without privileges, which is why the worker, not the proxy, lowers itself.

    On Linux both are per thread, and threads started before this call keep the old priority (an import
    may start one, for example pyarrow's allocator when it was on the worker's path), so every thread of the
    process is lowered; threads started later inherit it."""
    threads = _own_threads()
    if priority == "idle" and hasattr(os, "SCHED_IDLE"):
        try:
            for thread in threads:
                with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
                    os.sched_setscheduler(thread, os.SCHED_IDLE, os.sched_param(0))
            return
        except OSError:  # a seccomp profile or another kernel: fall back to the portable kind
            pass
    for thread in threads:
        with contextlib.suppress(ProcessLookupError):
            os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + LOW_NICE))


def _own_threads() -> list[int]:
    """Linux thread ids of this process (0, this thread, where /proc is not there)."""
    try:
        return [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        return [0]


def _settle_in(priority: Priority) -> None:
    """Ctrl-C reaches the whole process group, but only the parent decides when to stop (it drains the
    recordings first). If the parent dies without a word (kill -9), the worker leaves too, instead of
    lingering as an orphan holding the parent's terminal and pipes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # When both must share a core, the traffic goes first: recording can wait, a streamed chunk should not.
    lower_priority(priority)
    parent = os.getppid()

    def watch_parent() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(0)

    threading.Thread(target=watch_parent, name="parent-watch", daemon=True).start()


def worker_main(sock: socket.socket, config: WorkerConfig) -> None:
    """The worker process: run the pipeline on each recording of each batch, answer with what was written."""
    _settle_in(config.priority)
    pipeline = Pipeline(config.pipeline)
    pipeline.open()
    sock.sendall(frame(("ready", 0, None)))
    answers = Answers(sock, pipeline)
    while (message := _receive(sock)) is not None:
        kind, seq, body = message
        if kind == "batch":
            answers.done(seq, [pipeline.run(recording) for recording in recordings_of(body)])
            answers.send_if_due()
        elif kind == "stats":
            answers.send(("stats", seq, pipeline.stats()))
        elif kind == "close":
            answers.send(("closed", seq, pipeline.close()))
            break
    with contextlib.suppress(OSError):  # the proxy went away: nobody left to tell, but none held back either
        answers.send()
    sock.close()


# Answers for batches done wait at most this many, or this long, while more batches wait to be read.
ANSWERS_AT_ONCE = 32
ANSWER_DELAY = 0.05


class Answers:
    """The answers for the batches done, sent together while more batches wait in the socket.

    Through a backlog, an answer per batch woke the proxy's event loop once per batch, for a handful of
    recordings each time. So the answers wait while the next batch is already there (up to ANSWERS_AT_ONCE of
    them, or ANSWER_DELAY seconds) and go in one write, and only the last carries the sinks' counters. A worker
    that keeps up answers each batch at once, as before."""

    def __init__(self, sock: socket.socket, pipeline: Pipeline) -> None:
        self.sock = sock
        self.pipeline = pipeline
        self._done: list[tuple[int, list[Written]]] = []
        self._since = 0.0

    def done(self, seq: int, results: list[Written]) -> None:
        if not self._done:
            self._since = time.monotonic()
        self._done.append((seq, results))

    def send_if_due(self) -> None:
        """Send the answers waiting unless another batch is already there and they have not waited long."""
        if len(self._done) < ANSWERS_AT_ONCE and time.monotonic() - self._since < ANSWER_DELAY:
            readable, _, _ = select.select([self.sock], [], [], 0)
            if readable:
                return
        self.send()

    def send(self, reply: Message | None = None) -> None:
        """The answers waiting, then `reply` (to a question asked after those batches), in one write."""
        frames = [frame(("done", seq, (results, None))) for seq, results in self._done[:-1]]
        if self._done:
            seq, results = self._done[-1]
            frames.append(frame(("done", seq, (results, self.pipeline.stats()))))
        if reply is not None:
            frames.append(frame(reply))
        self._done.clear()
        if frames:
            self.sock.sendall(b"".join(frames))


def _main(argv: list[str]) -> None:
    """`python -m proxy.worker_process FD`: the socket to the proxy is FD; the first frame on it is the WorkerConfig."""
    sock = socket.socket(fileno=int(argv[1]))
    message = _receive(sock)
    if message is None or message[0] != "config":
        raise SystemExit("proxy.worker_process: expected the worker's configuration first")
    worker_main(sock, message[2])


if __name__ == "__main__":
    _main(sys.argv)
