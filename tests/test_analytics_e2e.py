"""Analytics end to end: traffic through the real proxy becomes rows; the CLI reads them while it records."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import duckdb
import openai
import pytest

from analytics.query import run_sql
from tests.chunks import (
    MODEL,
    make_chunk,
    make_completion,
    make_completion_choice,
    make_message,
    make_usage,
    stream_n2_interleaved,
    stream_parallel_tool_calls,
    stream_with_usage,
)
from tests.cli_process import run_cli, start_proxy_process
from tests.conftest import RunningUpstream, StartProxy, wait_for_cassettes
from tests.upstream import FakeUpstream, serve_upstream_in_thread

MESSAGES: list[Any] = [{"role": "user", "content": "Hi"}]


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    """Read as `proxy sql` does: read-only, retrying while a writer holds the file."""
    return run_sql(db, sql)[1]


def n2_with_usage() -> list[dict[str, Any]]:
    return [*stream_n2_interleaved(), make_chunk([], usage=make_usage(9, 6))]


async def test_rows_hold_exactly_what_upstream_sent(
    upstream: RunningUpstream, start_proxy: StartProxy, runner: str
) -> None:
    fake = upstream.fake
    fake.completions["plain"] = make_completion(
        [make_completion_choice(make_message("Hello there"), finish_reason="length")],
        usage=make_usage(12, 5, cached=4, reasoning=2),
    )
    fake.streams["usage"] = stream_with_usage()
    fake.streams["tools"] = [*stream_parallel_tool_calls(), make_chunk([], usage=make_usage(30, 20))]
    fake.streams["n2"] = n2_with_usage()
    proxy = await start_proxy(upstream.url, db_enabled=True, db_flush_interval=0.1, record_workers=runner)
    client = proxy.client()
    await client.chat.completions.create(model=MODEL, messages=MESSAGES, extra_headers={"x-scenario": "plain"})
    for scenario in ("usage", "tools", "n2"):
        async with client.chat.completions.stream(
            model=MODEL, messages=MESSAGES, extra_headers={"x-scenario": scenario}
        ) as stream:
            await stream.get_final_completion()
    with pytest.raises(openai.RateLimitError):
        await client.chat.completions.create(model=MODEL, messages=MESSAGES, extra_headers={"x-status": "429"})
    await client.close()
    await wait_for_cassettes(proxy.settings.cassettes, 5)
    await proxy.server.close()  # a clean stop flushes the writer

    db = proxy.settings.db_path
    assert all(json.loads(request)["model"] == MODEL for (request,) in rows(db, "SELECT request FROM interactions"))
    table = rows(
        db,
        "SELECT status, stream, prompt_tokens, completion_tokens, total_tokens, cached_tokens, reasoning_tokens, "
        "finish_reason, n_choices, usage_missing, error IS NOT NULL FROM interactions ORDER BY recorded_at",
    )
    usage_chunk = stream_with_usage()[-1]["usage"]
    assert table == [
        (200, False, 12, 5, 17, 4, 2, "length", 1, False, False),
        (
            200,
            True,
            usage_chunk["prompt_tokens"],
            usage_chunk["completion_tokens"],
            usage_chunk["total_tokens"],
            usage_chunk["prompt_tokens_details"]["cached_tokens"],
            usage_chunk["completion_tokens_details"]["reasoning_tokens"],
            "stop",
            1,
            False,
            False,
        ),
        (200, True, 30, 20, 50, None, None, "tool_calls", 1, False, False),
        (200, True, 9, 6, 15, None, None, "stop", 2, False, False),
        (429, False, None, None, None, None, None, None, None, False, True),
    ]
    choices = rows(
        db,
        "SELECT c.index, c.finish_reason, c.tool_calls, c.content_chars FROM choices c "
        "JOIN interactions i ON c.interaction_id = i.id WHERE i.n_choices = 2 ORDER BY c.index",
    )
    assert choices == [(0, "stop", 0, len("Red rose petal")), (1, "stop", 0, len("Blue sky"))]
    [(tool_calls,)] = rows(db, "SELECT tool_calls FROM choices WHERE finish_reason = 'tool_calls'")
    assert tool_calls == 3


def post_chat(proxy_url: str, scenario: str = "default") -> dict[str, Any]:
    request = urllib.request.Request(
        f"{proxy_url}/v1/chat/completions",
        data=json.dumps({"model": MODEL, "messages": MESSAGES}).encode(),
        headers={"content-type": "application/json", "authorization": "Bearer sk-x", "x-scenario": scenario},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)  # type: ignore[no-any-return]


@pytest.fixture
def threaded_upstream() -> Any:
    fake = FakeUpstream()
    fake.completions["default"] = make_completion([make_completion_choice(make_message("hi"))], usage=make_usage(3, 2))
    url, stop, thread = serve_upstream_in_thread(fake)
    yield url
    stop.set()
    thread.join(10)


def test_sql_and_stats_work_while_a_proxy_records_to_the_same_database(threaded_upstream: str, tmp_path: Path) -> None:
    db = tmp_path / "traffic.duckdb"
    proc = start_proxy_process(
        ["record", "--upstream", threaded_upstream, "--cassettes", str(tmp_path / "c"), "--db", str(db)]
    )
    try:
        for _ in range(3):
            post_chat(proc.url)
        counted = None
        for _ in range(40):  # rows land within the flush interval; bounded wait
            result = run_cli(
                [
                    "sql",
                    "SELECT count(*) AS n, sum(total_tokens) AS t FROM interactions",
                    "--db",
                    str(db),
                    "--format",
                    "csv",
                ]
            )
            assert result.returncode == 0, result.stderr
            counted = list(csv.reader(io.StringIO(result.stdout)))
            if counted[1] == ["3", "15"]:
                break
        assert counted == [["n", "t"], ["3", "15"]]
        post_chat(proc.url)  # the proxy still records after a reader had the file
        stats = run_cli(["stats", "--db", str(db)])
        assert stats.returncode == 0, stats.stderr
        assert MODEL in stats.stdout
        as_json = run_cli(["sql", "SELECT request FROM interactions LIMIT 1", "--db", str(db), "--format", "json"])
        assert json.loads(as_json.stdout)[0]["request"]["model"] == MODEL
    finally:
        code, stderr = proc.stop()
    assert code == 0, stderr
    assert rows(db, "SELECT count(*) FROM interactions") == [(4,)]


def test_sigterm_during_traffic_leaves_a_row_for_every_completed_interaction(
    threaded_upstream: str, tmp_path: Path
) -> None:
    db = tmp_path / "traffic.duckdb"
    cassettes = tmp_path / "c"
    proc = start_proxy_process(
        ["record", "--upstream", threaded_upstream, "--cassettes", str(cassettes), "--db", str(db)]
    )
    completed = 0
    stop_at = 25

    async def traffic() -> None:
        nonlocal completed
        async with aiohttp.ClientSession() as session:

            async def one() -> None:
                nonlocal completed
                body = {"model": MODEL, "messages": MESSAGES}
                try:
                    async with session.post(f"{proc.url}/v1/chat/completions", json=body) as response:
                        await response.read()
                        if response.status == 200:
                            completed += 1
                except aiohttp.ClientError:
                    pass

            for _ in range(60):
                await asyncio.gather(*(one() for _ in range(4)))
                if completed >= stop_at:
                    proc.process.send_signal(15)  # SIGTERM, to our own child, mid-traffic
                    await asyncio.gather(*(one() for _ in range(4)), return_exceptions=True)
                    return

    asyncio.run(traffic())
    code, stderr = proc.stop()
    assert code == 0, stderr
    written = list(cassettes.rglob("*.json"))
    assert len(written) >= completed
    assert rows(db, "SELECT count(*) FROM interactions") == [(len(written),)]


def test_import_twice_adds_nothing_and_export_reads_back_the_same_rows(tmp_path: Path) -> None:
    samples = Path(__file__).resolve().parent.parent / "cassettes"
    db = tmp_path / "rebuilt.duckdb"
    first = run_cli(["import", str(samples), "--db", str(db)])
    assert first.returncode == 0, first.stderr
    assert "imported 4 interaction(s)" in first.stdout
    second = run_cli(["import", str(samples), "--db", str(db)])
    assert "imported 0 interaction(s)" in second.stdout and "4 already there" in second.stdout
    out = tmp_path / "export"
    exported = run_cli(["export", "--format", "parquet", str(out), "--db", str(db)])
    assert exported.returncode == 0, exported.stderr
    with duckdb.connect() as con:
        back = con.execute(
            f"SELECT id, total_tokens, finish_reason FROM read_parquet('{out}/interactions/**/*.parquet', "
            "hive_partitioning=true) ORDER BY id"
        ).fetchall()
    assert back == rows(db, "SELECT id, total_tokens, finish_reason FROM interactions ORDER BY id")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sql", "SELEKT 1"], "syntax error"),
        (["sql", "SELECT * FROM nowhere"], "nowhere"),
    ],
)
def test_a_bad_query_is_duckdbs_message_and_exit_1(tmp_path: Path, args: list[str], message: str) -> None:
    db = tmp_path / "t.duckdb"
    run_cli(["import", str(Path(__file__).resolve().parent.parent / "cassettes"), "--db", str(db)])
    result = run_cli([*args, "--db", str(db)])
    assert result.returncode == 1
    assert message in result.stderr.lower()
    assert result.stderr.startswith("proxy: ")  # DuckDB's hints may follow on more lines (tests/test_cli_analytics.py)
    assert "Traceback" not in result.stderr


def test_a_missing_database_says_so(tmp_path: Path) -> None:
    result = run_cli(["stats", "--db", str(tmp_path / "none.duckdb")])
    assert result.returncode == 1
    assert "database not found" in result.stderr


def test_import_lists_bad_cassettes_and_imports_the_good(tmp_path: Path) -> None:
    source = Path(__file__).resolve().parent.parent / "cassettes"
    tapes = tmp_path / "tapes"
    for path in source.rglob("*.json"):
        target = tapes / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    (tapes / "broken.json").write_text("{not json")
    result = run_cli(["import", str(tapes), "--db", str(tmp_path / "t.duckdb")])
    assert result.returncode == 0
    assert "imported 4 interaction(s)" in result.stdout
    assert "broken.json" in result.stderr and "not valid JSON" in result.stderr


async def test_health_reports_database_rows(upstream: RunningUpstream, start_proxy: StartProxy) -> None:
    upstream.fake.completions["default"] = make_completion([make_completion_choice(make_message("x"))])
    proxy = await start_proxy(upstream.url, db_enabled=True, db_flush_interval=0.1)
    client = proxy.client()
    await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    await client.close()

    health: dict[str, Any] = {}
    async with aiohttp.ClientSession() as session:
        for _ in range(100):  # bounded: the writer flushes every 0.1 s
            async with session.get(f"{proxy.url}/_proxy/health") as response:
                health = await response.json()
            if health["database"]["rows_written"] == 1:
                break
            await asyncio.sleep(0.05)
    assert health["database"] == {"rows_written": 1, "write_errors": 0, "last_error": None}
