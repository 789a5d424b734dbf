"""Recording: what crossed the proxy for one exchange, and how it becomes an Interaction.  (pure)

On the hot path a Recording only appends each chunk and its arrival time. Everything costly (decompressing,
SSE decoding, JSON parsing, reassembling the completion, redacting) happens in `build_interaction`, which
runs after the client has its last byte, off the event loop.
"""

from __future__ import annotations

import base64
import operator
import uuid
import zlib
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

from proxy import __version__, headers
from proxy.interaction import (
    REDACTED,
    Body,
    Interaction,
    Metadata,
    Outcome,
    RecordedEvent,
    RecordedRequest,
    RecordedResponse,
    Timings,
)
from proxy.jsonlayout import dump_json, parse_with_layout
from proxy.reassemble import ChunkAccumulator
from proxy.sse import SSEDecoder, SSEEvent, is_canonical


@dataclass(slots=True)
class Recording:
    method: str
    path: str
    query: str
    request_headers: list[tuple[str, str]]
    request_body: bytes
    upstream: str
    started: float  # loop.time() when the request was sent upstream
    recorded_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    mode: str = "record"
    status: int | None = None
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    headers_at: float | None = None
    chunks: list[bytes] = field(default_factory=list)
    chunk_times: list[float] = field(default_factory=list)
    ended: float | None = None
    error: str | None = None  # the proxy's own failure (upstream unreachable, timeout, reset)
    incomplete_reason: str | None = None
    error_body: bytes | None = None  # what the proxy answered itself when upstream failed
    error_status: int | None = None  # ...and with which status (502 unreachable, 504 timeout)
    tags: dict[str, str] | None = None  # from X-Proxy-Tag-* request headers (see headers.request_headers_for_upstream)
    directory: Path = Path("cassettes")  # where its cassette goes (each test of the pytest plugin has its own)

    def add(self, chunk: bytes, at: float) -> None:
        self.chunks.append(chunk)
        self.chunk_times.append(at)


# Every field's value, in the order of the fields (how a recording crosses to the worker: worker_wire.py).
field_values = operator.attrgetter(*(f.name for f in fields(Recording)))


# The incomplete_reason of an exchange whose client left before the upstream had finished it.
CLIENT_LEFT = "client disconnected"


@dataclass(frozen=True, slots=True)
class Redaction:
    secret_headers: frozenset[str] = frozenset()
    secret_query_params: frozenset[str] = frozenset()
    secret_body_fields: frozenset[str] = frozenset()  # top-level keys of a JSON request body


def _ms(start: float, at: float | None) -> float | None:
    return None if at is None else round((at - start) * 1000.0, 3)


def body_of(data: bytes) -> Body:
    """The most readable faithful form of a body: JSON value, else UTF-8 text, else base64. A JSON body in no
    known layout keeps its exact text beside the value: the value for people and SQL, the text for replay."""
    if not data:
        return Body()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return Body(base64=base64.b64encode(data).decode("ascii"))
    parsed = parse_with_layout(text)
    if parsed is None or parsed[0] is None:  # `null` is kept as text: a None value means "no JSON" here
        return Body(text=text)
    value, layout = parsed
    if layout is None:
        return Body(json=value, text=text)
    return Body(json=value, layout=layout)


def body_bytes(body: Body) -> bytes:
    """The bytes of a recorded body, as they were on the wire (replay sends these)."""
    if body.base64 is not None:
        return base64.b64decode(body.base64)
    if body.text is not None:
        return body.text.encode("utf-8")
    if body.json_ is not None:
        return dump_json(body.json_, body.layout or "compact").encode("utf-8")
    return b""


def _decompress(data: bytes, coding: str | None) -> tuple[bytes, str | None]:
    """Decode a content coding for the record; the client already got the original bytes."""
    if not coding or coding.lower() == "identity":
        return data, None
    coding = coding.lower()
    try:
        if coding in ("gzip", "x-gzip"):
            return zlib.decompress(data, 16 + zlib.MAX_WBITS), None
        if coding == "deflate":
            try:
                return zlib.decompress(data), None
            except zlib.error:
                return zlib.decompress(data, -zlib.MAX_WBITS), None
    except zlib.error as exc:
        return data, f"could not decode content-encoding {coding}: {exc}"
    return data, f"content-encoding {coding} kept as received"


def redact_query(query: str, secret_params: frozenset[str]) -> str:
    """The raw query with the values of secret parameters replaced; every other byte stays as it came."""
    if not query or not secret_params:
        return query
    parts = []
    for part in query.split("&"):
        name, equals, _ = part.partition("=")
        if unquote_plus(name).lower() in secret_params:
            part = f"{name}{equals or '='}{REDACTED}"
        parts.append(part)
    return "&".join(parts)


def redact_body(body: Body, secret_fields: frozenset[str]) -> Body:
    """Replace the values of secret top-level fields of a JSON body (replay matching ignores them)."""
    value = body.json_
    if not secret_fields or not isinstance(value, dict) or not secret_fields & value.keys():
        return body
    # The layout no longer reproduces the original bytes, so drop it: the value is what matters now.
    return Body(json={key: REDACTED if key in secret_fields else item for key, item in value.items()})


def is_event_stream(response_headers: list[tuple[str, str]]) -> bool:
    content_type = headers.get(response_headers, "content-type") or ""
    return content_type.split(";")[0].strip().lower() == "text/event-stream"


def _events_with_times(rec: Recording, stream_bytes: bytes, coded: bool) -> tuple[list[tuple[SSEEvent, float]], bytes]:
    decoder = SSEDecoder()
    timed: list[tuple[SSEEvent, float]] = []
    if coded:
        # Decoded as a whole: the per-chunk arrival times of a compressed stream are not recoverable.
        end = rec.chunk_times[-1] if rec.chunk_times else rec.started
        timed = [(event, end) for event in decoder.feed(stream_bytes)]
    else:
        for chunk, at in zip(rec.chunks, rec.chunk_times, strict=True):
            timed.extend((event, at) for event in decoder.feed(chunk))
    # An event whose blank line never came, or whose line ended in a lone CR, is only known at the end.
    end = rec.chunk_times[-1] if rec.chunk_times else rec.started
    timed.extend((event, end) for event in decoder.flush())
    return timed, decoder.tail


def _has_fields(tail: bytes) -> bool:
    """Whether bytes after the last event hold part of an event, not just comments (`: ping`) and blank lines."""
    lines = tail.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    return any(line and not line.startswith(b":") for line in lines)


def _recorded_event(event: SSEEvent, offset: float, parsed: tuple[Any, str | None] | None) -> RecordedEvent:
    raw = None if is_canonical(event) else event.raw.decode("utf-8", "replace")
    # Not validated: these values come from our own decoder, so a second validation per event (hundreds per
    # stream) would only burn CPU.
    if parsed is not None and parsed[1] is not None and parsed[0] is not None:
        layout = None if parsed[1] == "compact" else parsed[1]
        return RecordedEvent.trusted(
            offset, json_=parsed[0], layout=layout, event=event.event, id=event.id, retry=event.retry, raw=raw
        )
    return RecordedEvent.trusted(offset, data=event.data, event=event.event, id=event.id, retry=event.retry, raw=raw)


def _stream_response(rec: Recording, data: bytes, coded: bool, outcome: Outcome) -> RecordedResponse:
    timed, tail = _events_with_times(rec, data, coded)
    events: list[RecordedEvent] = []
    accumulator = ChunkAccumulator()
    saw_done = saw_chunk = False
    for event, at in timed:
        parsed = None if event.data == "[DONE]" else parse_with_layout(event.data)
        events.append(_recorded_event(event, _ms(rec.started, at) or 0.0, parsed))
        if saw_done:
            # Every official SDK stops reading at the first [DONE]: what follows is kept and replayed, but the
            # completion is what a client saw.
            continue
        if event.data == "[DONE]":
            saw_done = True
            continue
        if parsed is None:
            outcome.notes.append(f"event {len(events) - 1} is not JSON")
            continue
        payload = parsed[0]
        if event.event == "error" or (isinstance(payload, dict) and "error" in payload and "choices" not in payload):
            outcome.incomplete_reason = outcome.incomplete_reason or "error event in stream"
            message = payload.get("error") if isinstance(payload, dict) else None
            if isinstance(message, dict):
                message = message.get("message")
            outcome.error = outcome.error or f"stream error event: {message or event.data[:200]}"
            continue
        if isinstance(payload, dict) and payload.get("object") == "chat.completion.chunk":
            saw_chunk = True
            accumulator.add(payload)
    if saw_done and outcome.incomplete_reason == CLIENT_LEFT:
        # The upstream finished the stream ([DONE] came); a client that closed after reading it left nothing out.
        outcome.incomplete_reason = None
    completion = None
    if saw_chunk:
        result = accumulator.result()
        completion = result.completion
        outcome.usage_missing = not result.usage_seen
        outcome.notes.extend(result.notes)
    if _has_fields(tail):
        outcome.incomplete_reason = outcome.incomplete_reason or "stream ended mid-event"
    if not saw_done and saw_chunk:
        outcome.incomplete_reason = outcome.incomplete_reason or "stream ended without [DONE]"
    return RecordedResponse(
        status=rec.status or 0,
        stream=True,
        events=events,
        tail=tail.decode("utf-8", "replace") if tail else None,
        completion=completion,
    )


def build_interaction(rec: Recording, redaction: Redaction = Redaction()) -> Interaction:
    """Turn a finished Recording into an Interaction, with every secret replaced by a marker."""
    outcome = Outcome(error=rec.error, incomplete_reason=rec.incomplete_reason)
    raw = b"".join(rec.chunks)
    coding = headers.get(rec.response_headers, "content-encoding")
    data, problem = _decompress(raw, coding)
    if problem:
        outcome.notes.append(problem)
    coded = coding is not None and coding.strip().lower() not in ("", "identity")
    if rec.status is None:
        response = RecordedResponse(status=rec.error_status or 0, body=body_of(rec.error_body or b""))
    elif is_event_stream(rec.response_headers):
        response = _stream_response(rec, data, coded, outcome)
    else:
        response = RecordedResponse(status=rec.status, body=body_of(data) if problem is None else body_of(raw))
    response.headers = headers.redact(rec.response_headers, redaction.secret_headers)
    if coded and problem is None:
        response.decoded_from = coding
    outcome.complete = outcome.incomplete_reason is None and rec.error is None
    first_byte = rec.chunk_times[0] if rec.chunk_times else rec.headers_at
    return Interaction(
        id=f"{rec.recorded_at:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:12]}",
        metadata=Metadata(
            recorded_at=rec.recorded_at.isoformat(timespec="microseconds").replace("+00:00", "Z"),
            upstream=rec.upstream,
            proxy_version=__version__,
            mode=rec.mode,
            tags=rec.tags or None,
        ),
        request=RecordedRequest(
            method=rec.method,
            path=rec.path,
            query=redact_query(rec.query, redaction.secret_query_params),
            headers=headers.redact(rec.request_headers, redaction.secret_headers),
            body=redact_body(body_of(rec.request_body), redaction.secret_body_fields),
        ),
        response=response,
        timings=Timings(ttfb_ms=_ms(rec.started, first_byte), total_ms=_ms(rec.started, rec.ended)),
        outcome=outcome,
    )
