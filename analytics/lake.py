"""One lake for many proxies: incremental Parquet export, and a DuckDB connection over such a folder.

Export (`proxy export --format parquet DIR`) writes only the interactions this database has not exported
to DIR before (the watermark: table `lake_exported`, the ids of each run, listed per directory in
`lake_exports`), as Hive-style partitions by UTC day:

    DIR/interactions/day=YYYY-MM-DD/<host>-<run>-<uuid>.parquet
    DIR/choices/day=YYYY-MM-DD/<host>-<run>-<uuid>.parquet      (each choice under its interaction's day)

`<host>` is a short hash of the machine's name and `<run>` a new uuid per run, so any number of proxies can
export into one shared folder (or a folder synced to object storage) and no file is ever overwritten. Types
are what other engines expect: `recorded_at` a timestamp with time zone (UTC), integers stay integers (NULLs
kept), JSON columns UTF-8 strings.

`lake_connection(DIR)` is an in-memory DuckDB with `interactions` and `choices` views over those files (the
same columns and types as the local tables; columns that older exports lack read as NULL) and the same
documented views, so `proxy sql --lake`, `stats --lake` and `report --lake` run unchanged.
"""

from __future__ import annotations

import hashlib
import socket
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from analytics.db import AnalyticsError, first_line, writing
from analytics.schema import CHOICE_COLUMNS, INTERACTION_COLUMNS
from analytics.views import VIEWS, VIEWS_V2

_JSON_COLUMNS = {name for name, kind in INTERACTION_COLUMNS if kind == "JSON"}


@dataclass(frozen=True)
class ExportReport:
    interactions: int
    choices: int
    run_id: str | None  # None when there was nothing new to export


def machine_tag() -> str:
    """A short, stable hash of this machine's name: unique per machine without publishing the name."""
    return hashlib.sha256(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:12]


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _export_select() -> str:
    parts = []
    for name, kind in INTERACTION_COLUMNS:
        if name == "recorded_at":
            parts.append("CAST(i.recorded_at AS TIMESTAMPTZ) AS recorded_at")  # the session is in UTC
        elif kind == "JSON":
            parts.append(f'CAST(i."{name}" AS VARCHAR) AS "{name}"')
        else:
            parts.append(f'i."{name}"')
    return ", ".join(parts)


def export_parquet(db_path: Path | str, out_dir: Path | str) -> ExportReport:
    """Append what is new since the last export into OUT (see the module doc); returns what was written."""
    if not Path(db_path).exists():
        raise AnalyticsError(f"database not found: {db_path}")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for table in ("interactions", "choices"):
            (out / table).mkdir(exist_ok=True)
    except OSError as exc:
        raise AnalyticsError(f"cannot create {out}: {exc.strerror or exc}") from None
    directory = str(out.resolve())
    run_id = uuid.uuid4().hex
    pattern = f"{machine_tag()}-{run_id[:12]}-{{uuid}}"
    options = f"(FORMAT parquet, PARTITION_BY (day), FILENAME_PATTERN {_quote(pattern)}, APPEND)"
    with writing(db_path) as con:
        con.execute("SET TimeZone = 'UTC'")
        con.execute(
            "CREATE TEMP TABLE _export_ids AS SELECT id FROM interactions WHERE id NOT IN "
            "(SELECT e.id FROM lake_exported AS e JOIN lake_exports AS r USING (run_id) WHERE r.directory = ?)",
            [directory],
        )
        try:
            row = con.execute("SELECT count(*) FROM _export_ids").fetchone()
            if not row or not row[0]:
                return ExportReport(0, 0, None)
            interactions_sql = (
                f"SELECT {_export_select()}, CAST(i.recorded_at AS DATE) AS day "
                "FROM interactions AS i SEMI JOIN _export_ids AS x ON i.id = x.id"
            )
            choice_names = ", ".join(f'c."{name}"' for name, _ in CHOICE_COLUMNS)
            choices_sql = (
                f"SELECT {choice_names}, CAST(i.recorded_at AS DATE) AS day FROM choices AS c "
                "JOIN interactions AS i ON c.interaction_id = i.id SEMI JOIN _export_ids AS x ON i.id = x.id"
            )
            counts = []
            for name, sql in (("interactions", interactions_sql), ("choices", choices_sql)):
                written = con.execute(f"COPY ({sql}) TO {_quote(str(out / name))} {options}").fetchone()
                counts.append(int(written[0]) if written else 0)
            con.begin()
            con.execute("INSERT INTO lake_exported SELECT id, ? FROM _export_ids", [run_id])
            con.execute(
                "INSERT INTO lake_exports VALUES (?, ?, ?, ?, ?)",
                [run_id, datetime.now(UTC).replace(tzinfo=None), directory, counts[0], counts[1]],
            )
            con.commit()
        finally:
            con.execute("DROP TABLE IF EXISTS _export_ids")
    return ExportReport(interactions=counts[0], choices=counts[1], run_id=run_id)


# --- reading a lake ---


def _parquet_source(root: Path, table: str) -> str:
    glob = _quote(str(root / table / "**" / "*.parquet"))
    return f"read_parquet({glob}, hive_partitioning = true, union_by_name = true)"


def _view_select(con: duckdb.DuckDBPyConnection, source: str, columns: tuple[tuple[str, str], ...]) -> str:
    present = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
    parts = []
    for name, kind in columns:
        if name not in present:
            parts.append(f'CAST(NULL AS {kind}) AS "{name}"')
        elif name == "recorded_at":
            parts.append("CAST(recorded_at AS TIMESTAMP) AS recorded_at")  # UTC session: naive UTC, as locally
        else:
            parts.append(f'CAST("{name}" AS {kind}) AS "{name}"')
    return f"SELECT {', '.join(parts)} FROM {source}"


def lake_connection(lake_dir: Path | str) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB whose `interactions`, `choices` and documented views read the lake's Parquet."""
    root = Path(lake_dir)
    if not any((root / "interactions").glob("**/*.parquet")):
        raise AnalyticsError(f"no Parquet files under {root / 'interactions'} (export with `proxy export`)")
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute(
            "CREATE VIEW interactions AS "
            + _view_select(con, _parquet_source(root, "interactions"), INTERACTION_COLUMNS)
        )
        if any((root / "choices").glob("**/*.parquet")):
            con.execute("CREATE VIEW choices AS " + _view_select(con, _parquet_source(root, "choices"), CHOICE_COLUMNS))
        else:
            empty = ", ".join(f'CAST(NULL AS {kind}) AS "{name}"' for name, kind in CHOICE_COLUMNS)
            con.execute(f"CREATE VIEW choices AS SELECT {empty} WHERE false")
        for name, (body, _) in {**VIEWS, **VIEWS_V2}.items():
            con.execute(f"CREATE VIEW {name} AS {body('interactions')}")
    except duckdb.Error as exc:
        con.close()
        raise AnalyticsError(f"cannot read the lake {root}: {first_line(exc)}") from None
    return con
