"""Opening the DuckDB file so one writer and many readers in different processes take turns.

DuckDB lets one process at a time hold a database file for writing (an exclusive lock), or any number of
processes hold it read-only (a shared lock). So nobody holds it for long: the proxy's writer opens it per
batch, writes one transaction and closes it; `proxy sql` and `proxy stats` open it read-only, run, close.
Whoever finds the file locked retries with a short backoff. Verified with duckdb 2.0.0 and two processes:

- while process A holds a read-write connection, `duckdb.connect(path)` and `duckdb.connect(path,
  read_only=True)` in process B both raise `duckdb.IOException` whose message starts
  `IO Error: Could not set lock on file "PATH": Conflicting lock is held in ... (PID n)`;
- while A holds a read-only connection, B can open read-only too; read-write raises the same exception;
- inside ONE process the lock is not taken twice (DuckDB shares one instance per file): opening read-only
  while a read-write connection is open (or the reverse) raises `duckdb.ConnectionException`
  `Can't open a connection to same database file with a different configuration than existing connections`;
  it clears as soon as the other connection closes, so it is retried the same way;
- a reader that opens after the writer closed its connection sees every row that batch committed;
- readers' shared locks overlap, so three readers polling every 50 ms kept the writer out for up to 3 s.
  Hence a writer that finds the file locked touches `PATH.writer-waiting` while it retries, and a reader
  about to open waits (at most READER_YIELD) while that flag is fresh: the writer gets in as soon as the
  readers already inside close. Measured by `bench/bench_analytics.py` (see its concurrent section).

`tests/test_analytics_store.py` runs a reader in another process against a running writer.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from analytics.schema import apply_migrations, pending_migrations

LOCK_TIMEOUT = 5.0  # seconds a reader or the importer waits for the file
READER_YIELD = 1.0  # at most this long a reader waits for a writer that is waiting for the file
WRITER_FLAG_STALE = 2.0  # seconds after which a writer's flag is left over from a dead writer


class AnalyticsError(Exception):
    """A failure to show the user as one line: a missing database, a bad query, a busy file."""


def is_lock_conflict(exc: BaseException) -> bool:
    """True when another connection holds the file (another process, or this one in the other mode)."""
    text = str(exc)
    return (isinstance(exc, duckdb.IOException) and "Could not set lock on file" in text) or (
        isinstance(exc, duckdb.ConnectionException) and "different configuration" in text
    )


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


def _writer_flag(path: Path) -> Path:
    return path.with_name(path.name + ".writer-waiting")


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


def connect(path: Path, *, read_only: bool, timeout: float = LOCK_TIMEOUT) -> duckdb.DuckDBPyConnection:
    """duckdb.connect, retried with backoff (10 ms doubling to 50 ms) while the file is locked.
    A writer kept out raises a flag file beside the database while it retries; readers wait for it."""
    if read_only:
        _yield_to_writer(path)
    deadline = time.monotonic() + timeout
    delay = 0.01
    flag = None if read_only else _writer_flag(path)
    try:
        while True:
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
        raise AnalyticsError(_user_message(exc, path)) from None
    try:
        apply_migrations(con)
        yield con
    except duckdb.Error as exc:
        raise AnalyticsError(_user_message(exc, path)) from None
    finally:
        con.close()


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
        raise AnalyticsError(_user_message(exc, path)) from None
    try:
        yield con
    except duckdb.Error as exc:
        raise AnalyticsError(_user_message(exc, path)) from None
    finally:
        con.close()
