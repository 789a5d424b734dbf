"""The proxy's DuckDB writer: a recording sink that buffers interactions and writes them in batches.

`submit` only appends to a buffer; a dedicated thread turns the buffered interactions into rows and writes them
every `flush_interval` seconds (write_batch in store.py). It keeps its connection open between batches while
nobody else wants the file, and lets go within RELEASE_CHECK seconds when somebody does (`proxy sql` in another
process raises the `wanted` flag; see db.py): from then on it opens the file per batch, until the flag goes
stale. It also lets go after IDLE_RELEASE seconds without rows. A failed write is logged once per distinct
reason, counted, and the rows are kept for the next flush (at most `max_buffered`; beyond that the oldest are
dropped and counted): the cassette files stay the source of truth, and `proxy import` rebuilds anything missing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from pathlib import Path

from analytics.compaction import compact
from analytics.db import first_line, is_lock_conflict
from analytics.held_connection import WRITER_MEMORY_LIMIT, HeldConnection
from analytics.pricing import PriceTable
from analytics.rows import interaction_rows
from analytics.store import RowSet, write_isolating
from proxy.interaction import Interaction
from proxy.pipeline import SinkStats

log = logging.getLogger("proxy.analytics")

_REFUSALS_LOGGED = 10  # rows the database refused that are logged one by one
RELEASE_CHECK = 0.1  # seconds between looks at the `wanted` flag while the writer holds the file
# After this long with nothing to write, the writer lets go of the file anyway: DuckDB checkpoints and frees its
# memory, and any DuckDB client (not only `proxy sql`) can open the file while the proxy sits idle.
IDLE_RELEASE = 1.0
# Rows per INSERT at most: enough that the statement's fixed cost (about 4 ms) is shared, few enough that a
# backlog never goes into DuckDB's bounded memory at once. 1,000 rather than 2,000: the same CPU per row, and
# about 6 MB less at each statement's peak (40,000 recordings written in-process: peak 132 against 138 MB).
BATCH_ROWS = 1_000


# The rows of one interaction: made when it is submitted, so the buffer holds rows, not whole interactions (a
# streamed one carries every event), while a burst waits for the next flush.
_Queued = RowSet


class Buffer:
    """Interactions waiting for the writer thread, bounded: beyond `limit` the oldest are dropped and counted
    (their cassettes are kept). The lock is held only for O(1) appends and swaps."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.dropped = 0  # never written: the buffer overflowed, refused by the database, or added after close
        self._items: deque[_Queued] = deque()
        self._in_flight = 0  # size of the batch being written
        self._closed = False
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        return len(self._items) + self._in_flight

    def add(self, item: _Queued) -> bool:
        """Queue one; False when that dropped something (this item, after close; else the oldest)."""
        with self._lock:
            overflow = self._closed or len(self._items) >= self.limit
            if overflow:
                self.dropped += 1
            if not self._closed:
                if overflow and self._items:
                    self._items.popleft()
                self._items.append(item)
        return not overflow

    def take(self, most: int) -> deque[_Queued]:
        """The oldest `most` queued (all when fewer), now in flight until `done` or `put_back`."""
        with self._lock:
            if len(self._items) <= most:
                items, self._items = self._items, deque()
            else:
                items = deque(self._items.popleft() for _ in range(most))
            self._in_flight = len(items)
        return items

    def done(self) -> None:
        self._in_flight = 0

    def put_back(self, items: deque[_Queued]) -> None:
        """A batch that failed goes back in front, for the next try (still bounded)."""
        with self._lock:
            self._items.extendleft(reversed(items))
            self._in_flight = 0
            while len(self._items) > self.limit:
                self._items.popleft()
                self.dropped += 1

    def close(self) -> None:
        with self._lock:
            self._closed = True


class DuckDBWriter:
    """The proxy's DuckDB sink (proxy.pipeline.Sink): `start` once, `submit` per interaction, `close` at the end.
    It runs where the recording pipeline runs: the worker process for `proxy record`."""

    def __init__(
        self,
        db_path: Path | str,
        flush_interval: float = 0.5,
        *,
        max_buffered: int = 100_000,
        lock_timeout: float = 2.0,
        prices: PriceTable | None = None,
        memory_limit: str = WRITER_MEMORY_LIMIT,
    ) -> None:
        self.db_path = Path(db_path)
        self.flush_interval = flush_interval
        self.max_buffered = max_buffered
        self.lock_timeout = lock_timeout
        self.prices = prices
        self.rows_written = 0  # interactions inserted
        self.write_errors = 0  # failed flushes, plus rows the database refused
        self.last_error: str | None = None
        self._buffer = Buffer(max_buffered)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._refusals = 0
        self._reasons_logged: set[str] = set()
        # The connection held between batches, and the identity (device, inode) of the file it holds: a file
        # deleted or replaced under a running proxy is noticed, and a new one is created.
        self.held = HeldConnection(self.db_path, lock_timeout, memory_limit)

    @property
    def pending(self) -> int:
        """Interactions submitted and not yet written (buffered, or in the batch being written)."""
        return self._buffer.pending

    @property
    def rows_dropped(self) -> int:
        return self._buffer.dropped

    def submit(self, interaction: Interaction, cassette_path: str | None) -> None:
        """Queue the rows of one interaction. Never blocks on I/O and never raises."""
        try:
            rows = interaction_rows(interaction, cassette_path, self.prices)
        except Exception:  # a bug in rows.py must not hold back the other rows
            self.write_errors += 1
            log.exception("could not turn interaction %s into rows", interaction.id)
            return
        try:
            if not self._buffer.add(rows):
                self._log_once("DuckDB buffer full or writer closed: dropping rows (their cassettes are kept)")
        except Exception:  # recording must never break the traffic
            log.exception("could not queue an interaction for DuckDB")

    def start(self) -> None:
        """Create the database and its schema (a failure is counted, not raised), then start the thread."""
        self._prepare()
        self._thread = threading.Thread(target=self._run, name="duckdb-writer", daemon=True)
        self._thread.start()

    def close(self) -> SinkStats:
        """Write every buffered row (one last try), then stop the thread."""
        self._buffer.close()
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        else:
            self.flush()
        self._release()
        if self.rows_written:
            compact(self.db_path)  # merge the small row groups it left, now that it is done (compaction.py)
        if self._buffer.pending:
            log.error(
                "%d interactions were not written to %s (their cassettes are kept; `proxy import` adds them)",
                self._buffer.pending,
                self.db_path,
            )
        return self.stats()

    def stats(self) -> SinkStats:
        return SinkStats("database", self.rows_written, self.write_errors, self.last_error, self.rows_dropped)

    def _run(self) -> None:
        tick = min(RELEASE_CHECK, self.flush_interval)
        next_flush = time.monotonic() + self.flush_interval
        while not self._stop.wait(tick):
            if self.held.idle_for() > IDLE_RELEASE or self.held.wanted():
                self._release()
            if time.monotonic() >= next_flush:
                self.flush()
                next_flush = time.monotonic() + self.flush_interval
        self.flush()

    def flush(self) -> None:
        """Write everything buffered now, in this thread, BATCH_ROWS at a time, so that a large backlog (rows
        kept while another process held the file) never becomes one statement in DuckDB's bounded memory. On
        failure the rows go back to the buffer, for the next flush."""
        while items := self._buffer.take(BATCH_ROWS):
            try:
                written = self._write(items)
            except Exception as exc:
                self._release(after_failure=True)  # a broken connection is not reused
                self._failed(exc, len(items))
                self._buffer.put_back(items)
                return
            self._buffer.done()
            self.rows_written += written
            if self.last_error is not None:
                log.warning("DuckDB writing resumed: %s", self.db_path)
                self.last_error = None
                self._reasons_logged.clear()
            if len(items) < BATCH_ROWS:
                return

    def _write(self, items: deque[_Queued]) -> int:
        batch = list(items)
        written = self.held.run(lambda con: write_isolating(con, batch, self._refuse, just_recorded=True))
        if self.held.wanted():
            self._release()
        return written

    def _prepare(self) -> None:
        try:
            self.held.prepare()
        except Exception as exc:
            self._failed(exc, 0)

    def _release(self, *, after_failure: bool = False) -> None:
        """Let go of the file (DuckDB checkpoints on close), so another process can open it."""
        try:
            self.held.release()
        except Exception as exc:
            if not after_failure:  # the failure that broke it is counted already
                self._failed(exc, 0)

    def _refuse(self, rowset: RowSet, reason: str) -> None:
        self.write_errors += 1
        self._buffer.dropped += 1
        self._refusals += 1
        refusals = self._refusals
        if refusals <= _REFUSALS_LOGGED:
            more = "; further refusals are counted, not logged" if refusals == _REFUSALS_LOGGED else ""
            log.error("DuckDB refused interaction %s, not written: %s%s", rowset[0]["id"], reason, more)

    def _failed(self, exc: BaseException, rows: int) -> None:
        self.write_errors += 1
        reason = _failure_reason(exc, self.db_path, self.lock_timeout)
        self.last_error = reason
        kept = f" ({rows} rows kept for the next try; cassettes are unaffected)" if rows else ""
        self._log_once(reason + kept, key=reason)

    def _log_once(self, message: str, key: str | None = None) -> None:
        key = key or message
        if key not in self._reasons_logged:
            self._reasons_logged.add(key)
            log.error("%s; further identical errors are counted, not logged", message)


def _failure_reason(exc: BaseException, db_path: Path, lock_timeout: float) -> str:
    if is_lock_conflict(exc):
        return f"database locked by another process for over {lock_timeout:g} s: {db_path}"
    if isinstance(exc, OSError):
        return f"cannot write {db_path}: {exc.strerror or exc}"
    return f"cannot write {db_path}: {first_line(exc)}"
