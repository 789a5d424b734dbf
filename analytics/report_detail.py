"""One interaction as the report shows it: its figures, the conversation, and its chunk timeline.

The figures, request and response come from the database (or the lake); the timeline from the cassette's
events when the cassette directory is at hand (a lake read elsewhere may not have it: the view says so).
Texts are cut (MAX_TEXT characters per message, the last MAX_MESSAGES messages) so that embedding the top-N
interactions keeps the page small.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb

from analytics.stream_metrics import carries_output
from analytics.svg import timeline
from proxy.cassettes import CassetteError, load_cassette

MAX_TEXT = 4000
MAX_MESSAGES = 40
MAX_EVENTS = 5000

_COLUMNS = (
    "id", "recorded_at", "model", "requested_model", "status", "stream", "latency_ms", "ttfb_ms", "ttft_ms",
    "output_tokens_per_s", "chunks", "max_chunk_gap_ms", "cost_usd", "prompt_tokens", "cached_tokens",
    "completion_tokens", "finish_reason", "error", "cassette", "tags", "user", "request", "response",
)  # fmt: skip


def _cut(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + f"… ({len(text) - MAX_TEXT} more characters)"


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict):
                text = part.get("text")
                parts.append(text if isinstance(text, str) else f"[{part.get('type', 'part')}]")
        return "\n".join(parts)
    return ""


def _tool_calls_text(message: dict[str, Any]) -> str:
    calls = message.get("tool_calls")
    lines = []
    for call in calls if isinstance(calls, list) else []:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            lines.append(f"→ {function.get('name')}({function.get('arguments', '')})")
    return "\n".join(lines)


def _message(message: Any) -> dict[str, str] | None:
    if not isinstance(message, dict):
        return None
    text = _content_text(message.get("content"))
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal:
        text = (text + "\n" if text else "") + f"[refusal] {refusal}"
    calls = _tool_calls_text(message)
    if calls:
        text = (text + "\n" if text else "") + calls
    return {"role": str(message.get("role", "?")), "text": _cut(text)}


def conversation(request: Any, response: Any) -> list[dict[str, str]]:
    """The request's messages, then the answer (choice 0), as {role, text}."""
    messages = request.get("messages") if isinstance(request, dict) else None
    out = [m for m in (_message(item) for item in (messages or [])[-MAX_MESSAGES:]) if m is not None]
    choices = response.get("choices") if isinstance(response, dict) else None
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        answer = _message(choices[0].get("message"))
        if answer is not None:
            answer["role"] = f"{answer['role']} (answer)"
            out.append(answer)
    return out


def _kind(payload: Any, text: str) -> str:
    if text == "[DONE]":
        return "done"
    if not isinstance(payload, dict):
        return "other"
    if carries_output(payload):
        deltas = [c.get("delta") or {} for c in payload.get("choices") or [] if isinstance(c, dict)]
        return "tool" if any(isinstance(d, dict) and d.get("tool_calls") for d in deltas) else "content"
    if payload.get("usage"):
        return "usage"
    return "empty"


def events_of(cassettes: Path | None, cassette: str | None) -> list[tuple[float, str]] | None:
    """(offset_ms, kind) of each event of the cassette's stream, or None when the cassette is not at hand."""
    if cassettes is None or not cassette:
        return None
    path = cassettes / cassette
    if not path.is_file():
        return None
    try:
        interaction = load_cassette(path)
    except CassetteError:
        return None
    events = interaction.response.events or []
    return [(event.offset_ms, _kind(event.payload, event.text)) for event in events[:MAX_EVENTS]]


def _json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _plain(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def interaction_details(
    con: duckdb.DuckDBPyConnection, ids: Sequence[str], cassettes: Path | None
) -> dict[str, dict[str, Any]]:
    """The view of each interaction in `ids` (missing ids are left out), keyed by id."""
    if not ids:
        return {}
    names = ", ".join(f'"{name}"' for name in _COLUMNS)
    placeholders = ", ".join("?" for _ in ids)
    rows = con.execute(f"SELECT {names} FROM interactions WHERE id IN ({placeholders})", list(ids)).fetchall()
    details: dict[str, dict[str, Any]] = {}
    for row in rows:
        record = dict(zip(_COLUMNS, row, strict=True))
        request, response = _json(record.pop("request")), _json(record.pop("response"))
        figures = {key: _plain(value) for key, value in record.items()}
        figures["tags"] = _json(figures["tags"])
        events = events_of(cassettes, record["cassette"]) if record["stream"] else None
        svg = None
        if events is not None:
            svg = timeline(events, total_ms=record["latency_ms"], ttfb_ms=record["ttfb_ms"], ttft_ms=record["ttft_ms"])
        details[record["id"]] = {
            "figures": figures,
            "conversation": conversation(request, response),
            "timeline_svg": svg,
            "events": None if events is None else len(events),
        }
    return details
