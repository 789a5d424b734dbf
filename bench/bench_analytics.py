"""Benchmark the analytics side: `import_directory` over 10,000 cassettes, `stats` (with cost, TTFT and tags)
and `proxy report` over 1,000,000 rows, and what the cost/tag/timing columns add to each recording.

Run: `python bench/bench_analytics.py [--cassettes N] [--rows N] [--seconds S] [--only NAME ...]`. Everything
happens in a temporary directory. The cassettes are written by `proxy.cassettes.write_cassette` (half streamed,
with 24 events each; half plain); the million rows are generated in DuckDB SQL from range(), not through Python.
Then: how long one writer batch locks the big file, and a writer process recording while 1 and then 3
reader processes query the same file (the concurrency design of analytics/db.py, measured).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analytics.compaction import compact
from analytics.db import reading, writing
from analytics.prices import price_table
from analytics.query import AnalyticsError, import_directory, render, run_sql, stats
from analytics.report import build_html
from analytics.rows import _request_fields, interaction_rows
from analytics.stream_metrics import stream_metrics
from analytics.writer import DuckDBWriter
from proxy.cassettes import write_cassette
from proxy.interaction import Interaction

MODELS = ("gpt-4o-mini", "gpt-4o", "o3-mini", "gpt-4.1")


def synthetic_interaction(i: int) -> Interaction:
    model = MODELS[i % len(MODELS)]
    stamp = f"2026-11-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:{(i * 7) % 60:02d}.{i % 1_000_000:06d}Z"
    content = "The answer is forty-two. " * (1 + i % 5)
    completion: dict[str, Any] = {
        "id": f"chatcmpl-{i}",
        "object": "chat.completion",
        "created": 1_795_000_000 + i,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": 100 + i % 900,
            "completion_tokens": 10 + i % 300,
            "total_tokens": 110 + i % 900 + i % 300,
            "prompt_tokens_details": {"cached_tokens": (i % 7) * 64},
            "completion_tokens_details": {"reasoning_tokens": i % 200},
        },
    }
    stream = i % 2 == 0
    request = {"model": model, "messages": [{"role": "user", "content": f"question {i}"}], "stream": stream}
    response: dict[str, Any] = {"status": 200}
    if stream:
        words = content.split(" ")
        events = [
            {
                "offset_ms": 100.0 + n * 5,
                "json": {  # as the recorder stores a JSON event (cassette format 2)
                    "id": f"chatcmpl-{i}",
                    "object": "chat.completion.chunk",
                    "model": model,
                    "choices": [{"index": 0, "delta": {"content": word + " "}, "finish_reason": None}],
                },
            }
            for n, word in enumerate(words[:23])
        ]
        events.append({"offset_ms": 300.0, "data": "[DONE]"})
        response.update(stream=True, events=events, completion=completion)
    else:
        response["body"] = {"json": completion, "layout": "compact"}
    return Interaction.model_validate(
        {
            "id": f"bench-{i:010d}",
            "metadata": {
                "recorded_at": stamp,
                "upstream": "https://api.openai.com",
                "proxy_version": "bench",
            },
            "request": {"method": "POST", "path": "/v1/chat/completions", "body": {"json": request}},
            "response": response,
            "timings": {"ttfb_ms": 90.0 + i % 50, "total_ms": 300.0 + i % 2000},
        }
    )


SYNTHETIC_ROWS_SQL = """
INSERT INTO interactions
SELECT
    printf('synthetic-%010d', i), ts, 'POST', '/v1/chat/completions',
    CASE WHEN i % 50 = 0 THEN 429 WHEN i % 333 = 0 THEN 502 ELSE 200 END,
    i % 2 = 0,
    ['gpt-4o-mini', 'gpt-4o', 'o3-mini', 'gpt-4.1'][i % 4 + 1],
    'chatcmpl-' || i,
    100 + i % 900, 10 + i % 300, 110 + i % 900 + i % 300, (i % 7) * 64,
    CASE WHEN i % 4 = 2 THEN i % 200 END,
    ['stop', 'length', 'tool_calls'][i % 3 + 1], 1,
    200.0 + (i * 7919) % 5000, 50.0 + (i * 104729) % 900,
    i % 97 = 0, i % 2 = 0 AND i % 13 = 0,
    CASE WHEN i % 50 = 0 THEN 'Rate limit reached' WHEN i % 333 = 0 THEN 'upstream unreachable' END,
    NULL, 'https://api.openai.com',
    '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}',
    '{"id":"chatcmpl","object":"chat.completion","choices":[]}',
    CASE WHEN i % 97 = 0 THEN 'stream ended without [DONE]' END,
    -- requested_model, user, metadata, tags
    ['gpt-4o-mini', 'gpt-4o', 'o3-mini', 'gpt-4.1'][i % 4 + 1], 'user-' || i % 50, NULL,
    '{"feature":"f' || i % 10 || '","test":"tests/test_' || i % 500 || '.py"}',
    -- cost_usd (NULL for one model in 101: an unpriced one), ttft_ms, output_tokens_per_s, chunks, max gap
    CASE WHEN i % 101 = 0 THEN NULL ELSE ((100 + i % 900) * 0.15 + (10 + i % 300) * 0.6) / 1e6 END,
    CASE WHEN i % 2 = 0 THEN 80.0 + (i * 104729) % 900 + i % 300 END,
    CASE WHEN i % 2 = 0 THEN 20.0 + i % 180 END,
    CASE WHEN i % 2 = 0 THEN 12 + i % 300 END,
    CASE WHEN i % 2 = 0 THEN 5.0 + (i * 31) % 700 END
FROM (SELECT range AS i, TIMESTAMP '2026-01-01' + to_seconds(range * 30) AS ts FROM range(?))
"""

SYNTHETIC_CHOICES_SQL = """
INSERT INTO choices
SELECT printf('synthetic-%010d', i), 0, ['stop', 'length', 'tool_calls'][i % 3 + 1],
    CASE WHEN i % 3 = 2 THEN 1 ELSE 0 END, 20 + i % 2000, i % 1000 = 0
FROM range(?) AS t(i)
"""


def bench_import(root: Path, count: int) -> None:
    cassettes = root / "cassettes"
    started = time.perf_counter()
    for i in range(count):
        write_cassette(cassettes, synthetic_interaction(i))
    print(f"wrote {count:,} cassettes in {time.perf_counter() - started:.1f} s (setup, not timed below)")
    db = root / "import.duckdb"
    for attempt in ("first import", "second import (all existing)"):
        started = time.perf_counter()
        report = import_directory(db, cassettes)
        took = time.perf_counter() - started
        print(
            f"{attempt}: {count / took:,.0f} interactions/s ({took:.2f} s; imported {report.imported:,}, "
            f"skipped {report.skipped_existing:,}, bad {len(report.bad)})"
        )


def bench_stats(root: Path, rows: int) -> None:
    db = root / "stats.duckdb"
    started = time.perf_counter()
    with writing(db) as con:
        con.execute(SYNTHETIC_ROWS_SQL, [rows])
        con.execute(SYNTHETIC_CHOICES_SQL, [rows])
    print(f"generated {rows:,} rows in DuckDB in {time.perf_counter() - started:.1f} s (setup)")
    # As a writer that is done leaves them (the recording worker, `proxy import`): small row groups merged.
    started = time.perf_counter()
    compact(db)
    print(f"merged their row groups in {time.perf_counter() - started:.1f} s (setup, as analytics/compaction.py)")
    timings: list[tuple[str, datetime | None, str]] = [
        ("stats(), all time, by model (cost, TTFT, tokens/s p50/p95)", None, "model"),
        ("stats(), again", None, "model"),
        ("stats(since=2026-06-01)", datetime(2026, 6, 1), "model"),
        ("stats(by=day)", None, "day"),
        ("stats(by=tag:feature)", None, "tag:feature"),
    ]
    shown = None
    for label, since, by in timings:
        started = time.perf_counter()
        sections = stats(db, since, by=by)
        print(f"{label}: {time.perf_counter() - started:.3f} s over {rows:,} rows")
        shown = shown or sections
    assert shown is not None
    for section in shown[:1] + shown[4:5]:  # cost by model, and latency
        print(section.title)
        for line in render(section.columns, section.rows, "table"):
            print("  " + line)
    for attempt in ("report (build_html), first", "report (build_html), again"):
        started = time.perf_counter()
        with reading(db) as con:
            page, count = build_html(con, cassettes=None, prices="bench")
        print(f"{attempt}: {time.perf_counter() - started:.3f} s over {count:,} rows; page {len(page) / 1024:.0f} kB")


def bench_row_columns(root: Path, count: int = 2000) -> None:
    """What the cost, tag and timing columns add to making one recording's rows (in the recording worker):
    the whole `interaction_rows`, and the new parts alone (stream metrics, pricing, request fields)."""
    items = [synthetic_interaction(i) for i in range(count)]
    table = price_table()
    for item in items[:8]:
        interaction_rows(item, "x.json", table)  # warm the price lookups (cached per model and day)
    started = time.perf_counter()
    for item in items:
        interaction_rows(item, "x.json", table)
    whole = (time.perf_counter() - started) / count * 1e6
    started = time.perf_counter()
    for item in items:
        response = item.response
        completion = response.completion or response.body.json_ or {}
        usage = completion.get("usage") or {}
        stream_metrics(response.events if response.stream else None, usage.get("completion_tokens"))
        table.price((item.model, None), item.metadata.upstream, datetime(2026, 11, 1).date())
        _request_fields(item.request.body.json_ or {})
    added = (time.perf_counter() - started) / count * 1e6
    started = time.perf_counter()
    for item in items[:500]:
        write_cassette(root / "row-columns", item)
    cassette = (time.perf_counter() - started) / 500 * 1e6
    print(
        f"interaction_rows: {whole:.1f} us per interaction (half streamed, 24 events); of which the new columns "
        f"(stream metrics, price lookup, request fields): {added:.1f} us; for scale, writing its cassette "
        f"(write_cassette, same worker): {cassette:.0f} us"
    )


def bench_writer_batches(root: Path, batches: int = 5, size: int = 100) -> None:
    """How long one writer batch holds the file when the table already has the synthetic rows."""
    writer = DuckDBWriter(root / "stats.duckdb")
    times = []
    for batch in range(batches):
        for i in range(size):
            writer.submit(synthetic_interaction(10_000_000 + batch * size + i), None)
        started = time.perf_counter()
        writer.flush()  # open, one transaction, close: the time the file is locked
        times.append(time.perf_counter() - started)
    times.sort()
    print(
        f"writer batch of {size} into the big table (open + insert + close): median "
        f"{times[len(times) // 2] * 1000:.0f} ms, max {times[-1] * 1000:.0f} ms; errors {writer.write_errors}"
    )


def _now_interaction(n: int) -> Interaction:
    interaction = synthetic_interaction(n)
    stamp = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    interaction.metadata.recorded_at = stamp
    interaction.id = f"live-{n:010d}"
    return interaction


async def _writer_role(db: Path, seconds: float, rate: float) -> dict[str, Any]:
    writer = DuckDBWriter(db, flush_interval=0.5)
    writer.start()
    submitted, started = 0, time.monotonic()
    while time.monotonic() - started < seconds:
        writer.submit(_now_interaction(submitted), None)
        submitted += 1
        await asyncio.sleep(1 / rate)
    writer.close()
    return {"submitted": submitted, "written": writer.rows_written, "write_errors": writer.write_errors}


def _reader_role(db: Path, seconds: float) -> dict[str, Any]:
    lags, slowest, failed, started = [], 0.0, 0, time.monotonic()
    while time.monotonic() - started < seconds:
        began = time.monotonic()
        try:
            _, rows = run_sql(db, "SELECT max(recorded_at) FROM interactions")
        except AnalyticsError:
            failed += 1
            continue
        slowest = max(slowest, time.monotonic() - began)
        if rows[0][0] is not None:
            lags.append((datetime.now(UTC).replace(tzinfo=None) - rows[0][0]).total_seconds())
        time.sleep(0.05)
    lags.sort()
    return {"reads": len(lags), "failed": failed, "lag_p50": lags[len(lags) // 2], "lag_max": lags[-1],
            "slowest_read": slowest}  # fmt: skip


def bench_concurrent(root: Path, seconds: float, readers: int, rate: float = 200.0) -> None:
    """A writer process records at `rate`/s while reader processes run `run_sql` every 50 ms."""
    db = root / f"live-{readers}.duckdb"
    me = [sys.executable, __file__]
    writer = subprocess.Popen([*me, "--role", "writer", str(db), str(seconds), str(rate)], stdout=subprocess.PIPE)
    time.sleep(1.0)  # the writer creates the database
    procs = [
        subprocess.Popen([*me, "--role", "reader", str(db), str(seconds - 1.5)], stdout=subprocess.PIPE)
        for _ in range(readers)
    ]
    results = [json.loads(proc.communicate()[0]) for proc in procs]
    written = json.loads(writer.communicate()[0])
    print(
        f"concurrent, {readers} reader process(es) polling every 50 ms while a writer process records "
        f"{rate:.0f}/s for {seconds:.0f} s: writer {written}"
    )
    for result in results:
        print(
            f"  reader: {result['reads']} reads, {result['failed']} failed; newest row visible after "
            f"p50 {result['lag_p50']:.2f} s, max {result['lag_max']:.2f} s; slowest read "
            f"{result['slowest_read']:.2f} s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cassettes", type=int, default=10_000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=8.0, help="length of the concurrent run")
    parser.add_argument("--only", nargs="+", choices=("import", "stats", "rows", "writer", "concurrent"))
    parser.add_argument("--role", nargs="+", help=argparse.SUPPRESS)  # a child process of bench_concurrent
    args = parser.parse_args()
    if args.role and args.role[0] == "writer":
        print(json.dumps(asyncio.run(_writer_role(Path(args.role[1]), *map(float, args.role[2:4])))))
        return
    if args.role and args.role[0] == "reader":
        print(json.dumps(_reader_role(Path(args.role[1]), float(args.role[2]))))
        return
    only = set(args.only or ("import", "stats", "rows", "writer", "concurrent"))
    with tempfile.TemporaryDirectory(prefix="bench-analytics-") as tmp:
        if "import" in only:
            bench_import(Path(tmp), args.cassettes)
        if "stats" in only or "writer" in only:
            bench_stats(Path(tmp), args.rows)
        if "rows" in only:
            bench_row_columns(Path(tmp))
        if "writer" in only:
            bench_writer_batches(Path(tmp))
        if "concurrent" in only:
            for readers in (1, 3):
                bench_concurrent(Path(tmp), args.seconds, readers)


if __name__ == "__main__":
    main()
