"""Frames waiting for the recording worker, kept off the heap beyond a budget.

Under a burst the recording worker (which yields the core to the traffic) falls behind, and every recording
waits in the proxy as a pickled frame until the worker answers for it: 74,000 of them after 10 s at 64
concurrent requests, about 100 MB of the proxy's memory. Past HELD_IN_MEMORY bytes, new frames go to a
spool file instead: an anonymous temporary file (unlinked at once, so nothing is left behind by a kill), read
back in a thread when the frame is sent. The write stays on the event loop: one `pwrite` into the page cache
per loop iteration's batch, only while a backlog lasts. The bytes then sit in the page cache, which the kernel
may write out and drop, not in the proxy's heap. nginx spools a proxied body it cannot hold the same way.

The file is emptied once nothing waits. If it cannot be written (a full disk), the frame stays in memory as
before: a recording is never lost to the spool.
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import IO

log = logging.getLogger("proxy.record")

__all__ = ["HELD_IN_MEMORY", "Frame", "FrameSpool", "SpooledFrame", "frame_bytes"]

# Frames kept in memory at most; a quiet proxy's batches never reach the file. 1 MB rather than 4: the proxy's
# peak in a 10 s burst at c=64 went from 57-58 to 54 MB (its floor at rest is 50).
HELD_IN_MEMORY = 1024 * 1024


class SpooledFrame:
    """A frame's place in the spool file."""

    __slots__ = ("_spool", "length", "offset")

    def __init__(self, spool: FrameSpool, offset: int, length: int) -> None:
        self._spool = spool
        self.offset = offset
        self.length = length

    def read(self) -> bytes:
        return self._spool.read(self.offset, self.length)


Frame = bytes | SpooledFrame


def frame_bytes(frame: Frame) -> bytes:
    return frame if isinstance(frame, bytes) else frame.read()


class FrameSpool:
    """Where waiting frames are kept: `keep` each as it is made, `let_go` of it once the worker has answered
    for it, `empty` when nothing waits any more. For one event loop; the file is opened on first need."""

    def __init__(self, budget: int = HELD_IN_MEMORY) -> None:
        self.budget = budget
        self.held = 0  # bytes of the frames kept in memory
        self.spooled = 0  # bytes written to the file since it was last emptied
        self._file: IO[bytes] | None = None
        self._failed = False  # the file could not be written: frames stay in memory until it is emptied

    def keep(self, data: bytes) -> Frame:
        """The frame as it should wait: itself while the budget allows, else its place in the file."""
        if self.held + len(data) <= self.budget or self._failed or not hasattr(os, "pwrite"):
            self.held += len(data)
            return data
        try:
            if self._file is None:
                self._file = tempfile.TemporaryFile(prefix="proxy-frames-")  # noqa: SIM115 (open while frames wait)
            written = os.pwrite(self._file.fileno(), data, self.spooled)
            if written != len(data):
                raise OSError(f"short write to the spool ({written} of {len(data)} bytes)")
        except OSError as exc:
            log.warning("cannot spool waiting recordings to a file, keeping them in memory: %s", exc)
            self._failed = True
            self.held += len(data)
            return data
        spooled = SpooledFrame(self, self.spooled, len(data))
        self.spooled += len(data)
        return spooled

    def read(self, offset: int, length: int) -> bytes:
        assert self._file is not None, "a spooled frame outlived its file"
        return os.pread(self._file.fileno(), length, offset)

    def let_go(self, frame: Frame) -> None:
        if isinstance(frame, bytes):
            self.held -= len(frame)

    def empty(self) -> None:
        """Nothing waits: the file's blocks go back to the disk, and a failed file may be tried again."""
        self._failed = False
        if self._file is not None and self.spooled:
            try:
                self._file.truncate(0)
            except OSError:  # keep appending after what is there
                return
            self.spooled = 0

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self.spooled = 0
