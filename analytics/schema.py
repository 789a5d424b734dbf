"""The database schema: tables, documented views, and the migrations that build them, applied on open.

Migrations are small named functions applied in list order, each in its own transaction, and recorded in
`schema_migrations (name, applied_at)`; a database already at the newest schema costs one query. To change
the schema, append a function; never edit one that has shipped.

The views (their SQL is in views.py) are what users query directly (`proxy sql "SELECT * FROM usage_by_model"`);
each carries a comment (`SELECT view_name, comment FROM duckdb_views() WHERE NOT internal`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import duckdb

from analytics.views import VIEWS, VIEWS_V2

# The `interactions` table, in column order. The arrow schema (store.py) and the rows (rows.py) follow it.
# The first table (create_interactions); later columns are added by later migrations, at the end.
V1_INTERACTION_COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "VARCHAR"),
    ("recorded_at", "TIMESTAMP"),  # UTC
    ("method", "VARCHAR"),
    ("path", "VARCHAR"),
    ("status", "INTEGER"),
    ("stream", "BOOLEAN"),
    ("model", "VARCHAR"),  # from the response, else the request
    ("completion_id", "VARCHAR"),
    ("prompt_tokens", "BIGINT"),
    ("completion_tokens", "BIGINT"),
    ("total_tokens", "BIGINT"),
    ("cached_tokens", "BIGINT"),
    ("reasoning_tokens", "BIGINT"),
    ("finish_reason", "VARCHAR"),  # of choice 0
    ("n_choices", "INTEGER"),
    ("latency_ms", "DOUBLE"),
    ("ttfb_ms", "DOUBLE"),
    ("incomplete", "BOOLEAN"),
    ("usage_missing", "BOOLEAN"),
    ("error", "VARCHAR"),  # the proxy's error, else the upstream's error message
    ("cassette", "VARCHAR"),  # relative to the cassette directory when known
    ("upstream", "VARCHAR"),
    ("request", "JSON"),
    ("response", "JSON"),  # the body; for a stream, the reassembled ChatCompletion
    ("incomplete_reason", "VARCHAR"),
)

# Added by add_cost_tags_timing (issue 15).
V2_INTERACTION_COLUMNS: tuple[tuple[str, str], ...] = (
    ("requested_model", "VARCHAR"),  # the request's `model`
    ("user", "VARCHAR"),  # the request's `user`, else its `safety_identifier`
    ("metadata", "JSON"),  # the request's `metadata` object
    ("tags", "JSON"),  # {name: value} from X-Proxy-Tag-<name> request headers
    ("cost_usd", "DOUBLE"),  # NULL when the model has no price or there is no usage
    ("ttft_ms", "DOUBLE"),  # streams: request sent upstream to the first chunk with content/tool call/refusal
    ("output_tokens_per_s", "DOUBLE"),  # completion tokens over the time after the first token
    ("chunks", "INTEGER"),  # streams: chat.completion.chunk events
    ("max_chunk_gap_ms", "DOUBLE"),  # streams: longest wait between two chunks
)

INTERACTION_COLUMNS = V1_INTERACTION_COLUMNS + V2_INTERACTION_COLUMNS

CHOICE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("interaction_id", "VARCHAR"),
    ("index", "INTEGER"),
    ("finish_reason", "VARCHAR"),
    ("tool_calls", "INTEGER"),
    ("content_chars", "INTEGER"),
    ("refusal", "BOOLEAN"),
)

INTERACTION_NAMES = tuple(name for name, _ in INTERACTION_COLUMNS)
CHOICE_NAMES = tuple(name for name, _ in CHOICE_COLUMNS)

Connection = duckdb.DuckDBPyConnection


# --- migrations ---


def _comment(con: Connection, target: str, text: str) -> None:
    quoted = text.replace("'", "''")
    con.execute(f"COMMENT ON {target} IS '{quoted}'")


def create_interactions(con: Connection) -> None:
    columns = ",\n    ".join(f"{name} {kind}" for name, kind in V1_INTERACTION_COLUMNS)
    con.execute(f"CREATE TABLE interactions (\n    {columns},\n    PRIMARY KEY (id)\n)")
    _comment(con, "TABLE interactions", "One row per recorded request/response pair (one cassette).")


def create_choices(con: Connection) -> None:
    columns = ",\n    ".join(f"{name} {kind}" for name, kind in CHOICE_COLUMNS)
    con.execute(f"CREATE TABLE choices (\n    {columns}\n)")
    _comment(con, "TABLE choices", "One row per choice of a chat completion; joins interactions.id.")


def create_views(con: Connection) -> None:
    for name, (body, comment) in VIEWS.items():
        con.execute(f"CREATE OR REPLACE VIEW {name} AS {body('interactions')}")
        _comment(con, f"VIEW {name}", comment)


def add_cost_tags_timing(con: Connection) -> None:
    for name, kind in V2_INTERACTION_COLUMNS:
        con.execute(f'ALTER TABLE interactions ADD COLUMN "{name}" {kind}')


def create_views_v2(con: Connection) -> None:
    for name, (body, comment) in VIEWS_V2.items():
        con.execute(f"CREATE OR REPLACE VIEW {name} AS {body('interactions')}")
        _comment(con, f"VIEW {name}", comment)


def create_lake_exports(con: Connection) -> None:
    """What `proxy export --format parquet` has written: one row per run, and the ids it exported (the
    watermark: the next run into the same directory writes only interactions not listed for it)."""
    con.execute(
        "CREATE TABLE lake_exports (run_id VARCHAR PRIMARY KEY, exported_at TIMESTAMP, directory VARCHAR, "
        "interactions BIGINT, choices BIGINT)"
    )
    con.execute("CREATE TABLE lake_exported (id VARCHAR, run_id VARCHAR)")
    _comment(con, "TABLE lake_exports", "One row per `proxy export --format parquet` run that wrote something.")
    _comment(con, "TABLE lake_exported", "The interactions already exported to a lake, by id, with the run.")


def drop_interactions_key(con: Connection) -> None:
    """The table again, without its primary key (DuckDB cannot drop a constraint). The key's index grew with
    the table, in the file and in the writer's memory. Measured in-process, 160,000 recordings written in
    batches of 1,000: the file 29.6 -> 11.5 MB, the writer's peak 74 -> 56 MB (it had grown by about 2.5 MB
    per 20,000 rows), its CPU 11.6 -> 9.9 s. Ids stay unique: write_batch inserts only interactions not
    already stored (store.py)."""
    con.execute("CREATE TABLE interactions_unkeyed AS SELECT * FROM interactions")
    con.execute("DROP TABLE interactions")
    con.execute("ALTER TABLE interactions_unkeyed RENAME TO interactions")
    _comment(con, "TABLE interactions", "One row per recorded request/response pair (one cassette).")


MIGRATIONS: list[Callable[[Connection], None]] = [
    create_interactions,
    create_choices,
    create_views,
    add_cost_tags_timing,
    create_views_v2,
    create_lake_exports,
    drop_interactions_key,
]


def pending_migrations(con: Connection) -> list[str]:
    """Names of the migrations not yet applied; works on a read-only connection."""
    exists = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'schema_migrations' AND schema_name = 'main'"
        " AND database_name = current_database()"
    ).fetchone()
    applied: set[str] = set()
    if exists is not None and exists[0]:
        applied = {row[0] for row in con.execute("SELECT name FROM schema_migrations").fetchall()}
    return [migration.__name__ for migration in MIGRATIONS if migration.__name__ not in applied]


def apply_migrations(con: Connection) -> list[str]:
    """Apply every pending migration, each in a transaction with its record; return the names applied."""
    con.execute("CREATE TABLE IF NOT EXISTS schema_migrations (name VARCHAR PRIMARY KEY, applied_at TIMESTAMP)")
    pending = set(pending_migrations(con))
    applied: list[str] = []
    for migration in MIGRATIONS:
        if migration.__name__ not in pending:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            migration(con)
            con.execute(
                "INSERT INTO schema_migrations VALUES (?, ?)",
                [migration.__name__, datetime.now(UTC).replace(tzinfo=None)],
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        applied.append(migration.__name__)
    return applied
