"""The replay path: request -> key -> next recording -> the recorded JSON or SSE events; a miss explains itself.

Identical requests replay in the order they were recorded (a queue per key, as mitmproxy's server replay
does); once used up, the last one repeats or the request fails, as the policy says. Response bytes are
prepared once per recording, on first use, so a replay costs a lookup and a write.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from multidict import CIMultiDict

from proxy import headers
from proxy.errors import error_body
from proxy.interaction import Interaction
from proxy.matching import MatchPolicy, RequestFacts, closest, parse_json, request_key
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


@dataclass(slots=True)
class Entry:
    interaction: Interaction
    label: str
    facts: RequestFacts
    prepared: Prepared | None = None

    def prepare(self) -> Prepared:
        if self.prepared is None:
            self.prepared = _prepare(self.interaction)
        return self.prepared


@dataclass(slots=True)
class _Queue:
    entries: list[Entry] = field(default_factory=list)
    used: int = 0


def recorded_facts(interaction: Interaction) -> RequestFacts:
    request = interaction.request
    body = request.body
    text = body.text or ""
    body_json = body.json_ if body.text is None and body.base64 is None else parse_json(text)
    return RequestFacts.build(request.method, request.path, request.query, request.headers, body_json, text)


class ReplayIndex:
    def __init__(self, policy: MatchPolicy) -> None:
        self.policy = policy
        self._queues: dict[str, _Queue] = {}
        self._by_route: dict[tuple[str, str], list[Entry]] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, interaction: Interaction, path: Path | None) -> None:
        """Index one recording. Recordings the upstream never answered (proxy-side failures) are skipped."""
        if interaction.response.status <= 0 or not interaction.response.headers:
            return
        facts = recorded_facts(interaction)
        entry = Entry(interaction, str(path) if path else interaction.id, facts)
        self._queues.setdefault(request_key(facts, self.policy), _Queue()).entries.append(entry)
        self._by_route.setdefault((facts.method, facts.path), []).append(entry)
        self._count += 1

    def next(self, facts: RequestFacts) -> Entry | None:
        queue = self._queues.get(request_key(facts, self.policy))
        if queue is None:
            return None
        if queue.used < len(queue.entries):
            queue.used += 1
            return queue.entries[queue.used - 1]
        return queue.entries[-1] if self.policy.on_exhausted == "repeat" else None

    def used_up(self, facts: RequestFacts) -> int:
        queue = self._queues.get(request_key(facts, self.policy))
        return len(queue.entries) if queue is not None else 0

    def candidates(self, facts: RequestFacts) -> list[tuple[RequestFacts, str]]:
        same_route = self._by_route.get((facts.method, facts.path))
        pool = same_route if same_route else [e for entries in self._by_route.values() for e in entries]
        return [(entry.facts, entry.label) for entry in pool]


def describe_miss(facts: RequestFacts, index: ReplayIndex) -> str:
    model = f" (model {facts.model})" if facts.model else ""
    head = f"no recording for {facts.method} {facts.path}{model}"
    used = index.used_up(facts)
    if used:
        return f"{head}: its {used} recording(s) were all used and on_exhausted is 'fail'"
    near = closest(facts, index.candidates(facts), index.policy, limit=1)
    if not near:
        return f"{head}; there are no recordings to compare with"
    best = near[0]
    return f"{head}; closest recording: {best.label}, which differs in {', '.join(best.differing) or 'nothing'}"


def miss_response(facts: RequestFacts, index: ReplayIndex) -> web.Response:
    message = describe_miss(facts, index)
    log.warning("replay miss: %s", message)
    # 404 is not retried by the official SDKs, and x-should-retry tells them so explicitly.
    return web.Response(
        status=404,
        body=error_body(message, "invalid_request_error", "replay_miss"),
        content_type="application/json",
        headers={"x-should-retry": "false", "x-proxy-error": "replay_miss"},
    )


def _prepare(interaction: Interaction) -> Prepared:
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
                event = SSEEvent(data=recorded.data, event=recorded.event, id=recorded.id, retry=recorded.retry)
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
    )


async def replay_response(request: web.Request, entry: Entry, timing: str, speed: float) -> web.StreamResponse:
    prepared = entry.prepare()
    if prepared.events is None:
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
