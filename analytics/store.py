"""Writing rows to DuckDB: the batched Arrow insert (the proxy's writer is in writer.py).

`write_batch` turns rows into two Arrow tables and inserts each in one statement, skipping interactions whose
id is already stored (so replaying a batch or importing twice adds nothing). `DuckDBWriter` is the proxy's
sink: `submit` only appends to a buffer; a dedicated thread writes the buffer every `flush_interval` seconds.
It keeps its connection open between batches while nobody else wants the file, and lets go within
RELEASE_CHECK seconds when somebody does (`proxy sql` in another process raises the `wanted` flag; see db.py):
from then on it opens the file per batch, until the flag goes stale. It also lets go after IDLE_RELEASE
seconds without rows. A failed write is logged once per
distinct reason, counted, and the rows are kept for the next flush (at most `max_buffered`; beyond that the
oldest are dropped and counted): the cassette files stay the source of truth, and `proxy import` rebuilds
anything missing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import duckdb
import pyarrow as pa

from analytics.db import first_line
from analytics.rows import Row
from analytics.schema import CHOICE_COLUMNS, INTERACTION_COLUMNS, V2_INTERACTION_COLUMNS

log = logging.getLogger("proxy.analytics")

_ARROW_TYPES: dict[str, Any] = {
    "VARCHAR": pa.string(),
    "JSON": pa.string(),
    "TIMESTAMP": pa.timestamp("us"),
    "INTEGER": pa.int32(),
    "BIGINT": pa.int64(),
    "DOUBLE": pa.float64(),
    "BOOLEAN": pa.bool_(),
}

RowSet = tuple[Row, list[Row]]  # one interaction row and its choice rows


def _arrow_table(columns: tuple[tuple[str, str], ...], rows: Sequence[Row]) -> Any:
    return pa.table({name: pa.array([row[name] for row in rows], type=_ARROW_TYPES[kind]) for name, kind in columns})


def _insert_sql(table: str, columns: tuple[tuple[str, str], ...], source: str) -> str:
    names = ", ".join(name for name, _ in columns)
    return f"INSERT INTO {table} ({names}) SELECT {names} FROM {source}"


_INSERT_INTERACTIONS = (
    _insert_sql("interactions", INTERACTION_COLUMNS, "_batch_interactions") + " ON CONFLICT DO NOTHING RETURNING id"
)
_INSERT_CHOICES = _insert_sql("choices", CHOICE_COLUMNS, "_batch_choices")
# `proxy import` over interactions already stored: fill the columns derived since (cost, tags, timings) from
# the cassettes, the source of truth, so old rows get them and costs follow the current prices.
_REFRESH_DERIVED = (
    "UPDATE interactions SET "
    + ", ".join(f'"{name}" = b."{name}"' for name, _ in V2_INTERACTION_COLUMNS)
    + " FROM _batch_interactions AS b WHERE interactions.id = b.id"
)


def write_batch(con: duckdb.DuckDBPyConnection, batch: Sequence[RowSet], *, refresh: bool = False) -> int:
    """Insert in one transaction; interactions already stored (by id) are skipped with their choices (with
    `refresh`, their derived columns are updated from the new rows). Returns how many were inserted."""
    unique: dict[str, RowSet] = {}
    for rowset in batch:
        unique.setdefault(rowset[0]["id"], rowset)
    if not unique:
        return 0
    interactions = _arrow_table(INTERACTION_COLUMNS, [row for row, _ in unique.values()])
    con.begin()
    try:
        con.register("_batch_interactions", interactions)
        inserted = {row[0] for row in con.execute(_INSERT_INTERACTIONS).fetchall()}
        choices = [choice for row, rows in unique.values() if row["id"] in inserted for choice in rows]
        if choices:
            con.register("_batch_choices", _arrow_table(CHOICE_COLUMNS, choices))
            con.execute(_INSERT_CHOICES)
        if refresh and len(inserted) < len(unique):
            con.execute(_REFRESH_DERIVED)
        con.commit()
    except BaseException:
        con.rollback()
        raise
    finally:
        con.unregister("_batch_interactions")
        con.unregister("_batch_choices")
    return len(inserted)


_DATA_ERRORS = (
    duckdb.DataError,
    duckdb.IntegrityError,
    duckdb.InvalidInputException,
    ValueError,
    TypeError,
    UnicodeError,
)


def is_data_error(exc: BaseException) -> bool:
    """A row the database will never accept (malformed JSON, bad text), not a busy or broken file."""
    return isinstance(exc, _DATA_ERRORS)


def write_isolating(
    con: duckdb.DuckDBPyConnection,
    batch: Sequence[RowSet],
    refuse: Callable[[RowSet, str], None],
    *,
    refresh: bool = False,
) -> int:
    """write_batch; when the database refuses the data itself, halve the batch until the bad rows are found
    and hand only those to `refuse`, so one odd row cannot hold back the others. Other errors propagate."""
    try:
        return write_batch(con, batch, refresh=refresh)
    except Exception as exc:
        if not is_data_error(exc):
            raise
        if len(batch) == 1:
            refuse(batch[0], first_line(exc))
            return 0
        middle = len(batch) // 2
        return write_isolating(con, batch[:middle], refuse, refresh=refresh) + write_isolating(
            con, batch[middle:], refuse, refresh=refresh
        )
