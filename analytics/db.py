"""Opening the DuckDB file so one writer and many readers in different processes take turns.

DuckDB lets one process at a time hold a database file for writing (an exclusive lock), or any number of
processes hold it read-only (a shared lock). So the file is held only while nobody else asks for it: the
proxy's writer keeps its connection open between batches (reopening costs about 70 us of CPU per row at
1,500 rows/s, two thirds of its whole cost) until somebody else wants the file. Everybody else (`proxy sql`,
`proxy stats`, `proxy import`, `reading`/`writing` below) touches `PATH.wanted` before and while it tries to
open; the writer checks that flag every 0.1 s, closes its connection, and opens the file per batch (one
transaction, then close) for as long as the flag stays fresh (WANTED_FRESH). Whoever finds the file locked
retries with a short backoff. Verified with duckdb 2.0.0 and two processes:

- while process A holds a read-write connection, `duckdb.connect(path)` and `duckdb.connect(path,
  read_only=True)` in process B both raise `duckdb.IOException` whose message starts
  `IO Error: Could not set lock on file "PATH": Conflicting lock is held in ... (PID n)`;
- while A holds a read-only connection, B can open read-only too; read-write raises the same exception;
- inside ONE process the lock is not taken twice (DuckDB shares one instance per file): opening read-only
  while a read-write connection is open (or the reverse) raises `duckdb.ConnectionException`
  `Can't open a connection to same database file with a different configuration than existing connections`,
  or, while that connection is being closed, `duckdb.ResourceInUseException` `Unique file handle conflict`;
  both clear as soon as the other connection is closed, so they are retried the same way;
- a reader that opens after the writer closed its connection sees every row that batch committed;
- readers' shared locks overlap, so three readers polling every 50 ms kept the writer out for up to 3 s.
  Hence a writer that finds the file locked touches `PATH.writer-waiting` while it retries, and a reader
  about to open waits (at most READER_YIELD) while that flag is fresh: the writer gets in as soon as the
  readers already inside close. Measured by `bench/bench_analytics.py` (see its concurrent section).

`tests/test_analytics_store.py` runs a reader in another process against a running writer.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import duckdb

from analytics.schema import apply_migrations, pending_migrations

LOCK_TIMEOUT = 5.0  # seconds a reader or the importer waits for the file
READER_YIELD = 1.0  # at most this long a reader waits for a writer that is waiting for the file
WRITER_FLAG_STALE = 2.0  # seconds after which a writer's flag is left over from a dead writer
WANTED_FRESH = 3.0  # seconds after its last touch that a `wanted` flag keeps the proxy's writer from holding on


class AnalyticsError(Exception):
    """A failure to show the user as one line: a missing database, a bad query, a busy file."""


def is_lock_conflict(exc: BaseException) -> bool:
    """True when another connection holds the file (another process, or this one in the other mode)."""
    text = str(exc)
    return (
        (isinstance(exc, duckdb.IOException) and "Could not set lock on file" in text)
        or (isinstance(exc, duckdb.ConnectionException) and "different configuration" in text)
        # in one process, while another connection to the file is still being closed
        or (isinstance(exc, duckdb.ResourceInUseException) and "file handle conflict" in text)
    )


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


def _writer_flag(path: Path) -> Path:
    return path.with_name(path.name + ".writer-waiting")


def wanted_flag(path: Path) -> Path:
    return path.with_name(path.name + ".wanted")


def is_wanted(path: Path) -> bool:
    """Whether another connection asked for the file within WANTED_FRESH seconds (a left-over flag goes stale)."""
    try:
        return time.time() - wanted_flag(path).stat().st_mtime < WANTED_FRESH
    except OSError:
        return False


def _announce(path: Path) -> None:
    """Ask a writer that holds the file between batches to let go of it. Best effort: on a read-only folder
    the flag cannot be made, and the open waits for the writer's next release like any locked open."""
    with contextlib.suppress(OSError):
        wanted_flag(path).touch()


def _withdraw(path: Path) -> None:
    with contextlib.suppress(OSError):
        wanted_flag(path).unlink(missing_ok=True)


def _yield_to_writer(path: Path) -> None:
    """Let a waiting writer in first: readers' shared locks overlap, so without this a few busy readers can
    keep the writer out for seconds. The flag is ignored once older than WRITER_FLAG_STALE (a dead writer)."""
    flag = _writer_flag(path)
    deadline = time.monotonic() + READER_YIELD
    while time.monotonic() < deadline:
        try:
            if time.time() - flag.stat().st_mtime > WRITER_FLAG_STALE:
                return
        except OSError:
            return
        time.sleep(0.01)


def connect(
    path: Path, *, read_only: bool, timeout: float = LOCK_TIMEOUT, announce: bool = True
) -> duckdb.DuckDBPyConnection:
    """duckdb.connect, retried with backoff (10 ms doubling to 50 ms) while the file is locked.
    A writer kept out raises a flag file beside the database while it retries; readers wait for it.
    With `announce` (everybody but the proxy's own writer), each try first touches the `wanted` flag."""
    if read_only:
        _yield_to_writer(path)
    deadline = time.monotonic() + timeout
    delay = 0.01
    flag = None if read_only else _writer_flag(path)
    try:
        while True:
            if announce:
                _announce(path)
            try:
                return duckdb.connect(str(path), read_only=read_only)
            except duckdb.Error as exc:
                if not is_lock_conflict(exc) or time.monotonic() + delay > deadline:
                    raise
            if flag is not None:
                with contextlib.suppress(OSError):
                    flag.touch()
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
    finally:
        if flag is not None:
            with contextlib.suppress(OSError):
                flag.unlink(missing_ok=True)


def _user_message(exc: duckdb.Error, path: Path) -> str:
    if is_lock_conflict(exc):
        return f"database is busy (locked by another process for over {LOCK_TIMEOUT:g} s): {path}"
    return first_line(exc)


@contextmanager
def writing(db_path: Path | str, timeout: float = LOCK_TIMEOUT) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-write connection with the schema up to date; creates the file (and its folder) if needed."""
    path = Path(db_path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or exc
        raise AnalyticsError(f"cannot create the database folder {path.parent}: {reason}") from None
    try:
        con = connect(path, read_only=False, timeout=timeout)
    except duckdb.Error as exc:
        _withdraw(path)
        raise AnalyticsError(_user_message(exc, path)) from None
    try:
        apply_migrations(con)
        yield con
    except duckdb.Error as exc:
        raise AnalyticsError(_user_message(exc, path)) from None
    finally:
        con.close()
        _withdraw(path)


@contextmanager
def reading(db_path: Path | str, timeout: float = LOCK_TIMEOUT) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection to an existing database. A database from an older version is migrated
    first (briefly read-write), so the views always exist. duckdb errors become AnalyticsError."""
    path = Path(db_path)
    if not path.exists():
        raise AnalyticsError(f"database not found: {path}")
    try:
        con = connect(path, read_only=True, timeout=timeout)
        try:
            stale = bool(pending_migrations(con))
        except BaseException:
            con.close()
            raise
        if stale:
            con.close()
            with writing(path, timeout):
                pass
            con = connect(path, read_only=True, timeout=timeout)
    except duckdb.Error as exc:
        _withdraw(path)
        raise AnalyticsError(_user_message(exc, path)) from None
    try:
        yield con
    except duckdb.Error as exc:
        raise AnalyticsError(_user_message(exc, path)) from None
    finally:
        con.close()
        _withdraw(path)


# DuckDB keeps what a connection wrote in its buffer pool until it closes, by default up to 80% of the RAM:
# inserting 15,000 rows on one connection grew a process by about 80 MB unbounded, 26 MB at 60 MB. Bounded, it
# evicts written blocks instead (the key index loads lazily: a 2-million-row table inserts within this). In the
# recording worker through a burst the gain is smaller: 146 -> 129 MB in one measurement, none between 40 and
# 64 MB in another (bench/README.md). A batch that needs more (DuckDB's JSON reader wants twice the largest row,
# and 32 MB at least) runs again without the bound (`HeldConnection.run`).
WRITER_MEMORY_LIMIT = "64MB"

_T = TypeVar("_T")


class HeldConnection:
    """The writer's connection, kept between batches: opened (schema brought up to date) when needed, let go
    of when another process wants the file or nothing was written for a while, and opened anew when the file
    was deleted or replaced (noticed by its device and inode)."""

    def __init__(self, db_path: Path, lock_timeout: float, memory_limit: str = WRITER_MEMORY_LIMIT) -> None:
        self.db_path = db_path
        self.lock_timeout = lock_timeout
        self.memory_limit = memory_limit
        self._con: duckdb.DuckDBPyConnection | None = None
        self._file: tuple[int, int] | None = None
        self._last_use = 0.0  # time.monotonic() of the last batch written
        self._wanted_until = 0.0  # until then, open the file per batch (see wanted)

    def _open(self) -> duckdb.DuckDBPyConnection:
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        con = connect(self.db_path, read_only=False, timeout=self.lock_timeout, announce=False)
        try:
            apply_migrations(con)
        except BaseException:
            con.close()
            raise
        return con

    def run(self, work: Callable[[duckdb.DuckDBPyConnection], _T]) -> _T:
        """`work` on the connection, within the memory bound; work that needs more (a batch with a very large
        row, a prompt carrying images) runs again without it: DuckDB rolled the failed attempt back."""
        con = self.connection()
        try:
            return work(con)
        except duckdb.OutOfMemoryException:
            con.execute("RESET memory_limit")
            try:
                return work(con)
            finally:
                con.execute(f"SET memory_limit = '{self.memory_limit}'")

    def prepare(self) -> None:
        """Create the database and its schema now, holding nothing."""
        self._open().close()

    def connection(self) -> duckdb.DuckDBPyConnection:
        if self._con is not None and self._identity() != self._file:
            self.release()
        if self._con is None:
            con = self._open()
            con.execute("SET threads = 1")  # batches are small; more threads only add wake-ups on a busy core
            con.execute(f"SET memory_limit = '{self.memory_limit}'")
            self._con, self._file = con, self._identity()
        self._last_use = time.monotonic()
        return self._con

    def _identity(self) -> tuple[int, int] | None:
        try:
            info = os.stat(self.db_path)
        except OSError:
            return None
        return info.st_dev, info.st_ino

    def idle_for(self) -> float:
        """Seconds since the held connection was last used; 0 when nothing is held."""
        return 0.0 if self._con is None else time.monotonic() - self._last_use

    def wanted(self) -> bool:
        """Whether another process asked for the file in the last WANTED_FRESH seconds while one is held.
        Readers remove their flag when done, so the writer remembers having seen it: a reader polling every
        second or two then always finds the file free between batches."""
        now = time.monotonic()
        if self._con is not None and is_wanted(self.db_path):
            self._wanted_until = now + WANTED_FRESH
        return self._con is not None and now < self._wanted_until

    def release(self) -> None:
        """Close the held connection; raises what closing raised (the connection is gone either way)."""
        con, self._con, self._file = self._con, None, None
        if con is not None:
            con.close()
