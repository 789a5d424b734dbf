"""Interaction -> database rows: one `interactions` row and one `choices` row per choice.  (pure)

No I/O and no database here: the writer and the importer both call `interaction_rows` and insert what it
returns. Keys follow `schema.INTERACTION_NAMES` and `schema.CHOICE_NAMES`. Headers are never copied into a
row (they are redacted in the Interaction already; the database has no use for them); the proxy's tags,
which came as headers, are in the cassette's metadata. The cost comes from a PriceTable (pricing.py), by
default the maintained table of prices.py; stream timings from stream_metrics.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from analytics.pricing import PriceTable, cost_usd
from analytics.stream_metrics import stream_metrics
from proxy.interaction import Body, Interaction

Row = dict[str, Any]

_default_prices: PriceTable | None = None


def default_prices() -> PriceTable:
    """The maintained price table without overrides (made on first use: it imports genai-prices)."""
    global _default_prices
    if _default_prices is None:
        from analytics.prices import price_table

        _default_prices = price_table()
    return _default_prices


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _timestamp(stamp: str) -> datetime | None:
    """ISO 8601 -> naive UTC datetime (DuckDB TIMESTAMP), or None when it does not parse."""
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _json_text(body: Body) -> str | None:
    """The body as JSON text: its JSON value, else its text as a JSON string; None when empty or binary."""
    if body.json_ is not None:
        return _dumps(body.json_)
    if body.text is not None:
        return _dumps(body.text)
    return None


def _upstream_error(body: Body) -> str | None:
    """The message of an OpenAI-style error body `{"error": {"message": ...}}` (or `{"error": "..."}`)."""
    error = _dict(body.json_).get("error")
    if isinstance(error, str):
        return error
    message = _dict(error).get("message")
    return message if isinstance(message, str) and message else None


def _content_chars(choice: dict[str, Any]) -> int:
    message = _dict(choice.get("message"))
    content = message.get("content", choice.get("text"))  # `text`: the legacy completions endpoint
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):  # content parts
        texts = (part.get("text") for part in content if isinstance(part, dict))
        return sum(len(text) for text in texts if isinstance(text, str))
    return 0


def _tool_calls(choice: dict[str, Any]) -> int:
    """Tool calls in the message; a legacy `function_call` counts as one."""
    message = _dict(choice.get("message"))
    calls = message.get("tool_calls")
    count = len(calls) if isinstance(calls, list) else 0
    return count + (1 if isinstance(message.get("function_call"), dict) else 0)


def choice_rows(interaction_id: str, choices: list[Any]) -> list[Row]:
    rows: list[Row] = []
    for position, choice in enumerate(choices):
        if not isinstance(choice, dict):
            continue
        index = _int(choice.get("index"))
        refusal = _dict(choice.get("message")).get("refusal")
        rows.append(
            {
                "interaction_id": interaction_id,
                "index": position if index is None else index,
                "finish_reason": _str(choice.get("finish_reason")),
                "tool_calls": _tool_calls(choice),
                "content_chars": _content_chars(choice),
                "refusal": isinstance(refusal, str) and bool(refusal),
            }
        )
    return rows


def _request_fields(body: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    """requested_model, user (`user`, else `safety_identifier`) and metadata (JSON) of a request body."""
    user = _str(body.get("user")) or _str(body.get("safety_identifier"))
    metadata = body.get("metadata")
    return _str(body.get("model")), user, _dumps(metadata) if isinstance(metadata, dict) else None


def interaction_rows(
    interaction: Interaction, cassette: str | None, prices: PriceTable | None = None
) -> tuple[Row, list[Row]]:
    """The `interactions` row and the `choices` rows of one interaction, priced with `prices` (default: the
    maintained table, no overrides)."""
    response = interaction.response
    outcome = interaction.outcome
    if response.stream:
        completion = _dict(response.completion)
        response_json = None if response.completion is None else _dumps(response.completion)
    else:
        completion = _dict(response.body.json_)
        response_json = _json_text(response.body)
    usage = _dict(completion.get("usage"))
    choices = completion.get("choices")
    choices = choices if isinstance(choices, list) else None
    first = _dict(choices[0]) if choices else {}
    error = outcome.error
    if error is None and response.status >= 400:
        error = _upstream_error(response.body)
    recorded_at = _timestamp(interaction.metadata.recorded_at)
    prompt_tokens = _int(usage.get("prompt_tokens"))
    completion_tokens = _int(usage.get("completion_tokens"))
    cached_tokens = _int(_dict(usage.get("prompt_tokens_details")).get("cached_tokens"))
    requested_model, user, metadata = _request_fields(_dict(interaction.request.body.json_))
    model = interaction.model
    cost = None
    if recorded_at is not None and (prompt_tokens is not None or completion_tokens is not None):
        table = prices if prices is not None else default_prices()
        price = table.price((model, requested_model), interaction.metadata.upstream, recorded_at.date())
        cost = cost_usd(price, prompt_tokens, cached_tokens, completion_tokens)
    timing = stream_metrics(response.events if response.stream else None, completion_tokens)
    tags = interaction.metadata.tags
    row: Row = {
        "id": interaction.id,
        "recorded_at": recorded_at,
        "method": interaction.request.method,
        "path": interaction.request.path,
        "status": response.status,
        "stream": response.stream,
        "model": model,
        "completion_id": _str(completion.get("id")),
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": _int(usage.get("total_tokens")),
        "cached_tokens": cached_tokens,
        "reasoning_tokens": _int(_dict(usage.get("completion_tokens_details")).get("reasoning_tokens")),
        "finish_reason": _str(first.get("finish_reason")),
        "n_choices": None if choices is None else len(choices),
        "latency_ms": interaction.timings.total_ms,
        "ttfb_ms": interaction.timings.ttfb_ms,
        "incomplete": not outcome.complete,
        "usage_missing": outcome.usage_missing,
        "error": error,
        "cassette": cassette,
        "upstream": interaction.metadata.upstream,
        "request": _json_text(interaction.request.body),
        "response": response_json,
        "incomplete_reason": outcome.incomplete_reason,
        "requested_model": requested_model,
        "user": user,
        "metadata": metadata,
        "tags": _dumps(tags) if tags else None,
        "cost_usd": cost,
        "ttft_ms": timing.ttft_ms,
        "output_tokens_per_s": timing.output_tokens_per_s,
        "chunks": timing.chunks,
        "max_chunk_gap_ms": timing.max_chunk_gap_ms,
    }
    return row, choice_rows(interaction.id, choices or [])
