"""The bytes every benchmark process agrees on: the two request bodies and the fake upstream's answers.

Everything is computed once at import, so the upstream only writes ready-made bytes.
"""

from __future__ import annotations

import json

MODEL = "gpt-4o-mini"
STREAM_EVENTS = 200  # SSE events per streamed answer, the final `data: [DONE]` included
GAP_MS = 5.0  # upstream's pause between two events

PLAIN_REQUEST = json.dumps(
    {"model": MODEL, "messages": [{"role": "user", "content": "Say hello to the benchmark"}]}
).encode()
STREAM_REQUEST = json.dumps(
    {"model": MODEL, "messages": [{"role": "user", "content": "Say hello to the benchmark"}], "stream": True}
).encode()
REQUEST_HEADERS = {"content-type": "application/json", "authorization": "Bearer sk-bench-not-a-real-key"}


def _completion() -> bytes:
    content = "Hello, benchmark! " * 40
    body = {
        "id": "chatcmpl-bench0000000000000000000001",
        "object": "chat.completion",
        "created": 1795000000,
        "model": MODEL,
        "system_fingerprint": "fp_bench",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 160, "total_tokens": 172},
    }
    return json.dumps(body, separators=(",", ":")).encode()


def _chunk(delta: dict[str, object], finish: str | None) -> bytes:
    body = {
        "id": "chatcmpl-bench0000000000000000000002",
        "object": "chat.completion.chunk",
        "created": 1795000000,
        "model": MODEL,
        "system_fingerprint": "fp_bench",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


def _events(count: int) -> list[bytes]:
    events = [_chunk({"role": "assistant", "content": ""}, None)]
    events += [_chunk({"content": f"word{i} "}, None) for i in range(1, count - 2)]
    events.append(_chunk({}, "stop"))
    events.append(b"data: [DONE]\n\n")
    return events


COMPLETION = _completion()
EVENTS = _events(STREAM_EVENTS)

PLAIN_RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\nx-request-id: req_bench\r\nopenai-processing-ms: 1\r\n\r\n" % len(COMPLETION)
) + COMPLETION
STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ntransfer-encoding: chunked\r\n"
    b"cache-control: no-cache\r\nx-request-id: req_bench_stream\r\n\r\n"
)
STREAM_FRAMES = [b"%x\r\n" % len(event) + event + b"\r\n" for event in EVENTS]
STREAM_END = b"0\r\n\r\n"


def is_stream_request(body: bytes) -> bool:
    return b'"stream": true' in body or b'"stream":true' in body
