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
import os
import threading
import time
from collections import deque
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import duckdb

from analytics.db import WANTED_FRESH, connect, first_line, is_lock_conflict, is_wanted
from analytics.prices import overrides_from, price_table
from analytics.pricing import PriceTable
from analytics.rows import interaction_rows
from analytics.schema import apply_migrations
from analytics.store import RowSet, write_isolating
from proxy.interaction import Interaction
from proxy.pipeline import SinkFactory, SinkStats
from proxy.settings import RecordMode, Settings

log = logging.getLogger("proxy.analytics")

_REFUSALS_LOGGED = 10  # rows the database refused that are logged one by one
RELEASE_CHECK = 0.1  # seconds between looks at the `wanted` flag while the writer holds the file
# After this long with nothing to write, the writer lets go of the file anyway: DuckDB checkpoints and frees its
# memory, and any DuckDB client (not only `proxy sql`) can open the file while the proxy sits idle.
IDLE_RELEASE = 1.0


_Queued = tuple[Interaction, str | None]  # an interaction and its cassette path, still to be turned into rows


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
    ) -> None:
        self.db_path = Path(db_path)
        self.flush_interval = flush_interval
        self.max_buffered = max_buffered
        self.lock_timeout = lock_timeout
        self.prices = prices
        self.rows_written = 0  # interactions inserted
        self.write_errors = 0  # failed flushes, plus rows the database refused
        self.rows_dropped = 0  # rows never written: the buffer overflowed, or submitted after close
        self.last_error: str | None = None
        self._buffer: deque[_Queued] = deque()
        self._lock = threading.Lock()  # guards _buffer; held only for O(1) appends and swaps
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._in_flight = 0  # size of the batch the thread is writing
        self._refusals = 0
        self._reasons_logged: set[str] = set()
        # The connection held between batches, and the identity (device, inode) of the file it holds: a file
        # deleted or replaced under a running proxy is noticed, and a new one is created.
        self._con: duckdb.DuckDBPyConnection | None = None
        self._con_file: tuple[int, int] | None = None
        self._last_write = 0.0  # time.monotonic() of the last batch written
        self._wanted_until = 0.0  # until then, open the file per batch (see _wanted)

    @property
    def pending(self) -> int:
        """Interactions submitted and not yet written (buffered, or in the batch being written)."""
        return len(self._buffer) + self._in_flight

    def submit(self, interaction: Interaction, cassette_path: str | None) -> None:
        """Queue one interaction. Never blocks on I/O and never raises."""
        self._enqueue((interaction, cassette_path))

    def _enqueue(self, item: _Queued) -> None:
        try:
            with self._lock:
                overflow = self._closed or len(self._buffer) >= self.max_buffered
                if overflow:
                    self.rows_dropped += 1
                if not self._closed:
                    if overflow and self._buffer:
                        self._buffer.popleft()
                    self._buffer.append(item)
            if overflow:
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
        with self._lock:
            self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        else:
            self.flush()
        self._release()
        if self._buffer:
            log.error(
                "%d interactions were not written to %s (their cassettes are kept; `proxy import` adds them)",
                len(self._buffer),
                self.db_path,
            )
        return self.stats()

    def stats(self) -> SinkStats:
        return SinkStats("database", self.rows_written, self.write_errors, self.last_error, self.rows_dropped)

    def _run(self) -> None:
        tick = min(RELEASE_CHECK, self.flush_interval)
        next_flush = time.monotonic() + self.flush_interval
        while not self._stop.wait(tick):
            if self._con is not None and (time.monotonic() - self._last_write > IDLE_RELEASE or self._wanted()):
                self._release()
            if time.monotonic() >= next_flush:
                self.flush()
                next_flush = time.monotonic() + self.flush_interval
        self.flush()

    def _connection(self) -> duckdb.DuckDBPyConnection:
        """The held connection, or a new one (schema brought up to date) when there is none or its file is gone."""
        if self._con is not None and self._file_identity() != self._con_file:
            self._release()
        if self._con is None:
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
            con = connect(self.db_path, read_only=False, timeout=self.lock_timeout, announce=False)
            try:
                apply_migrations(con)
                con.execute("SET threads = 1")  # batches are small; more threads only add wake-ups on a busy core
            except BaseException:
                con.close()
                raise
            self._con, self._con_file = con, self._file_identity()
        return self._con

    def _file_identity(self) -> tuple[int, int] | None:
        try:
            info = os.stat(self.db_path)
        except OSError:
            return None
        return info.st_dev, info.st_ino

    def _release(self, *, after_failure: bool = False) -> None:
        """Close the held connection (DuckDB checkpoints on close), so another process can open the file."""
        con, self._con, self._con_file = self._con, None, None
        if con is not None:
            try:
                con.close()
            except Exception as exc:
                if not after_failure:  # the failure that broke it is counted already
                    self._failed(exc, 0)

    def _prepare(self) -> None:
        try:
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
            con = connect(self.db_path, read_only=False, timeout=self.lock_timeout, announce=False)
            try:
                apply_migrations(con)
            finally:
                con.close()
        except Exception as exc:
            self._failed(exc, 0)

    def flush(self) -> None:
        """Write everything buffered now, in this thread. On failure the rows go back to the buffer."""
        with self._lock:
            if not self._buffer:
                return
            items, self._buffer = self._buffer, deque()
            self._in_flight = len(items)
        try:
            written = self._write(items)
        except Exception as exc:
            self._release(after_failure=True)  # a broken connection is not reused
            self._failed(exc, len(items))
            with self._lock:
                self._buffer.extendleft(reversed(items))
                self._in_flight = 0
                while len(self._buffer) > self.max_buffered:
                    self._buffer.popleft()
                    self.rows_dropped += 1
            return
        self._in_flight = 0
        self.rows_written += written
        if self.last_error is not None:
            log.warning("DuckDB writing resumed: %s", self.db_path)
            self.last_error = None
            self._reasons_logged.clear()

    def _write(self, items: deque[_Queued]) -> int:
        batch: list[RowSet] = []
        for interaction, cassette in items:
            try:
                batch.append(interaction_rows(interaction, cassette, self.prices))
            except Exception:  # a bug in rows.py must not hold back the other rows
                self.write_errors += 1
                log.exception("could not turn interaction %s into rows", interaction.id)
        written = write_isolating(self._connection(), batch, self._refuse)
        self._last_write = time.monotonic()
        if self._wanted():
            self._release()
        return written

    def _wanted(self) -> bool:
        """Whether somebody asked for the file in the last WANTED_FRESH seconds. Readers remove their flag when
        done, so the writer remembers having seen it: a reader polling every second or two then always finds
        the file free between batches, instead of waiting for the writer to let go each time."""
        now = time.monotonic()
        if is_wanted(self.db_path):
            self._wanted_until = now + WANTED_FRESH
        return now < self._wanted_until

    def _refuse(self, rowset: RowSet, reason: str) -> None:
        with self._lock:
            self.write_errors += 1
            self.rows_dropped += 1
            self._refusals += 1
            refusals = self._refusals
        if refusals <= _REFUSALS_LOGGED:
            more = "; further refusals are counted, not logged" if refusals == _REFUSALS_LOGGED else ""
            log.error("DuckDB refused interaction %s, not written: %s%s", rowset[0]["id"], reason, more)

    def _failed(self, exc: BaseException, rows: int) -> None:
        self.write_errors += 1
        if is_lock_conflict(exc):
            reason = f"database locked by another process for over {self.lock_timeout:g} s: {self.db_path}"
        elif isinstance(exc, OSError):
            reason = f"cannot write {self.db_path}: {exc.strerror or exc}"
        else:
            reason = f"cannot write {self.db_path}: {first_line(exc)}"
        self.last_error = reason
        kept = f" ({rows} rows kept for the next try; cassettes are unaffected)" if rows else ""
        self._log_once(reason + kept, key=reason)

    def _log_once(self, message: str, key: str | None = None) -> None:
        key = key or message
        if key not in self._reasons_logged:
            self._reasons_logged.add(key)
            log.error("%s; further identical errors are counted, not logged", message)


def database_sink(db_path: str, flush_interval: float, price_overrides: Mapping[str, Any]) -> DuckDBWriter:
    """The sink factory the composition root hands to the recording pipeline (module-level, so it crosses to
    the worker process by reference): builds the price table and starts the writer where the pipeline runs."""
    writer = DuckDBWriter(db_path, flush_interval, prices=price_table(overrides_from(price_overrides)))
    writer.start()
    return writer


def database_sinks(settings: Settings) -> list[SinkFactory]:
    """The DuckDB sink for a proxy with these settings, when it records and the database is on."""
    if not settings.db_enabled or settings.resolved().mode is RecordMode.REPLAY:
        return []
    return [partial(database_sink, str(settings.db_path), settings.db_flush_interval, dict(settings.prices))]
