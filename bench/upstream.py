"""A fake Chat Completions upstream built for speed: a raw asyncio protocol writing precomputed bytes.

A request whose body says `"stream": true` gets 200 SSE events (chunked encoding, one HTTP chunk per event),
the first at once and event i at exactly start + i * gap (absolute times, so lateness does not accumulate);
any other request gets the ~1 KB chat.completion. Keep-alive; uvloop when installed.

Run: `python bench/upstream.py --port P [--gap-ms 5]`; prints `ready` when listening.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
from typing import cast

import aio
import payloads


def content_length(head: bytes) -> int:
    """The Content-Length of a lower-cased request head (0 when absent)."""
    at = head.find(b"\r\ncontent-length:")
    if at < 0:
        return 0
    stop = head.find(b"\r\n", at + 2)
    return int(head[at + 17 : stop if stop > 0 else None])


class Upstream(asyncio.Protocol):
    gap = payloads.GAP_MS / 1000.0

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.streaming = False
        self.close_after = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._serve()

    def _serve(self) -> None:
        while not self.streaming and self.transport is not None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).lower()
            total = end + 4 + content_length(head)
            if len(self.buffer) < total:
                return
            body = bytes(self.buffer[end + 4 : total])
            del self.buffer[:total]
            self.close_after = b"\r\nconnection: close" in head
            if payloads.is_stream_request(body):
                self._start_stream()
                return
            self.transport.write(payloads.PLAIN_RESPONSE)
            if self.close_after:
                self.transport.close()

    def _start_stream(self) -> None:
        assert self.transport is not None
        self.streaming = True
        loop = asyncio.get_running_loop()
        self.transport.write(payloads.STREAM_HEAD + payloads.STREAM_FRAMES[0])
        loop.call_at(loop.time() + self.gap, self._next, loop.time(), 1)

    def _next(self, start: float, index: int) -> None:
        if self.transport is None:
            return
        frames = payloads.STREAM_FRAMES
        self.transport.write(frames[index])
        if index + 1 < len(frames):
            asyncio.get_running_loop().call_at(start + (index + 1) * self.gap, self._next, start, index + 1)
            return
        self.transport.write(payloads.STREAM_END)
        self.streaming = False
        if self.close_after:
            self.transport.close()
            return
        self._serve()


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Upstream, "127.0.0.1", port, backlog=1024, reuse_address=True)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--gap-ms", type=float, default=payloads.GAP_MS)
    args = parser.parse_args()
    Upstream.gap = args.gap_ms / 1000.0
    aio.run(main(args.port))


if __name__ == "__main__":
    run()
