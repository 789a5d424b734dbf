"""Merging the small row groups a writer leaves behind into larger ones, once it is done writing.

Every read-write connection appends in row groups of WRITER_ROW_GROUP_SIZE rows (db.py says why: under load,
a checkpoint that grows a large row group rewrites it whole, and that was the recording worker's peak). Scans
pay per row group, though: over a million rows in 4,096-row groups, `proxy stats` took 0.40 s against 0.33 s
in larger ones, and the file was twice as large. So when a writer is done (the recording worker going idle or
stopping, `proxy import` at its end), the small groups at the end of each table are merged.

DuckDB does the merging itself: a full checkpoint vacuums adjacent row groups that fit into fewer of the
connection's row-group size (tables without an index only, which is why `interactions` has no key). Two
things make it happen here: a connection attached with COMPACT_ROW_GROUP_SIZE, and a change to the catalog,
since a checkpoint with nothing to write skips the tables. Measured on this 2-core machine, after 120,000 new
rows in small groups on top of a million merged ones: 0.6-0.9 s of CPU and 33 MB above the process's own size
for a moment; a million rows at once (a database from before this module) took 3.7 s and 55 MB.
"""

from __future__ import annotations

import logging
from pathlib import Path

import duckdb

from analytics.db import connect, first_line, is_lock_conflict

log = logging.getLogger("proxy.analytics")

# Larger groups scan a little faster but cost more to merge into: each merge holds its target group in memory,
# and the groups at a table's end are merged again each time they reach twice the first one's size.
COMPACT_ROW_GROUP_SIZE = 32_768
# Spilled beyond this (into PATH.tmp): with 64 MB the merge above took 68 MB instead of 33, for the same CPU.
COMPACT_MEMORY_LIMIT = "24MB"
# DuckDB merges at most `max_vacuum_tasks` (default 100) row groups per checkpoint, counting each group merged.
_ANY_NUMBER_OF_GROUPS = 1_000_000_000


def compact(db_path: Path | str, timeout: float = 0.5) -> bool:
    """Merge the small row groups at the end of every table of the file; whether it was done. Only an
    optimisation, so it never raises: when another process holds the file, the next compaction merges them;
    any other failure is logged, and the rows stay as they are."""
    path = Path(db_path)
    try:
        con = connect(path, read_only=False, timeout=timeout, announce=False, row_group_size=COMPACT_ROW_GROUP_SIZE)
        try:
            con.execute("SET threads = 1")
            con.execute(f"SET memory_limit = '{COMPACT_MEMORY_LIMIT}'")
            con.execute(f"SET max_vacuum_tasks = {_ANY_NUMBER_OF_GROUPS}")
            con.execute("CREATE OR REPLACE TABLE _compaction (x INTEGER)")
            con.execute("DROP TABLE _compaction")
            con.execute("CHECKPOINT")
        finally:
            con.close()
    except duckdb.Error as exc:
        if not is_lock_conflict(exc):
            log.warning("could not merge the row groups of %s: %s", path, first_line(exc))
        return False
    return True
