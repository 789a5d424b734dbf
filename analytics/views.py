"""The views over `interactions` and `choices`: their bodies as SQL, parametrized by the source, so `proxy stats`
runs the same queries over a filtered subquery or a lake, and their comments.  (pure: strings only)
"""

from __future__ import annotations

from collections.abc import Callable

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
