"""The load generator: an aiohttp client with a pooled connector, run as its own process; prints one JSON line.

    load.py plain  --url U --concurrency C (--duration S [--warmup W] | --count N) [--time-limit T]
    load.py stream --url U --concurrency C --streams N [--time-limit T]

plain: C workers send the ~1 KB request back to back. With --duration, requests finishing inside
[warmup, duration] are counted (rps) and those started in it give the latencies; with --count, exactly N
requests are sent. stream: N streamed requests, C at a time; for each, the time to the first SSE event,
the time to the last byte, and every gap between two consecutive events as the client saw them.
Every loop stops at its count or its deadline, whichever comes first.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import itertools
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import aio
import aiohttp
import payloads
from stats import summary


@dataclass
class PlainTally:
    ok: int = 0
    errors: int = 0
    counted: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    first_error: str | None = None


def _session(concurrency: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=concurrency, keepalive_timeout=60)
    return aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,
        skip_auto_headers=("User-Agent", "Accept-Encoding"),
        cookie_jar=aiohttp.DummyCookieJar(),
    )


async def _plain_worker(
    session: aiohttp.ClientSession, url: str, tally: PlainTally, window: tuple[float, float], budget: list[int]
) -> None:
    start_window, end_window = window
    while budget[0] > 0 and time.perf_counter() < end_window:
        budget[0] -= 1
        began = time.perf_counter()
        try:
            async with session.post(url, data=payloads.PLAIN_REQUEST, headers=payloads.REQUEST_HEADERS) as r:
                await r.read()
                status = r.status
        except (aiohttp.ClientError, OSError) as exc:
            tally.errors += 1
            tally.first_error = tally.first_error or repr(exc)
            continue
        done = time.perf_counter()
        if status != 200:
            tally.errors += 1
            tally.first_error = tally.first_error or f"status {status}"
            continue
        tally.ok += 1
        if start_window <= done <= end_window:
            tally.counted += 1
        if began >= start_window:
            tally.latencies_ms.append((done - began) * 1000.0)


async def plain(args: argparse.Namespace) -> dict[str, Any]:
    tally = PlainTally()
    now = time.perf_counter()
    if args.count:
        window = (now, now + args.time_limit)
        budget = [args.count]
    else:
        window = (now + args.warmup, now + args.warmup + args.duration)
        budget = [10_000_000]
    if not args.count:
        # Markers on stdout let the orchestrator read the target's CPU time exactly at the window's edges.
        loop = asyncio.get_running_loop()
        offset = loop.time() - now
        for at, mark in ((window[0], "WINDOW start"), (window[1], "WINDOW end")):
            loop.call_at(at + offset, functools.partial(print, mark, flush=True))
    async with _session(args.concurrency) as session:
        workers = [_plain_worker(session, args.url, tally, window, budget) for _ in range(args.concurrency)]
        await asyncio.wait_for(asyncio.gather(*workers), timeout=args.time_limit + args.warmup + args.duration + 5)
    elapsed = (time.perf_counter() - window[0]) if args.count else args.duration
    counted = tally.ok if args.count else tally.counted
    return {
        "mode": "plain",
        "concurrency": args.concurrency,
        "ok": tally.ok,
        "errors": tally.errors,
        "first_error": tally.first_error,
        "seconds": round(elapsed, 4),
        "rps": round(counted / elapsed, 1) if elapsed > 0 else 0.0,
        "latency_ms": summary(tally.latencies_ms),
    }


async def _one_stream(session: aiohttp.ClientSession, url: str) -> tuple[float, float, list[float]]:
    began = time.perf_counter()
    times: list[float] = []
    last = b""
    async with session.post(url, data=payloads.STREAM_REQUEST, headers=payloads.REQUEST_HEADERS) as r:
        if r.status != 200:
            raise RuntimeError(f"status {r.status}")
        async for data in r.content.iter_any():
            now = time.perf_counter()
            times.extend([now] * (last + data).count(b"\n\n"))
            last = data[-1:]
    finished = time.perf_counter()
    if len(times) != payloads.STREAM_EVENTS:
        raise RuntimeError(f"got {len(times)} events, expected {payloads.STREAM_EVENTS}")
    gaps = [(b - a) * 1000.0 for a, b in itertools.pairwise(times)]
    return (times[0] - began) * 1000.0, (finished - began) * 1000.0, gaps


async def stream(args: argparse.Namespace) -> dict[str, Any]:
    ttfc: list[float] = []
    completion: list[float] = []
    deviations: list[float] = []
    errors: list[str] = []
    remaining = [args.streams]
    deadline = time.perf_counter() + args.time_limit

    async def worker(index: int, session: aiohttp.ClientSession) -> None:
        # One unmeasured plain request first: connections opened and code paths warm before the first stream.
        async with session.post(args.url, data=payloads.PLAIN_REQUEST, headers=payloads.REQUEST_HEADERS) as r:
            await r.read()
        # Stagger the workers across one gap so that their events do not all arrive on the same tick.
        await asyncio.sleep(index * payloads.GAP_MS / 1000.0 / args.concurrency)
        while remaining[0] > 0 and time.perf_counter() < deadline:
            remaining[0] -= 1
            try:
                first, total, gaps = await _one_stream(session, args.url)
            except (aiohttp.ClientError, OSError, RuntimeError) as exc:
                errors.append(repr(exc))
                continue
            ttfc.append(first)
            completion.append(total)
            deviations.extend(abs(gap - payloads.GAP_MS) for gap in gaps)

    async with _session(args.concurrency) as session:
        await asyncio.wait_for(
            asyncio.gather(*(worker(i, session) for i in range(args.concurrency))), timeout=args.time_limit + 10
        )
    return {
        "mode": "stream",
        "concurrency": args.concurrency,
        "ok": len(ttfc),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "ttfc_ms": [round(x, 4) for x in ttfc],
        "completion_ms": [round(x, 3) for x in completion],
        "gap_deviation_ms": [round(x, 4) for x in deviations],
    }


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("plain", "stream"))
    parser.add_argument("--url", required=True)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--count", type=int, default=0, help="plain: send exactly N requests instead")
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--time-limit", type=float, default=60.0, help="hard bound on the whole run, seconds")
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    args = parse(argv)
    if args.count:
        args.warmup, args.duration = 0.0, 0.0
    runner = plain if args.mode == "plain" else stream
    result = aio.run(runner(args))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
