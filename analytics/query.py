"""What the analytics commands call: run SQL, summary stats, import cassettes, export Parquet (render.py prints).

Each function takes a database path and returns plain values; failures the user should see are
`AnalyticsError` with a one-line message. Reading opens the file read-only for the duration of one call
(see db.py), so these work while a proxy records into the same file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any, NamedTuple

import pyarrow as pa

from analytics.db import AnalyticsError, reading, writing
from analytics.render import FORMATS, JSONText, render
from analytics.rows import interaction_rows
from analytics.schema import errors_sql, finish_reasons_sql, latency_sql, usage_by_day_sql, usage_by_model_sql
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


class Section(NamedTuple):
    title: str
    columns: list[str]
    rows: list[tuple[Any, ...]]


@dataclass
class ImportReport:
    imported: int = 0
    skipped_existing: int = 0
    bad: list[BadCassette] = field(default_factory=list)


@dataclass(frozen=True)
class ExportReport:
    interactions: int
    choices: int


# --- SQL ---


def _arrow_rows(table: Any, types: Sequence[str]) -> list[tuple[Any, ...]]:
    columns: list[list[Any]] = []
    for column, kind in zip(table.columns, types, strict=True):
        values = column.to_pylist()
        if kind == "JSON":
            values = [None if value is None else JSONText(value) for value in values]
        columns.append(values)
    return list(zip(*columns, strict=True)) if columns else []


def run_sql(db_path: Path | str, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run SQL (several statements: the last one's result) on a read-only connection; return columns, rows.
    Values of JSON-typed columns come back as JSONText."""
    if not sql.strip():
        raise AnalyticsError("empty query")
    with reading(db_path) as con:
        relation = con.sql(sql)
        if relation is None:
            return [], []
        columns = list(relation.columns)
        types = [str(kind) for kind in relation.types]
        try:
            table = relation.to_arrow_table()
            return columns, _arrow_rows(table, types)
        except pa.ArrowException as exc:
            raise AnalyticsError(f"cannot convert the result: {exc}") from None


# --- stats ---

_TOTALS_SQL = """
SELECT count(*) AS requests,
    count(*) FILTER (WHERE status >= 400 OR error IS NOT NULL) AS errors,
    count(*) FILTER (WHERE status BETWEEN 400 AND 499) AS status_4xx,
    count(*) FILTER (WHERE status >= 500 OR status < 100) AS status_5xx_or_none,
    count(*) FILTER (WHERE incomplete) AS incomplete,
    count(*) FILTER (WHERE stream) AS streams,
    count(*) FILTER (WHERE stream AND usage_missing) AS streams_without_usage
FROM {source}"""

_TOP_ERRORS_SQL = """
SELECT status, coalesce(error, incomplete_reason, '(no message)') AS error, count(*) AS count
FROM ({errors})
GROUP BY ALL
ORDER BY count DESC, status, error
LIMIT 10"""


def stats(db_path: Path | str, since: datetime | None = None) -> list[Section]:
    """The `proxy stats` summary, over interactions recorded at or after `since` (UTC when naive)."""
    source, params = "interactions", []
    if since is not None:
        if since.tzinfo is not None:
            since = since.astimezone(UTC).replace(tzinfo=None)
        source, params = "(SELECT * FROM interactions WHERE recorded_at >= ?)", [since]
    queries = [
        ("Requests and tokens by model", usage_by_model_sql(source)),
        ("Requests and tokens by day (UTC)", usage_by_day_sql(source)),
        ("Finish reasons", finish_reasons_sql(source)),
        ("Latency and time to first byte, ms (successful responses)", latency_sql(source)),
        ("Errors and incomplete", _TOTALS_SQL.format(source=source)),
        ("Most frequent errors", _TOP_ERRORS_SQL.format(errors=errors_sql(source))),
    ]
    sections = []
    with reading(db_path) as con:
        for title, sql in queries:
            cursor = con.execute(sql, params)
            columns = [item[0] for item in cursor.description or []]
            sections.append(Section(title, columns, cursor.fetchall()))
    return sections


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
        inserted = write_isolating(con, batch, refuse)
    return inserted, refused


def import_directory(db_path: Path | str, cassette_dir: Path | str, batch_size: int = 5000) -> ImportReport:
    """Add every cassette under cassette_dir (recursively) to the database, creating it if needed.
    Interactions already stored (by id) are skipped, so importing twice adds nothing. Unreadable cassettes,
    and rows the database refuses, are returned in `bad` rather than raised.

    Parsing is a plain loop (JSON and pydantic hold the GIL, so parsing threads only contend); each batch
    is inserted in a second thread while the next one is parsed (DuckDB releases the GIL)."""
    root = Path(cassette_dir)
    if not root.is_dir():
        raise AnalyticsError(f"cassette directory not found: {root}")
    with writing(db_path):
        pass  # create the database (and check it can be written) before any parsing
    report = ImportReport()
    prefix = str(root) + os.sep
    paths = iter_cassette_paths(root)

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
                    batch.append(interaction_rows(load_cassette(path), _relative(path, prefix)))
                except CassetteError as exc:
                    report.bad.append(BadCassette(path, str(exc)))
            if previous is not None:
                account(*previous)
            previous = (inserter.submit(_insert, db_path, root, batch), len(batch))
        if previous is not None:
            account(*previous)
    return report


def _sql_string(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def export_parquet(db_path: Path | str, out_dir: Path | str) -> ExportReport:
    """Write OUT/interactions/day=YYYY-MM-DD/*.parquet and OUT/choices/day=.../*.parquet (each choice under
    its interaction's day), replacing an earlier export there. Read back with
    `read_parquet('OUT/interactions/**/*.parquet', hive_partitioning=true)`."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AnalyticsError(f"cannot create {out}: {exc.strerror or exc}") from None
    options = "(FORMAT parquet, PARTITION_BY (day), OVERWRITE)"
    interactions_sql = "SELECT *, CAST(recorded_at AS DATE) AS day FROM interactions"
    choices_sql = (
        "SELECT c.*, CAST(i.recorded_at AS DATE) AS day "
        "FROM choices AS c LEFT JOIN interactions AS i ON c.interaction_id = i.id"
    )
    counts = []
    with reading(db_path) as con:
        for name, sql in (("interactions", interactions_sql), ("choices", choices_sql)):
            row = con.execute(f"COPY ({sql}) TO {_sql_string(out / name)} {options}").fetchone()
            counts.append(int(row[0]) if row else 0)
    return ExportReport(interactions=counts[0], choices=counts[1])
