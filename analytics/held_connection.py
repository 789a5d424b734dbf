"""The recording worker's connection to the database, held between batches (db.py says how the file is shared).

Opened when a batch comes, with the schema brought up to date and DuckDB's memory bounded; let go of when
another process wants the file or nothing was written for a while; opened anew when the file was replaced.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import duckdb

from analytics.db import WANTED_FRESH, connect, is_wanted
from analytics.schema import apply_migrations

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
