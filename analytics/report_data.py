"""The numbers behind the report: every aggregate is one DuckDB query, so the page stays small at any size.

`report_data(con, since, until)` returns plain values (lists of tuples and dicts) for report.py to draw:
per-day requests, tokens and cost by model (the top models by requests, the rest as `(other)`), latency and
time-to-first-token percentiles per model, finish reasons, statuses and errors, streams without usage, and
the top-N slowest, costliest and latest failed interactions. No list grows with the traffic except by day.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import duckdb

from analytics.stats import window_source

TOP_MODELS = 8
TOP_N = 20

_DAILY = """
WITH ranked AS (
    SELECT coalesce(model, '(unknown)') AS model, count(*) AS n FROM {source} GROUP BY 1
    ORDER BY n DESC, model LIMIT {top}
)
SELECT strftime(date_trunc('{bucket}', recorded_at), '%Y-%m-%d') AS day,
    CASE WHEN coalesce(i.model, '(unknown)') IN (SELECT model FROM ranked)
        THEN coalesce(i.model, '(unknown)') ELSE '(other)' END AS model,
    count(*) AS requests,
    coalesce(sum(total_tokens), 0)::BIGINT AS tokens,
    sum(cost_usd) AS cost_usd
FROM {source} AS i
GROUP BY 1, 2
ORDER BY 1, 2"""

_PERCENTILES = """
SELECT coalesce(model, '(unknown)') AS model, count(*) AS requests,
    quantile_cont(latency_ms, 0.5) AS latency_p50, quantile_cont(latency_ms, 0.95) AS latency_p95,
    quantile_cont(latency_ms, 0.99) AS latency_p99,
    quantile_cont(ttft_ms, 0.5) AS ttft_p50, quantile_cont(ttft_ms, 0.95) AS ttft_p95,
    quantile_cont(ttft_ms, 0.99) AS ttft_p99,
    quantile_cont(output_tokens_per_s, 0.5) AS tps_p50
FROM {source}
WHERE status BETWEEN 200 AND 399
GROUP BY 1
ORDER BY requests DESC, model
LIMIT {top}"""

_FINISH = """
SELECT coalesce(c.finish_reason, '(none)') AS finish_reason, count(*) AS choices
FROM choices AS c SEMI JOIN {source} AS i ON c.interaction_id = i.id
GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 12"""

_STATUSES = """
SELECT CASE WHEN status IS NULL OR status = 0 THEN 'none' ELSE CAST(status AS VARCHAR) END AS status, count(*) AS n
FROM {source} GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 12"""

_ERRORS = """
SELECT status, coalesce(error, incomplete_reason, '(no message)') AS error, count(*) AS n
FROM {source}
WHERE status >= 400 OR error IS NOT NULL OR incomplete
GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2 LIMIT 10"""

_NO_USAGE = """
SELECT coalesce(model, '(unknown)') AS model, count(*) AS streams,
    count(*) FILTER (WHERE usage_missing) AS without_usage
FROM {source} WHERE stream GROUP BY 1 ORDER BY 3 DESC, 2 DESC, 1 LIMIT {top}"""

_TOTALS = """
SELECT count(*) AS requests, sum(cost_usd) AS cost_usd, coalesce(sum(total_tokens), 0)::BIGINT AS tokens,
    count(*) FILTER (WHERE status >= 400 OR error IS NOT NULL) AS errors,
    count(*) FILTER (WHERE stream AND usage_missing) AS streams_without_usage,
    count(*) FILTER (WHERE cost_usd IS NULL AND (prompt_tokens IS NOT NULL OR completion_tokens IS NOT NULL))
        AS unpriced,
    min(recorded_at) AS first, max(recorded_at) AS last
FROM {source}"""

_TOP_COLUMNS = """id, recorded_at, coalesce(model, '(unknown)') AS model, status, latency_ms, ttft_ms, cost_usd,
    total_tokens, cassette"""

_SLOWEST = f"SELECT {_TOP_COLUMNS} FROM {{source}} WHERE latency_ms IS NOT NULL ORDER BY latency_ms DESC LIMIT {{top}}"
_COSTLIEST = f"SELECT {_TOP_COLUMNS} FROM {{source}} WHERE cost_usd IS NOT NULL ORDER BY cost_usd DESC LIMIT {{top}}"
_FAILED = f"""SELECT {_TOP_COLUMNS} FROM {{source}} WHERE status >= 400 OR error IS NOT NULL OR incomplete
ORDER BY recorded_at DESC LIMIT {{top}}"""
_UNPRICED = """
SELECT coalesce(model, '(unknown)') AS model, count(*) AS requests FROM {source}
WHERE cost_usd IS NULL AND (prompt_tokens IS NOT NULL OR completion_tokens IS NOT NULL)
GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 20"""

TOP_LIST_COLUMNS = ["id", "recorded_at", "model", "status", "latency_ms", "ttft_ms", "cost_usd", "tokens", "cassette"]


@dataclass
class ReportData:
    totals: dict[str, Any]
    daily: list[tuple[Any, ...]]  # (day, model, requests, tokens, cost_usd)
    percentiles: list[tuple[Any, ...]]  # (model, requests, latency p50/p95/p99, ttft p50/p95/p99, tps p50)
    finish_reasons: list[tuple[Any, ...]]
    statuses: list[tuple[Any, ...]]
    errors: list[tuple[Any, ...]]
    no_usage: list[tuple[Any, ...]]
    slowest: list[tuple[Any, ...]]
    costliest: list[tuple[Any, ...]]
    failed: list[tuple[Any, ...]]
    unpriced: list[tuple[Any, ...]]
    window: tuple[datetime | None, datetime | None] = (None, None)
    bucket: str = "day"  # of the per-day charts: day, week or month (see bucket_for)
    extra: dict[str, Any] = field(default_factory=dict)

    def top_ids(self) -> list[str]:
        """The interactions the page lists (slowest, costliest, failed), each once, in that order."""
        seen: dict[str, None] = {}
        for rows in (self.slowest, self.costliest, self.failed):
            for row in rows:
                seen.setdefault(row[0], None)
        return list(seen)


def bucket_for(first: datetime | None, last: datetime | None) -> str:
    """Days for up to three months of traffic, weeks up to two years, months beyond: a chart keeps <= ~100 bars."""
    if first is None or last is None:
        return "day"
    span = (last - first).days
    return "day" if span <= 92 else "week" if span <= 730 else "month"


def report_data(
    con: duckdb.DuckDBPyConnection, since: datetime | None = None, until: datetime | None = None, top: int = TOP_N
) -> ReportData:
    source, params = window_source(since, until)

    def rows(sql: str, limit: int = top) -> list[tuple[Any, ...]]:
        text = sql.format(source=source, top=limit, bucket=bucket)
        # the windowed source is a subquery with parameters: one set per time it appears
        return con.execute(text, params * text.count(source) if params else []).fetchall()

    totals_cursor = con.execute(_TOTALS.format(source=source), params)
    names = [item[0] for item in totals_cursor.description or []]
    totals = dict(zip(names, totals_cursor.fetchone() or (), strict=True))
    bucket = bucket_for(totals.get("first"), totals.get("last"))
    return ReportData(
        totals=totals,
        daily=rows(_DAILY, TOP_MODELS),
        percentiles=rows(_PERCENTILES, 15),
        finish_reasons=rows(_FINISH),
        statuses=rows(_STATUSES),
        errors=rows(_ERRORS),
        no_usage=rows(_NO_USAGE, 15),
        slowest=rows(_SLOWEST),
        costliest=rows(_COSTLIEST),
        failed=rows(_FAILED),
        unpriced=rows(_UNPRICED),
        window=(since, until),
        bucket=bucket,
    )
