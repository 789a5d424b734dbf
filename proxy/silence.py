"""Upstream answers that went silent, found by one periodic look instead of a timer per wait.

aiohttp's `sock_read` timeout cancels and re-creates a timer on every read from the upstream socket: for a
streamed answer that is a timer per event, a measurable share of the proxy's CPU per event (issue #16). And an
`asyncio.timeout` around the wait for the answer's head costs 3.4 us per request. Here each forwarded exchange
notes when it started waiting (for the head, then for each next chunk); a watch looks at the exchanges in
flight a few times per timeout and ends a wait that has lasted too long, within a quarter of the timeout (at
most 1 s): a body's read fails with the error aiohttp's timer would have raised; the wait for a head is
cancelled like `asyncio.timeout` would, and `expired` tells the waiter why. Nothing runs while nothing waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools

import aiohttp

__all__ = ["SilenceWatch", "Waiting"]

# The look's period: a quarter of the shortest timeout watched, within these bounds (seconds).
_FASTEST, _SLOWEST = 0.01, 1.0


class Waiting:
    """One exchange in flight: `since` is the loop time its wait began, None while it is not waiting. While
    `content` is None it waits for the answer's head in `task` (at most `limit` seconds), then for each next
    chunk of `content` (at most `chunk_limit`)."""

    __slots__ = ("cancelling", "chunk_limit", "content", "expired", "limit", "since", "task")

    def __init__(self, limit: float, since: float, chunk_limit: float) -> None:
        self.limit = limit
        self.chunk_limit = chunk_limit
        self.since: float | None = since
        self.content: aiohttp.StreamReader | None = None
        self.task = asyncio.current_task()
        self.cancelling = self.task.cancelling() if self.task is not None else 0
        self.expired = False

    def reading(self, content: aiohttp.StreamReader, since: float) -> None:
        """The head is in: from now on, the waits are for the body's chunks."""
        self.content, self.limit, self.since = content, self.chunk_limit, since

    def was_cut(self) -> bool:
        """After a CancelledError in the wait for the head: True when the watch cut it (and nothing else, such
        as the client leaving, also cancelled the task), so it is a timeout, no longer a cancellation."""
        return self.expired and self.task is not None and self.task.uncancel() <= self.cancelling


class SilenceWatch:
    def __init__(self) -> None:
        self._watched: dict[int, Waiting] = {}
        self._tokens = itertools.count()
        self._task: asyncio.Task[None] | None = None

    def watch(self, waiting: Waiting) -> int:
        token = next(self._tokens)
        self._watched[token] = waiting
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._look())
        return token

    def forget(self, token: int) -> None:
        self._watched.pop(token, None)

    async def _look(self) -> None:
        loop = asyncio.get_running_loop()
        while self._watched:
            # the chunk limit too: a head that arrives while the look sleeps makes it the one that counts
            shortest = min(min(waiting.limit, waiting.chunk_limit) for waiting in self._watched.values())
            await asyncio.sleep(min(_SLOWEST, max(_FASTEST, shortest / 4)))
            now = loop.time()
            for token, waiting in list(self._watched.items()):
                if waiting.since is not None and now - waiting.since > waiting.limit:
                    del self._watched[token]
                    waiting.expired = True
                    if waiting.content is not None:
                        silent = f"upstream sent nothing for {waiting.limit:g} s"
                        waiting.content.set_exception(aiohttp.ServerTimeoutError(silent))
                    elif waiting.task is not None:
                        waiting.task.cancel()

    async def close(self) -> None:
        self._watched.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
