"""Upstream answers that went silent mid-body, found by one periodic look instead of a timer per chunk.

aiohttp's `sock_read` timeout cancels and re-creates a timer on every read from the upstream socket: for a
streamed answer that is a timer per event, a measurable share of the proxy's CPU per event (issue #16). Here
each forwarded body notes when it started waiting for its next chunk; a watch looks at the bodies in flight a
few times per timeout, and fails the read of one that has waited too long with the error the timer would
have raised, within a quarter of the timeout. Nothing runs while no body is in flight.
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
    """One body in flight: `since` is the loop time its read began, None while it is not reading."""

    __slots__ = ("content", "limit", "since")

    def __init__(self, content: aiohttp.StreamReader, limit: float) -> None:
        self.content = content
        self.limit = limit
        self.since: float | None = None


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
            shortest = min(waiting.limit for waiting in self._watched.values())
            await asyncio.sleep(min(_SLOWEST, max(_FASTEST, shortest / 4)))
            now = loop.time()
            for token, waiting in list(self._watched.items()):
                if waiting.since is not None and now - waiting.since > waiting.limit:
                    del self._watched[token]
                    silent = f"upstream sent nothing for {waiting.limit:g} s"
                    waiting.content.set_exception(aiohttp.ServerTimeoutError(silent))

    async def close(self) -> None:
        self._watched.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
