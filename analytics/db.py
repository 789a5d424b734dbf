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
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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


# Row groups of this many rows, not DuckDB's 122,880, for every read-write connection. A checkpoint that adds
# rows to a row group already on disk rewrites that row group whole: with the default size, every other
# automatic checkpoint of the recording worker (one per 16 MB of WAL, about 20,000 rows) took 30-40 MB more
# for a moment, the peak of `proxy record`'s process tree under load. Measured in-process over 80,000
# recordings in batches of 1,000: the peak went from 102 to 70 MB, the CPU the same, the file 10% larger.
# DuckDB does not keep the size in the file: a connection opened without it merges small row groups again, which
# is what compaction.py does on purpose, with a larger size, once a writer is done.
WRITER_ROW_GROUP_SIZE = 4096


def _attach_for_writing(path: Path, row_group_size: int) -> duckdb.DuckDBPyConnection:
    """A read-write connection to the file, appending in row groups of `row_group_size` (an ATTACH option
    only). What DuckDB spills goes beside the file, as with a file opened directly (an in-memory database's
    default is `.tmp` in the working directory)."""
    con = duckdb.connect(config={"temp_directory": f"{path}.tmp"})
    try:
        quoted = str(path).replace("'", "''")
        con.execute(f"ATTACH '{quoted}' AS traffic (ROW_GROUP_SIZE {row_group_size})")
        con.execute("USE traffic")
    except BaseException:
        con.close()
        raise
    return con


def connect(
    path: Path,
    *,
    read_only: bool,
    timeout: float = LOCK_TIMEOUT,
    announce: bool = True,
    row_group_size: int = WRITER_ROW_GROUP_SIZE,
) -> duckdb.DuckDBPyConnection:
    """duckdb.connect, retried with backoff (10 ms doubling to 50 ms) while the file is locked.
    A writer kept out raises a flag file beside the database while it retries; readers wait for it.
    With `announce` (everybody but the proxy's own writer), each try first touches the `wanted` flag.
    `row_group_size` is for read-write connections: compaction.py merges with a larger one."""
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
                if read_only:
                    return duckdb.connect(str(path), read_only=True)
                return _attach_for_writing(path, row_group_size)
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
