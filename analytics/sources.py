"""Where analytics read from: the local DuckDB file, or a lake of Parquet exported by many proxies."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from analytics.db import AnalyticsError, first_line, reading
from analytics.lake import lake_connection


@contextmanager
def source_connection(db_path: Path | str, lake: Path | str | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only view of the traffic with `interactions`, `choices` and the documented views: the lake's
    when `lake` is given, else the database's. duckdb errors become AnalyticsError."""
    if lake is None:
        with reading(db_path) as con:
            yield con
        return
    con = lake_connection(lake)
    try:
        yield con
    except duckdb.Error as exc:
        raise AnalyticsError(first_line(exc)) from None
    finally:
        con.close()
