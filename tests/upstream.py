"""A fake upstream that speaks the Chat Completions API: the far side of the wire in end-to-end tests.

Tests register scenarios by name and pick one per request with the `x-scenario` header (the official SDK
sends it through `extra_headers`). Behaviour knobs are headers too, so one server covers every case:

    x-scenario      name of a registered stream or completion (default: "default")
    x-piece-size    write the body in pieces of this many bytes (default: one piece per SSE event)
    x-gap-ms        sleep this long between pieces
    x-hold-ms       sleep this long after the first piece only (a slow first token after a quick role chunk)
    x-status        answer with this status and an OpenAI-style error body
    x-retry-after   with x-status: the Retry-After header
    x-reset-after   close the connection after this many pieces (a reset mid-stream)
    x-stall-after   go silent for 5 s after this many pieces (a stall mid-stream)
    x-hang-ms       sleep this long before sending the headers
    x-gzip          send the body gzip-compressed with Content-Encoding: gzip
    x-end-hold-ms   after the last piece, keep the body open this long before ending it (a stream whose
                    `[DONE]` came well before the end of its body)

Error bodies are laid out as the real API lays them out: indented by four spaces, with a final newline.

Every request is kept in `received` and every body byte sent in `sent`, keyed by a request counter that
the response carries in `x-request-id`.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Received:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    raw_path_qs: str = ""  # the request target exactly as it arrived (percent-encoding kept)


@dataclass
class FakeUpstream:
    streams: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    completions: dict[str, dict[str, Any]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    sent: dict[str, bytes] = field(default_factory=dict)
    disconnects: int = 0
    raw_streams: dict[str, bytes] = field(default_factory=dict)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.received.append(
            Received(
                request.method,
                request.path,
                request.query_string,
                dict(request.headers),
                body,
                request.rel_url.raw_path_qs,
            )
        )
        request_id = f"req_{len(self.received)}"
        hang = int(request.headers.get("x-hang-ms", "0"))
        if hang:
            try:
                await asyncio.sleep(hang / 1000)
            except asyncio.CancelledError:  # the client (the proxy) left before the headers
                self.disconnects += 1
                raise
        status = int(request.headers.get("x-status", "200"))
        if status != 200:
            payload = (
                json.dumps(
                    {
                        "error": {
                            "message": f"fake upstream says {status}",
                            "type": "rate_limit_error" if status == 429 else "server_error",
                            "code": None,
                            "param": None,
                        }
                    },
                    indent=4,
                ).encode()
                + b"\n"
            )
            headers = {"x-request-id": request_id, "content-type": "application/json"}
            if "x-retry-after" in request.headers:
                headers["retry-after"] = request.headers["x-retry-after"]
            self.sent[request_id] = payload
            return web.Response(status=status, body=payload, headers=headers)
        if request.path != "/v1/chat/completions" or request.method != "POST":  # a create; else a listing
            listing = json.dumps({"object": "list", "data": [], "path": request.path, "query": request.query_string})
            self.sent[request_id] = listing.encode()
            return web.Response(
                body=listing.encode(), content_type="application/json", headers={"x-request-id": request_id}
            )
        scenario = request.headers.get("x-scenario", "default")
        asked = json.loads(body) if body else {}
        if asked.get("stream"):
            if scenario in self.raw_streams:
                pieces = [self.raw_streams[scenario]]
            else:
                chunks = self.streams[scenario]
                pieces = [b"data: " + json.dumps(c, separators=(",", ":")).encode() + b"\n\n" for c in chunks]
                pieces.append(b"data: [DONE]\n\n")
            return await self._write(request, request_id, pieces, "text/event-stream; charset=utf-8")
        completion = self.completions[scenario]
        return await self._write(request, request_id, [json.dumps(completion, indent=2).encode()], "application/json")

    async def _write(
        self, request: web.Request, request_id: str, pieces: list[bytes], content_type: str
    ) -> web.StreamResponse:
        data = b"".join(pieces)
        gzipped = "x-gzip" in request.headers
        if gzipped:
            data = gzip.compress(data)
            pieces = [data]
        size = int(request.headers.get("x-piece-size", "0"))
        if size:
            pieces = [data[i : i + size] for i in range(0, len(data), size)]
        gap = int(request.headers.get("x-gap-ms", "0")) / 1000
        reset_after = int(request.headers.get("x-reset-after", "-1"))
        end_hold = int(request.headers.get("x-end-hold-ms", "0")) / 1000
        stall_after = int(request.headers.get("x-stall-after", "-1"))
        hold = int(request.headers.get("x-hold-ms", "0")) / 1000
        response = web.StreamResponse(
            headers={
                "content-type": content_type,
                "x-request-id": request_id,
                "openai-processing-ms": "12",
                "set-cookie": "session=upstream-secret",
            }
        )
        if gzipped:
            response.headers["content-encoding"] = "gzip"
            response.content_length = len(data)
        await response.prepare(request)
        sent = bytearray()
        try:
            for number, piece in enumerate(pieces):
                if number == reset_after:
                    self.sent[request_id] = bytes(sent)
                    assert request.transport is not None
                    request.transport.abort()
                    return response
                await response.write(piece)
                sent.extend(piece)
                if number + 1 == stall_after:
                    await asyncio.sleep(5)
                if number == 0 and hold:
                    await asyncio.sleep(hold)
                if gap:
                    await asyncio.sleep(gap)
            if end_hold:
                await asyncio.sleep(end_hold)
        except (ConnectionResetError, asyncio.CancelledError):
            self.disconnects += 1
            self.sent[request_id] = bytes(sent)
            raise
        self.sent[request_id] = bytes(sent)
        await response.write_eof()
        return response


def serve_upstream_in_thread(fake: FakeUpstream) -> tuple[str, threading.Event, threading.Thread]:
    """The fake upstream on its own loop in a thread, so a proxy in a child process can reach it."""
    ready, stop = threading.Event(), threading.Event()
    address: list[str] = []

    def main() -> None:
        async def run() -> None:
            runner = web.AppRunner(fake.app())
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            address.append(f"http://127.0.0.1:{runner.addresses[0][1]}")
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.05)
            await runner.cleanup()

        asyncio.run(run())

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    assert ready.wait(10)
    return address[0], stop, thread
