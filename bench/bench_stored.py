"""How fast `proxy replay` answers the stored Chat Completions API over 10,000 recordings (target of issue #14: a
list with a metadata filter well under 100 ms).

    python bench/bench_stored.py [COUNT]

Writes COUNT cassettes of stored chat completions (one in four streamed; metadata `team` out of 10 values,
`env` out of 3, and a unique `run`) into a temporary directory, starts the real app in replay mode on a
loopback port, and times HTTP requests from an aiohttp client:

- startup: building the replay index and the stored-completions index from the directory;
- cold: the first list with a metadata filter (it reads the 20 completions of its page from their cassettes);
- warm: lists with a metadata filter, each figure the median and max of 50 requests:
  `team` (1 in 10 match), `team`+`env` (1 in 30), a `run` that only the last recording has (the whole order is
  scanned to find one), and a 5-page walk with `limit=20` by `after` cursors (per page);
- get, and a 100-item page (the largest a list may ask for).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from proxy.app import create_app
from proxy.settings import RecordMode, Settings


def cassette(number: int) -> dict[str, Any]:
    completion_id = f"chatcmpl-bench{number:06d}"
    stream = number % 4 == 0
    completion = {
        "id": completion_id,
        "object": "chat.completion",
        "created": 1_764_000_000 + number // 3,  # ties, so the tie-breaker is exercised
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": f"Answer number {number}. " * 8, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 20, "completion_tokens": 40, "total_tokens": 60},
        "system_fingerprint": "fp_bench",
    }
    request = {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are a benchmark."},
            {"role": "user", "content": f"Question number {number}?"},
        ],
        "store": True,
        "metadata": {"team": f"team-{number % 10}", "env": f"env-{number % 3}", "run": str(number)},
    }
    response: dict[str, Any] = {"status": 200, "headers": [["content-type", "application/json"]]}
    if stream:
        request["stream"] = True
        chunk = {k: completion[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}
        events = [
            {"offset_ms": float(i), "json": chunk | {"choices": [{"index": 0, "delta": {"content": "x"}}]}}
            for i in range(40)
        ]
        response.update(stream=True, events=[*events, {"offset_ms": 41.0, "data": "[DONE]"}], completion=completion)
        response["headers"] = [["content-type", "text/event-stream"]]
    else:
        response["body"] = {"json": completion, "layout": "indent2"}
    second, milli = divmod(number, 1000)
    return {
        "version": 2,
        "id": f"bench-{number}",
        "metadata": {
            "recorded_at": f"2026-12-01T10:{second // 60:02d}:{second % 60:02d}.{milli:03d}Z",
            "upstream": "http://127.0.0.1:1",
            "proxy_version": "0.1.0",
            "mode": "record",
        },
        "request": {
            "method": "POST",
            "path": "/v1/chat/completions",
            "headers": [["content-type", "application/json"]],
            "body": {"json": request, "layout": "compact"},
        },
        "response": response,
        "timings": {"ttfb_ms": 100.0, "total_ms": 500.0},
        "outcome": {"complete": True},
    }


async def timed(call: Callable[[], Awaitable[Any]], times: int) -> list[float]:
    spent = []
    for _ in range(times):
        started = time.perf_counter()
        await call()
        spent.append((time.perf_counter() - started) * 1000)
    return spent


def line(name: str, spent: list[float]) -> str:
    return f"  {name:<44} median {statistics.median(spent):6.2f} ms   max {max(spent):6.2f} ms"


async def measure(root: Path, count: int) -> None:
    started = time.perf_counter()
    settings = Settings(mode=RecordMode.REPLAY, cassettes=root, db_enabled=False)
    app = create_app(settings)
    print(f"startup: replay and stored indexes over {count:,} cassettes in {time.perf_counter() - started:.2f} s")
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    base = str(server.make_url("/v1/chat/completions"))
    last = count - 1
    try:
        async with aiohttp.ClientSession() as session:

            async def get(url: str, **params: str) -> Any:
                async with session.get(url, params=params) as response:
                    assert response.status == 200, await response.text()
                    return await response.json()

            cold = await timed(lambda: get(base, **{"metadata[team]": "team-3"}), 1)
            print(f"  {'cold: first list, metadata[team] (reads 20 files)':<44} {cold[0]:6.2f} ms")
            team = await timed(lambda: get(base, **{"metadata[team]": "team-3"}), 50)
            both = await timed(lambda: get(base, **{"metadata[team]": "team-7", "metadata[env]": "env-1"}), 50)
            await get(base, **{"metadata[run]": str(last)})
            rare = await timed(lambda: get(base, **{"metadata[run]": str(last)}), 50)
            pages: list[float] = []
            for _ in range(10):
                after: str | None = None
                for _ in range(5):
                    params = {"metadata[team]": "team-5", "limit": "20"} | ({"after": after} if after else {})
                    started = time.perf_counter()
                    page = await get(base, **params)
                    pages.append((time.perf_counter() - started) * 1000)
                    after = page["last_id"]
            await get(f"{base}/chatcmpl-bench{last:06d}")
            one = await timed(lambda: get(f"{base}/chatcmpl-bench{last:06d}"), 50)
            await get(base, limit="100", order="desc")
            hundred = await timed(lambda: get(base, limit="100", order="desc"), 50)
            print(line("list metadata[team] (1 in 10 match)", team))
            print(line("list metadata[team]+metadata[env] (1 in 30)", both))
            print(line("list metadata[run] (1 match, full scan)", rare))
            print(line("5-page walk, metadata[team], per page (cold+warm)", pages))
            print(line("get one", one))
            print(line("list limit=100, desc", hundred))
    finally:
        await server.close()


def main(count: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for number in range(count):
            path = root / f"{number // 1000:03d}" / f"{number:06d}.json"
            path.parent.mkdir(exist_ok=True)
            path.write_text(json.dumps(cassette(number), indent=2))
        asyncio.run(measure(root, count))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
