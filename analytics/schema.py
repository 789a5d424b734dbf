"""The database schema: tables, documented views, and the migrations that build them, applied on open.

Migrations are small named functions applied in list order, each in its own transaction, and recorded in
`schema_migrations (name, applied_at)`; a database already at the newest schema costs one query. To change
the schema, append a function; never edit one that has shipped.

The views are plain SQL that users query directly (`proxy sql "SELECT * FROM usage_by_model"`); each carries
a comment (`SELECT view_name, comment FROM duckdb_views() WHERE NOT internal`). `proxy stats` runs the same
SQL over a time window, so the view bodies are functions of their source relation.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import duckdb

# The `interactions` table, in column order. The arrow schema (store.py) and the rows (rows.py) follow it.
INTERACTION_COLUMNS: tuple[tuple[str, str], ...] = (
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


# --- view bodies: `source` is `interactions` for the views, a filtered subquery for `proxy stats` ---

_TOKEN_SUMS = """
    coalesce(sum(prompt_tokens), 0)::BIGINT AS prompt_tokens,
    coalesce(sum(completion_tokens), 0)::BIGINT AS completion_tokens,
    coalesce(sum(cached_tokens), 0)::BIGINT AS cached_tokens,
    coalesce(sum(reasoning_tokens), 0)::BIGINT AS reasoning_tokens,
    coalesce(sum(total_tokens), 0)::BIGINT AS total_tokens"""


def usage_by_model_sql(source: str = "interactions") -> str:
    return f"""
SELECT coalesce(model, '(unknown)') AS model,
    count(*) AS requests,
    count(*) FILTER (WHERE status >= 400 OR error IS NOT NULL) AS errors,
    count(*) FILTER (WHERE incomplete) AS incomplete,{_TOKEN_SUMS}
FROM {source}
GROUP BY 1
ORDER BY requests DESC, model"""


def usage_by_day_sql(source: str = "interactions") -> str:
    return f"""
SELECT CAST(recorded_at AS DATE) AS day,
    count(*) AS requests,
    count(*) FILTER (WHERE status >= 400 OR error IS NOT NULL) AS errors,{_TOKEN_SUMS}
FROM {source}
GROUP BY 1
ORDER BY day"""


def finish_reasons_sql(source: str = "interactions") -> str:
    return f"""
SELECT coalesce(c.finish_reason, '(none)') AS finish_reason,
    count(*) AS choices,
    round(100.0 * count(*) / sum(count(*)) OVER (), 1) AS percent
FROM choices AS c JOIN {source} AS i ON c.interaction_id = i.id
GROUP BY 1
ORDER BY choices DESC, finish_reason"""


def latency_sql(source: str = "interactions") -> str:
    quantiles = ",\n    ".join(
        f"round(quantile_cont({column}, {q}), 1) AS {label}_p{int(q * 100)}_ms"
        for column, label in (("latency_ms", "latency"), ("ttfb_ms", "ttfb"))
        for q in (0.5, 0.95, 0.99)
    )
    return f"""
SELECT CASE WHEN grouping(model) = 1 THEN '(all)' ELSE coalesce(model, '(unknown)') END AS model,
    count(*) AS requests,
    {quantiles}
FROM {source}
WHERE status BETWEEN 200 AND 399
GROUP BY GROUPING SETS ((), (model))
ORDER BY grouping(model) DESC, requests DESC, model"""


def errors_sql(source: str = "interactions") -> str:
    return f"""
SELECT id, recorded_at, model, status, error, incomplete, incomplete_reason, cassette
FROM {source}
WHERE status >= 400 OR error IS NOT NULL OR incomplete
ORDER BY recorded_at DESC"""


VIEWS: dict[str, tuple[Callable[[str], str], str]] = {
    "usage_by_model": (
        usage_by_model_sql,
        "Requests, errors, incomplete, and token sums (prompt, completion, cached, reasoning, total) per model.",
    ),
    "usage_by_day": (usage_by_day_sql, "Requests, errors and token sums per UTC day."),
    "finish_reasons": (
        finish_reasons_sql,
        "How choices ended: count and percent per finish_reason; (none) is a stream cut before it finished.",
    ),
    "latency": (
        latency_sql,
        "p50/p95/p99 of latency_ms (request sent to last byte) and ttfb_ms (to first byte) for successful "
        "responses (status 200-399), over all models (model = '(all)') and per model.",
    ),
    "errors": (
        errors_sql,
        "Every interaction that failed: upstream status >= 400, a proxy or stream error, or cut short.",
    ),
}


# --- migrations ---


def _comment(con: Connection, target: str, text: str) -> None:
    quoted = text.replace("'", "''")
    con.execute(f"COMMENT ON {target} IS '{quoted}'")


def create_interactions(con: Connection) -> None:
    columns = ",\n    ".join(f"{name} {kind}" for name, kind in INTERACTION_COLUMNS)
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


MIGRATIONS: list[Callable[[Connection], None]] = [
    create_interactions,
    create_choices,
    create_views,
]


def pending_migrations(con: Connection) -> list[str]:
    """Names of the migrations not yet applied; works on a read-only connection."""
    exists = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'schema_migrations' AND schema_name = 'main'"
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
