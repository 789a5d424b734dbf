"""Giving memory back to the system once a recording backlog has drained.  (process-wide)

A burst that outruns the recording worker leaves its recordings waiting in the proxy as pickled frames (up to
the spool's budget in memory, then in a file: spool.py), and the event loop reads spooled ones back as they go
out. Once written they are freed, but glibc's allocator keeps most of that memory for reuse: before the spool,
the proxy stayed at its peak size while idle (146 MB after 10 s of c=64 against the 50 MB it starts with).
`malloc_trim` hands the free pages back. It is a glibc function: elsewhere this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Any

__all__ = ["BACKLOG_WORTH_TRIMMING", "release_free_memory"]

# Fewer frame bytes than this sent while recordings kept waiting leave too little behind for a pass over the heap.
BACKLOG_WORTH_TRIMMING = 4 * 1024 * 1024


@functools.cache
def _malloc_trim() -> Any:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim with
        return None


def release_free_memory() -> bool:
    """Return the allocator's free memory to the system; False where that cannot be done. Blocking (a few ms
    over a large heap): call it from a thread."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
