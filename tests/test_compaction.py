"""Small row groups merged once a writer is done (analytics/compaction.py), on real DuckDB files."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from analytics.compaction import COMPACT_ROW_GROUP_SIZE, compact
from analytics.db import WRITER_ROW_GROUP_SIZE, writing
from analytics.query import import_directory
from analytics.rows import interaction_rows
from analytics.store import RowSet, write_batch
from analytics.writer import DuckDBWriter
from tests.test_analytics_store import make_interaction, write_cassettes

# Enough rows for three of the writers' row groups: DuckDB merges the groups at a table's end once there are
# twice the first one's rows.
ROWS = 2 * WRITER_ROW_GROUP_SIZE + 900


def row_groups(db: Path, table: str = "interactions") -> list[int]:
    """The row count of each row group of `table`, in order."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return [
            int(n)
            for (n,) in con.execute(
                "SELECT sum(count) FROM pragma_storage_info(?) WHERE column_path = '[0]' "
                "GROUP BY row_group_id ORDER BY row_group_id",
                [table],
            ).fetchall()
        ]
    finally:
        con.close()


def table_contents(db: Path) -> list[tuple[object, ...]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT * FROM interactions ORDER BY id").fetchall()
    finally:
        con.close()


def rowsets(count: int, start: int = 0) -> list[RowSet]:
    return [interaction_rows(make_interaction(n), f"20261122/{n}.json") for n in range(start, start + count)]


def fill_in_small_groups(db: Path, count: int) -> None:
    """Rows written as the proxy's writer writes them: batches of 1,000, one transaction each."""
    batches = rowsets(count)
    with writing(db) as con:
        for first in range(0, count, 1000):
            write_batch(con, batches[first : first + 1000], just_recorded=True)


def test_compaction_merges_the_small_row_groups_and_keeps_every_row(tmp_path: Path) -> None:
    db = tmp_path / "traffic.duckdb"
    fill_in_small_groups(db, ROWS)
    assert row_groups(db) == [WRITER_ROW_GROUP_SIZE, WRITER_ROW_GROUP_SIZE, 900]
    assert row_groups(db, "choices") == [WRITER_ROW_GROUP_SIZE, WRITER_ROW_GROUP_SIZE, 900]
    before = table_contents(db)

    assert compact(db) is True

    assert row_groups(db) == [ROWS]
    assert row_groups(db, "choices") == [ROWS]
    assert table_contents(db) == before
    con = duckdb.connect(str(db), read_only=True)
    try:  # the table it made to force the checkpoint is gone
        assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = '_compaction'").fetchone() == (0,)
    finally:
        con.close()


def test_merged_groups_are_left_alone_and_new_rows_appended_after_them(tmp_path: Path) -> None:
    assert ROWS < COMPACT_ROW_GROUP_SIZE  # so the merged group has room, and only the rule keeps the ten apart
    db = tmp_path / "traffic.duckdb"
    fill_in_small_groups(db, ROWS)
    compact(db)
    with writing(db) as con:
        write_batch(con, rowsets(10, start=ROWS), just_recorded=True)
    assert row_groups(db) == [ROWS, 10]
    compact(db)  # ten rows are not worth rewriting the group before them
    assert row_groups(db) == [ROWS, 10]


def test_a_busy_file_is_left_for_the_next_compaction(tmp_path: Path) -> None:
    db = tmp_path / "traffic.duckdb"
    fill_in_small_groups(db, ROWS)
    reader = duckdb.connect(str(db), read_only=True)  # in this process: the other mode is refused
    try:
        assert compact(db, timeout=0.2) is False
    finally:
        reader.close()
    assert len(row_groups(db)) == 3


async def test_the_proxys_writer_merges_what_it_wrote_when_it_closes(tmp_path: Path) -> None:
    db = tmp_path / "traffic.duckdb"
    writer = DuckDBWriter(db, flush_interval=0.05)
    writer.start()
    for n in range(ROWS):
        writer.submit(make_interaction(n), f"20261122/{n}.json")
    writer.close()
    assert (writer.rows_written, writer.write_errors) == (ROWS, 0)
    assert row_groups(db) == [ROWS]


def test_an_import_merges_the_groups_at_its_end(tmp_path: Path) -> None:
    db = tmp_path / "traffic.duckdb"
    fill_in_small_groups(db, 2 * WRITER_ROW_GROUP_SIZE)
    cassettes = tmp_path / "cassettes"
    write_cassettes(cassettes, [make_interaction(n) for n in range(ROWS, ROWS + 3)])
    assert len(row_groups(db)) == 2

    report = import_directory(db, cassettes)

    assert report.imported == 3
    assert row_groups(db) == [2 * WRITER_ROW_GROUP_SIZE + 3]


def test_a_file_that_cannot_be_merged_is_reported_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    not_a_database = tmp_path / "traffic.duckdb"
    not_a_database.write_text("not a database")
    assert compact(not_a_database) is False
    assert "could not merge the row groups" in caplog.text
