"""Writing rows to DuckDB: the batched insert (the proxy's writer is in writer.py).

`write_batch` writes a batch's rows as JSON lines to a temporary file and inserts them with one
`INSERT ... SELECT FROM read_json(...)` per table, skipping interactions whose id is already stored (so
replaying a batch or importing twice adds nothing). It used to go through Arrow tables: JSON lines cost the
same CPU per row (json.dumps is C, DuckDB's reader is fast), and the recording worker no longer imports
pyarrow, about 30 MB of its memory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime

import duckdb

from analytics.db import first_line
from analytics.rows import Row
from analytics.schema import CHOICE_COLUMNS, INTERACTION_COLUMNS, V2_INTERACTION_COLUMNS

log = logging.getLogger("proxy.analytics")

RowSet = tuple[Row, list[Row]]  # one interaction row and its choice rows
Columns = tuple[tuple[str, str], ...]

# JSON columns travel as their text; the insert casts them, which checks that they are JSON.
_READ_TYPES = {"JSON": "VARCHAR"}
# DuckDB's JSON reader sizes its buffer from the largest object it may meet (16 MB by default, and it
# allocates twice that): the batch's longest line is known, so the buffer is that, with a floor.
_MIN_OBJECT_SIZE = 1 << 16


def _timestamp_text(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot store {type(value).__name__} in a row")


def _doubles(columns: Columns) -> tuple[str, ...]:
    return tuple(name for name, kind in columns if kind == "DOUBLE")


def _finite(row: Row, doubles: tuple[str, ...]) -> Row:
    """JSON has no NaN or infinity: such a figure is stored as NULL (unknown) rather than refusing the row."""
    for name in doubles:
        value = row.get(name)
        if isinstance(value, float) and not math.isfinite(value):
            row = {**row, name: None}
    return row


@contextlib.contextmanager
def _json_lines(rows: Sequence[Row], columns: Columns) -> Iterator[str]:
    """A read_json source over the rows, written to a temporary JSON-lines file that is removed afterwards."""
    doubles = _doubles(columns)
    fd, path = tempfile.mkstemp(prefix="proxy-rows-", suffix=".jsonl")
    try:
        longest = 0
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            for row in rows:
                line = json.dumps(_finite(row, doubles), default=_timestamp_text, allow_nan=False)
                longest = max(longest, len(line))
                handle.write(line + "\n")
        yield _source(columns, path, longest)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _source(columns: Columns, path: str, longest: int) -> str:
    """A read_json call that reads the file with the table's column types (JSON columns as text)."""
    types = ", ".join(f"'{name}': '{_READ_TYPES.get(kind, kind)}'" for name, kind in columns)
    quoted = path.replace("'", "''")
    size = max(_MIN_OBJECT_SIZE, longest + 1024)
    return f"read_json('{quoted}', format = 'newline_delimited', columns = {{{types}}}, maximum_object_size = {size})"


def _insert_sql(table: str, columns: Columns, source: str) -> str:
    names = ", ".join(f'"{name}"' for name, _ in columns)
    return f"INSERT INTO {table} ({names}) SELECT {names} FROM {source}"


def _insert_new_sql(source: str, rows: Sequence[Row], just_recorded: bool) -> tuple[str, list[datetime]]:
    """The insert of the interactions not already stored, and its parameters. The table has no key (an index
    over every id grew with it, schema.drop_interactions_key), so the ids are looked for in the table.

    For `just_recorded` rows (the proxy's writer), only among the rows recorded within the batch's span of
    recorded_at, which DuckDB's per-row-group min/max narrow to the last few row groups: such a row is stored
    already only when its batch is written twice (after a recording worker died), with the same values. Rows
    from anywhere else (`proxy import` of cassettes, which may have been edited) are looked for everywhere."""
    stamps = [row["recorded_at"] for row in rows]
    span: list[datetime] = []
    same = "i.id = b.id"
    if just_recorded and all(isinstance(stamp, datetime) for stamp in stamps):
        span = [min(stamps), max(stamps)]
        same += " AND i.recorded_at BETWEEN ? AND ?"
    return (
        _insert_sql("interactions", INTERACTION_COLUMNS, source)
        + f" AS b WHERE NOT EXISTS (SELECT 1 FROM interactions AS i WHERE {same}) RETURNING id",
        span,
    )


def _refresh_sql(source: str) -> str:
    """`proxy import` over interactions already stored: fill the columns derived since (cost, tags, timings)
    from the cassettes, the source of truth, so old rows get them and costs follow the current prices."""
    assignments = ", ".join(f'"{name}" = b."{name}"' for name, _ in V2_INTERACTION_COLUMNS)
    return f"UPDATE interactions SET {assignments} FROM {source} AS b WHERE interactions.id = b.id"


def write_batch(
    con: duckdb.DuckDBPyConnection, batch: Sequence[RowSet], *, refresh: bool = False, just_recorded: bool = False
) -> int:
    """Insert in one transaction; interactions already stored (by id) are skipped with their choices (with
    `refresh`, their derived columns are updated from the new rows). `just_recorded`: rows the proxy just
    recorded, which can only be stored already with the same recorded_at (see _insert_new_sql). Returns how
    many were inserted."""
    unique: dict[str, RowSet] = {}
    for rowset in batch:
        unique.setdefault(rowset[0]["id"], rowset)
    if not unique:
        return 0
    rows = [row for row, _ in unique.values()]
    with _json_lines(rows, INTERACTION_COLUMNS) as source:
        con.begin()
        try:
            insert, window = _insert_new_sql(source, rows, just_recorded)
            inserted = {row[0] for row in con.execute(insert, window).fetchall()}
            choices = [choice for row, rows in unique.values() if row["id"] in inserted for choice in rows]
            if choices:
                with _json_lines(choices, CHOICE_COLUMNS) as choice_source:
                    con.execute(_insert_sql("choices", CHOICE_COLUMNS, choice_source))
            if refresh and len(inserted) < len(unique):
                con.execute(_refresh_sql(source))
            con.commit()
        except BaseException:
            con.rollback()
            raise
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
    just_recorded: bool = False,
) -> int:
    """write_batch; when the database refuses the data itself, halve the batch until the bad rows are found
    and hand only those to `refuse`, so one odd row cannot hold back the others. Other errors propagate."""
    try:
        return write_batch(con, batch, refresh=refresh, just_recorded=just_recorded)
    except Exception as exc:
        if not is_data_error(exc):
            raise
        if len(batch) == 1:
            refuse(batch[0], first_line(exc))
            return 0
        middle = len(batch) // 2
        return write_isolating(
            con, batch[:middle], refuse, refresh=refresh, just_recorded=just_recorded
        ) + write_isolating(con, batch[middle:], refuse, refresh=refresh, just_recorded=just_recorded)
