"""The recording sink: turns finished Recordings into cassette files, off the event loop.

`submit` returns at once; the work runs in a small thread pool and is tracked, so a clean stop (`close`)
waits for every recording that was handed over. A failure to write is logged once per distinct reason,
counted, and reported by the health endpoint; it never reaches the client.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from proxy.cassettes import write_cassette
from proxy.interaction import Interaction
from proxy.recording import Recording, Redaction, build_interaction

log = logging.getLogger("proxy.record")

OnRecorded = Callable[[Interaction, Path | None], None]


@dataclass(slots=True)
class _Result:
    interaction: Interaction | None
    path: Path | None
    error: str | None


class Recorder:
    def __init__(self, directory: Path, redaction: Redaction, workers: int = 2) -> None:
        self.directory = directory
        self.redaction = redaction
        self.listeners: list[OnRecorded] = []
        self.recorded = 0
        self.write_errors = 0
        self.last_error: str | None = None
        self._reasons_logged: set[str] = set()
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cassette-writer")
        self._pending: set[asyncio.Future[_Result]] = set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def submit(self, recording: Recording) -> None:
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, self._build_and_write, recording)
        self._pending.add(future)
        future.add_done_callback(self._done)

    def _build_and_write(self, recording: Recording) -> _Result:
        try:
            interaction = build_interaction(recording, self.redaction)
        except Exception as exc:  # a bug in our own code must not lose the traffic's flow
            log.exception("could not build a recording of %s %s", recording.method, recording.path)
            return _Result(None, None, f"build failed: {exc!r}")
        try:
            return _Result(interaction, write_cassette(self.directory, interaction), None)
        except OSError as exc:
            return _Result(interaction, None, f"cannot write cassette in {self.directory}: {exc.strerror or exc}")

    def _done(self, future: asyncio.Future[_Result]) -> None:
        self._pending.discard(future)
        if future.cancelled():
            return
        result = future.result()
        if result.error is None:
            self.recorded += 1
            if self.last_error is not None:
                log.warning("cassette writing resumed")
                self.last_error = None
                self._reasons_logged.clear()
        else:
            self.write_errors += 1
            self.last_error = result.error
            if result.error not in self._reasons_logged:
                self._reasons_logged.add(result.error)
                log.error("%s (traffic continues; further identical errors are counted, not logged)", result.error)
        if result.interaction is not None:
            for listener in self.listeners:
                try:
                    listener(result.interaction, result.path)
                except Exception:
                    log.exception("a recording listener failed")

    async def close(self) -> None:
        """Wait for every submitted recording, then stop the worker threads."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)
        self._executor.shutdown(wait=True)
