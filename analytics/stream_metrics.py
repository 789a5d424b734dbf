"""Timing figures of a streamed completion, from its recorded events and their arrival offsets.  (pure)

- `ttft_ms`: time to first token, the offset of the first chunk that carries something the user sees
  (content, a refusal, a tool or function call, audio). It differs from `ttfb_ms` (the first body byte), which
  an empty role-only first chunk or a keep-alive comment already satisfies.
- `output_tokens_per_s`: completion tokens over the time from the first token to the last chunk.
- `chunks`: how many `chat.completion.chunk` events arrived; `max_chunk_gap_ms`: the longest wait between
  two consecutive chunks (a stall the user saw as a frozen answer).

Offsets are per network read: chunks that arrived in one read share an offset, so gaps are never negative.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from proxy.interaction import RecordedEvent


@dataclass(frozen=True, slots=True)
class StreamMetrics:
    ttft_ms: float | None = None
    output_tokens_per_s: float | None = None
    chunks: int | None = None
    max_chunk_gap_ms: float | None = None


_VISIBLE_DELTA_KEYS = ("content", "refusal", "tool_calls", "function_call", "audio")


def carries_output(payload: Any) -> bool:
    """Whether a chunk carries something of the answer: non-empty content or refusal, a tool or function call,
    or audio, in any choice's delta."""
    if not isinstance(payload, dict):
        return False
    choices = payload.get("choices")
    if not isinstance(choices, list):
        return False
    for choice in choices:
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if not isinstance(delta, dict):
            continue
        for key in _VISIBLE_DELTA_KEYS:
            value = delta.get(key)
            if value not in (None, "", [], {}):
                return True
    return False


def _is_chunk(payload: Any) -> bool:
    return isinstance(payload, dict) and payload.get("object") == "chat.completion.chunk"


def stream_metrics(events: Sequence[RecordedEvent] | None, completion_tokens: int | None) -> StreamMetrics:
    """The metrics of one stream (all None for a response that was not a stream of chunks)."""
    if not events:
        return StreamMetrics()
    ttft: float | None = None
    last: float | None = None
    previous: float | None = None
    gap = 0.0
    count = 0
    for event in events:
        payload = event.payload
        if not _is_chunk(payload):
            continue
        count += 1
        offset = event.offset_ms
        if previous is not None:
            gap = max(gap, offset - previous)
        previous = last = offset
        if ttft is None and carries_output(payload):
            ttft = offset
    if count == 0:
        return StreamMetrics()
    rate = None
    if ttft is not None and last is not None and completion_tokens is not None and last > ttft:
        rate = round(completion_tokens / ((last - ttft) / 1000.0), 3)
    return StreamMetrics(
        ttft_ms=ttft,
        output_tokens_per_s=rate,
        chunks=count,
        max_chunk_gap_ms=round(gap, 3) if count > 1 else None,
    )
