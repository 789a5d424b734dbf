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


# --- views added with the cost, tag and timing columns (create_views_v2) ---

# an interaction with token counts whose cost is unknown: its model has no price
UNPRICED = "cost_usd IS NULL AND (prompt_tokens IS NOT NULL OR completion_tokens IS NOT NULL)"


def cost_by_model_sql(source: str = "interactions") -> str:
    return f"""
SELECT coalesce(model, '(unknown)') AS model,
    count(*) AS requests,
    count(cost_usd) AS priced,
    count(*) FILTER (WHERE {UNPRICED}) AS unpriced,
    sum(cost_usd) AS cost_usd,{_TOKEN_SUMS}
FROM {source}
GROUP BY 1
ORDER BY cost_usd DESC NULLS LAST, requests DESC, model"""


def unpriced_models_sql(source: str = "interactions") -> str:
    return f"""
SELECT coalesce(model, '(unknown)') AS model, count(*) AS requests,
    coalesce(sum(prompt_tokens), 0)::BIGINT AS prompt_tokens,
    coalesce(sum(completion_tokens), 0)::BIGINT AS completion_tokens
FROM {source}
WHERE {UNPRICED}
GROUP BY 1
ORDER BY requests DESC, model"""


def speed_by_model_sql(source: str = "interactions") -> str:
    return f"""
SELECT coalesce(model, '(unknown)') AS model,
    count(*) AS streams,
    round(quantile_cont(ttft_ms, 0.5), 1) AS ttft_p50_ms,
    round(quantile_cont(ttft_ms, 0.95), 1) AS ttft_p95_ms,
    round(quantile_cont(output_tokens_per_s, 0.5), 1) AS tokens_per_s_p50,
    round(quantile_cont(output_tokens_per_s, 0.95), 1) AS tokens_per_s_p95,
    round(quantile_cont(max_chunk_gap_ms, 0.95), 1) AS max_chunk_gap_p95_ms
FROM {source}
WHERE stream AND status BETWEEN 200 AND 399
GROUP BY 1
ORDER BY streams DESC, model"""


def interaction_tags_sql(source: str = "interactions") -> str:
    return f"""
SELECT id, tag, json_extract_string(tags, '$."' || tag || '"') AS value
FROM (SELECT id, tags, unnest(json_keys(tags)) AS tag FROM {source} WHERE tags IS NOT NULL)"""


VIEWS_V2: dict[str, tuple[Callable[[str], str], str]] = {
    "cost_by_model": (
        cost_by_model_sql,
        "Cost in USD per model: requests, priced, unpriced (token counts but no price: cost_usd is NULL), the "
        "sum of cost_usd (NULL when nothing is priced) and token sums.",
    ),
    "unpriced_models": (
        unpriced_models_sql,
        "Models with token counts but no price (their cost_usd is NULL): add them under [prices] in the config.",
    ),
    "speed_by_model": (
        speed_by_model_sql,
        "For successful streams per model: p50/p95 of ttft_ms (time to first token), output_tokens_per_s, and "
        "the p95 of max_chunk_gap_ms.",
    ),
    "interaction_tags": (
        interaction_tags_sql,
        "One row per tag of an interaction (id, tag, value), from X-Proxy-Tag-<name> request headers; join "
        "interactions on id, or use tags->>'name' directly.",
    ),
}


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


MIGRATIONS: list[Callable[[Connection], None]] = [
    create_interactions,
    create_choices,
    create_views,
    add_cost_tags_timing,
    create_views_v2,
    create_lake_exports,
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
