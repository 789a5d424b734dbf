"""`proxy stats`: the summary sections, over a time window and grouped by model, day or a tag.

Every figure is SQL run by DuckDB (over the local database or a lake, see sources.py); this module only
builds the queries. A NULL stays NULL (shown as NULL, never as 0): a group whose models have no price
has a NULL cost, and a group with no stream has no time to first token.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from analytics.db import AnalyticsError
from analytics.sources import source_connection
from analytics.views import (
    errors_sql,
    finish_reasons_sql,
    latency_sql,
    unpriced_models_sql,
    usage_by_day_sql,
    usage_by_model_sql,
)


class Section(NamedTuple):
    title: str
    columns: list[str]
    rows: list[tuple[Any, ...]]


UNPRICED_TITLE = "Models without a price (cost_usd is NULL: add them under [prices] in the config)"
BY_CHOICES = ("model", "day")  # and tag:NAME
_TAG_NAME = re.compile(r"^[a-z0-9!#$%&'*+.^_`|~-]+$")  # an HTTP header token, lower-cased

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


def group_expression(by: str) -> tuple[str, str]:
    """(SQL expression, column title) for `--by model|day|tag:NAME`."""
    if by == "model":
        return "coalesce(model, '(unknown)')", "model"
    if by == "day":
        return "CAST(recorded_at AS DATE)", "day"
    if by.startswith("tag:"):
        name = by[4:].strip().lower()
        if not _TAG_NAME.match(name):
            raise AnalyticsError(f"--by {by!r}: a tag name is the part after X-Proxy-Tag- (letters, digits, -_.)")
        return f"coalesce(json_extract_string(tags, '$.\"{name}\"'), '(untagged)')", f"tag:{name}"
    raise AnalyticsError(f"--by {by!r}: use model, day or tag:NAME")


def grouped_sql(source: str, by: str) -> str:
    """Requests, tokens, cost, latency, time to first token and tokens/s (p50/p95) per group."""
    expression, title = group_expression(by)

    def q(column: str, p: float) -> str:  # of successful responses only
        return f"round(quantile_cont({column}, {p}) FILTER (WHERE status BETWEEN 200 AND 399), 1)"

    return f"""
SELECT {expression} AS "{title}",
    count(*) AS requests,
    count(*) FILTER (WHERE status >= 400 OR error IS NOT NULL) AS errors,
    coalesce(sum(prompt_tokens), 0)::BIGINT AS prompt_tokens,
    coalesce(sum(cached_tokens), 0)::BIGINT AS cached_tokens,
    coalesce(sum(completion_tokens), 0)::BIGINT AS completion_tokens,
    round(sum(cost_usd), 6) AS cost_usd,
    count(*) FILTER (WHERE cost_usd IS NULL AND (prompt_tokens IS NOT NULL OR completion_tokens IS NOT NULL))
        AS unpriced,
    {q("latency_ms", 0.5)} AS latency_p50_ms,
    {q("latency_ms", 0.95)} AS latency_p95_ms,
    {q("ttft_ms", 0.5)} AS ttft_p50_ms,
    {q("ttft_ms", 0.95)} AS ttft_p95_ms,
    {q("output_tokens_per_s", 0.5)} AS tokens_per_s_p50,
    {q("output_tokens_per_s", 0.95)} AS tokens_per_s_p95
FROM {source}
GROUP BY 1
ORDER BY {"1" if by == "day" else "requests DESC, 1"}"""


def _naive_utc(moment: datetime | None) -> datetime | None:
    if moment is not None and moment.tzinfo is not None:
        return moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def window_source(since: datetime | None, until: datetime | None) -> tuple[str, list[Any]]:
    """The interactions recorded at or after `since` and before `until` (UTC when naive), as a relation."""
    conditions, params = [], []
    if since is not None:
        conditions.append("recorded_at >= ?")
        params.append(_naive_utc(since))
    if until is not None:
        conditions.append("recorded_at < ?")
        params.append(_naive_utc(until))
    if not conditions:
        return "interactions", []
    return f"(SELECT * FROM interactions WHERE {' AND '.join(conditions)})", params


def stats(
    db_path: Path | str,
    since: datetime | None = None,
    until: datetime | None = None,
    by: str = "model",
    lake: Path | str | None = None,
) -> list[Section]:
    """The `proxy stats` sections, over interactions in [since, until)."""
    source, params = window_source(since, until)
    _, title = group_expression(by)
    queries = [
        (f"Cost, latency, time to first token and tokens/s by {title}", grouped_sql(source, by)),
        ("Requests and tokens by model", usage_by_model_sql(source)),
        ("Requests and tokens by day (UTC)", usage_by_day_sql(source)),
        ("Finish reasons", finish_reasons_sql(source)),
        ("Latency and time to first byte, ms (successful responses)", latency_sql(source)),
        ("Errors and incomplete", _TOTALS_SQL.format(source=source)),
        ("Most frequent errors", _TOP_ERRORS_SQL.format(errors=errors_sql(source))),
        (UNPRICED_TITLE, unpriced_models_sql(source)),
    ]
    sections = []
    with source_connection(db_path, lake) as con:
        for title_text, sql in queries:
            cursor = con.execute(sql, params)
            columns = [item[0] for item in cursor.description or []]
            sections.append(Section(title_text, columns, cursor.fetchall()))
    return sections
