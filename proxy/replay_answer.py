"""Sending a recorded answer: the recorded JSON body or SSE events, at the recorded pace if asked; and the miss.

An answer is prepared once per recording (headers re-framed, events encoded), so a replay costs a write.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiohttp import web
from multidict import CIMultiDict

from proxy import headers
from proxy.errors import error_body
from proxy.interaction import Interaction
from proxy.recording import body_bytes
from proxy.sse import SSEEvent, encode_event

log = logging.getLogger("proxy.replay")

# Headers that describe bytes we no longer send as they were (the body is stored decoded, re-framed here).
_REFRAMED = frozenset({"content-length", "transfer-encoding", "content-encoding"})
# Incomplete endings that cut the connection, rather than closing the body cleanly.
_CUT = ("upstream reset", "upstream timeout")


@dataclass(slots=True)
class Prepared:
    status: int
    headers: CIMultiDict[str]
    body: bytes
    events: list[bytes] | None
    offsets_ms: list[float]
    cut: bool
    total_ms: float | None  # how long the whole exchange took (timing "original" waits this for a body)


def miss_response(message: str) -> web.Response:
    log.warning("replay miss: %s", message)
    # 404 is not retried by the official SDKs, and x-should-retry tells them so explicitly.
    return web.Response(
        status=404,
        body=error_body(message, "invalid_request_error", "replay_miss"),
        content_type="application/json",
        headers={"x-should-retry": "false", "x-proxy-error": "replay_miss"},
    )


def prepare_answer(interaction: Interaction) -> Prepared:
    """The recorded answer as bytes ready to send: headers re-framed, events encoded, their offsets."""
    response = interaction.response
    reframed = _REFRAMED if response.decoded_from or response.stream else _REFRAMED - {"content-encoding"}
    kept = CIMultiDict(
        (name, value)
        for name, value in headers.response_headers_for_client(response.headers)
        if name.lower() not in reframed
    )
    events: list[bytes] | None = None
    offsets: list[float] = []
    if response.stream and response.events is not None:
        events = []
        for recorded in response.events:
            if recorded.raw is not None:
                events.append(recorded.raw.encode("utf-8"))
            else:
                event = SSEEvent(data=recorded.text, event=recorded.event, id=recorded.id, retry=recorded.retry)
                events.append(encode_event(event))
            offsets.append(recorded.offset_ms)
        if response.tail:
            events.append(response.tail.encode("utf-8"))
            offsets.append(offsets[-1] if offsets else 0.0)
    reason = interaction.outcome.incomplete_reason or ""
    return Prepared(
        status=response.status,
        headers=kept,
        body=body_bytes(response.body),
        events=events,
        offsets_ms=offsets,
        cut=reason.startswith(_CUT),
        total_ms=interaction.timings.total_ms,
    )


async def replay_response(request: web.Request, prepared: Prepared, timing: str, speed: float) -> web.StreamResponse:
    if prepared.events is None:
        total_ms = prepared.total_ms
        if timing == "original" and total_ms:
            # A whole body arrives at once: the recorded wait is until its last byte.
            await asyncio.sleep(total_ms / 1000.0 / speed)
        return web.Response(status=prepared.status, headers=prepared.headers, body=prepared.body)
    response = web.StreamResponse(status=prepared.status, headers=prepared.headers)
    await response.prepare(request)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for data, offset_ms in zip(prepared.events, prepared.offsets_ms, strict=True):
        if timing == "original":
            delay = start + offset_ms / 1000.0 / speed - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        await response.write(data)
    if prepared.cut and request.transport is not None:
        request.transport.abort()
        return response
    await response.write_eof()
    return response
