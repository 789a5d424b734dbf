"""What the analytics commands call: run SQL, import cassettes; stats (stats.py) and the lake (lake.py) beside.

Each function takes a database path and returns plain values; failures the user should see are
`AnalyticsError` with a one-line message. Reading opens the file read-only for the duration of one call
(see db.py), so these work while a proxy records into the same file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from analytics.compaction import compact
from analytics.db import LOCK_TIMEOUT, AnalyticsError, writing
from analytics.lake import ExportReport, export_parquet
from analytics.pricing import PriceTable
from analytics.render import FORMATS, JSONText, render
from analytics.rows import default_prices, interaction_rows
from analytics.sources import source_connection
from analytics.stats import Section, stats
from analytics.store import RowSet, write_isolating
from proxy.cassettes import BadCassette, CassetteError, iter_cassette_paths, load_cassette

__all__ = [
    "FORMATS",
    "AnalyticsError",
    "ExportReport",
    "ImportReport",
    "JSONText",
    "Section",
    "export_parquet",
    "import_directory",
    "render",
    "run_sql",
    "stats",
]


@dataclass
class ImportReport:
    imported: int = 0
    skipped_existing: int = 0
    bad: list[BadCassette] = field(default_factory=list)


# --- SQL ---


def _arrow_rows(table: Any, types: Sequence[str]) -> list[tuple[Any, ...]]:
    columns: list[list[Any]] = []
    for column, kind in zip(table.columns, types, strict=True):
        values = column.to_pylist()
        if kind == "JSON":
            values = [None if value is None else JSONText(value) for value in values]
        columns.append(values)
    return list(zip(*columns, strict=True)) if columns else []


def run_sql(db_path: Path | str, sql: str, lake: Path | str | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run SQL (several statements: the last one's result) on a read-only connection to the database, or to
    the lake when `lake` is given; return columns, rows. Values of JSON-typed columns come back as JSONText."""
    if not sql.strip():
        raise AnalyticsError("empty query")
    with source_connection(db_path, lake) as con:
        try:
            relation = con.sql(sql)
            if relation is None:
                return [], []
            columns = list(relation.columns)
            types = [str(kind) for kind in relation.types]
            table = relation.to_arrow_table()
        except duckdb.Error as exc:
            # DuckDB's whole message: its hints (`Did you mean "interactions"?`, candidate columns, the caret
            # under a syntax error) are on the lines after the first.
            raise AnalyticsError(str(exc).strip() or type(exc).__name__) from None
        try:
            return columns, _arrow_rows(table, types)
        except pa.ArrowException as exc:
            raise AnalyticsError(f"cannot convert the result: {exc}") from None


# --- import and export ---


def _relative(path: Path, prefix: str) -> str:
    """path relative to the directory whose str() + os.sep is prefix (string slicing: import is hot)."""
    text = str(path)
    return text[len(prefix) :] if text.startswith(prefix) else text


def _insert(db_path: Path | str, root: Path, batch: list[RowSet]) -> tuple[int, list[BadCassette]]:
    """Insert one parsed batch, holding the file only for that (a recording proxy can write in between).
    Returns how many were inserted, and the cassettes whose rows the database refused."""
    refused: list[BadCassette] = []

    def refuse(rowset: RowSet, reason: str) -> None:
        refused.append(BadCassette(root / rowset[0]["cassette"], f"database refused it: {reason}"))

    with writing(db_path) as con:
        inserted = write_isolating(con, batch, refuse, refresh=True)
    return inserted, refused


def cassette_root(path: Path) -> Path:
    """The cassette directory a cassette file belongs to: above its day folder (YYYYMMDD) if it is in one."""
    parent = path.parent
    is_day = len(parent.name) == 8 and parent.name.isdigit()
    return parent.parent if is_day else parent


def import_directory(
    db_path: Path | str, cassette_dir: Path | str, batch_size: int = 5000, prices: PriceTable | None = None
) -> ImportReport:
    """Add every cassette under cassette_dir (recursively), or the one cassette file it names, to the database,
    creating it if needed.
    Interactions already stored (by id) are not added again, so importing twice adds nothing; their derived
    columns (cost with `prices`, tags, timings) are refreshed from the cassette, which fills them in for rows
    written before those columns existed. Unreadable cassettes, and rows the database refuses, are returned
    in `bad` rather than raised.

    Parsing is a plain loop (JSON and pydantic hold the GIL, so parsing threads only contend); each batch
    is inserted in a second thread while the next one is parsed (DuckDB releases the GIL). At the end, the
    small row groups the batches went in as are merged (compaction.py)."""
    root = Path(cassette_dir)
    paths: Iterator[Path]
    if root.is_file():  # one cassette: its directory is above its day folder, as `proxy record` writes them
        paths, root = iter([root]), cassette_root(root)
    elif root.is_dir():
        paths = iter_cassette_paths(root)
    else:
        raise AnalyticsError(f"cassette directory not found: {root}")
    with writing(db_path):
        pass  # create the database (and check it can be written) before any parsing
    report = ImportReport()
    table = prices if prices is not None else default_prices()
    prefix = str(root) + os.sep

    def account(pending: Future[tuple[int, list[BadCassette]]], size: int) -> None:
        inserted, refused = pending.result()
        report.imported += inserted
        report.skipped_existing += size - inserted - len(refused)
        report.bad.extend(refused)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="duckdb-import") as inserter:
        previous: tuple[Future[tuple[int, list[BadCassette]]], int] | None = None
        while chunk := list(islice(paths, batch_size)):
            batch: list[RowSet] = []
            for path in chunk:
                try:
                    batch.append(interaction_rows(load_cassette(path), _relative(path, prefix), table))
                except CassetteError as exc:
                    report.bad.append(BadCassette(path, str(exc)))
            if previous is not None:
                account(*previous)
            previous = (inserter.submit(_insert, db_path, root, batch), len(batch))
        if previous is not None:
            account(*previous)
    if report.imported:
        compact(db_path, timeout=LOCK_TIMEOUT)
    return report
