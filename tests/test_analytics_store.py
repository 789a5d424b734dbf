"""The DuckDB side end to end: the background writer, readers in other processes, import, export, stats,
rendering and errors. Real database files in tmp_path; cassettes written by proxy.cassettes.write_cassette."""

from __future__ import annotations

import asyncio
import csv
import json
import logging
import os
import subprocess
import sys
import time
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

from analytics.db import writing
from analytics.lake import lake_connection
from analytics.query import (
    AnalyticsError,
    JSONText,
    export_parquet,
    import_directory,
    render,
    run_sql,
    stats,
)
from analytics.rows import interaction_rows
from analytics.schema import CHOICE_NAMES, INTERACTION_NAMES, MIGRATIONS
from analytics.store import write_batch
from analytics.views import VIEWS, VIEWS_V2
from analytics.writer import BATCH_ROWS, DuckDBWriter
from proxy.cassettes import write_cassette
from proxy.interaction import (
    Body,
    Interaction,
    Metadata,
    Outcome,
    RecordedEvent,
    RecordedRequest,
    RecordedResponse,
    Timings,
)

ROOT = Path(__file__).resolve().parents[1]


def make_interaction(
    n: int,
    *,
    model: str = "gpt-4o-mini",
    day: str = "2026-11-22",
    status: int = 200,
    stream: bool = False,
    prompt: int = 10,
    completion: int = 5,
    cached: int | None = None,
    reasoning: int | None = None,
    usage: bool = True,
    finish: str | None = "stop",
    latency: float = 400.0,
    ttfb: float = 100.0,
    error: str | None = None,
    incomplete_reason: str | None = None,
    ident: str | None = None,
) -> Interaction:
    """One recorded exchange; the keyword that differs from the default names what a test is about."""
    result: dict[str, Any] = {
        "id": f"chatcmpl-{n}",
        "object": "chat.completion",
        "created": 1_795_000_000 + n,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": f"Answer {n}"}, "finish_reason": finish}],
    }
    if usage:
        result["usage"] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        if cached is not None:
            result["usage"]["prompt_tokens_details"] = {"cached_tokens": cached}
        if reasoning is not None:
            result["usage"]["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    response = RecordedResponse(status=status, stream=stream)
    if status >= 400:
        response.body = Body(json_={"error": {"message": f"upstream says no ({status})", "type": "x", "code": None}})
    elif stream:
        response.events = [
            RecordedEvent(offset_ms=ttfb, data=json.dumps({"object": "chat.completion.chunk", "choices": []})),
            RecordedEvent(offset_ms=latency, data="[DONE]"),
        ]
        response.completion = result
    else:
        response.body = Body(json_=result, layout="compact")
    incomplete = incomplete_reason is not None or error is not None
    return Interaction(
        id=ident or f"{day.replace('-', '')}T035800-{n:012x}",
        metadata=Metadata(
            recorded_at=f"{day}T03:58:{n % 60:02d}.{n:06d}Z",
            upstream="https://api.openai.com",
            proxy_version="t",
        ),
        request=RecordedRequest(
            method="POST",
            path="/v1/chat/completions",
            headers=[("authorization", "Bearer <redacted>")],
            body=Body(json_={"model": model, "messages": [{"role": "user", "content": f"Q{n}"}], "stream": stream}),
        ),
        response=response,
        timings=Timings(ttfb_ms=ttfb, total_ms=latency),
        outcome=Outcome(
            complete=not incomplete,
            error=error,
            incomplete_reason=incomplete_reason,
            usage_missing=stream and not usage,
        ),
    )


def count(db: Path, table: str = "interactions") -> int:
    return int(run_sql(db, f"SELECT count(*) FROM {table}")[1][0][0])


async def wait_for_count(db: Path, expected: int, timeout: float = 5.0) -> float:
    """Seconds until the table holds `expected` rows, read as `proxy sql` would (in a thread)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if db.exists() and await asyncio.to_thread(count, db) >= expected:
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    raise AssertionError(f"{db} did not reach {expected} rows within {timeout} s")


def write_cassettes(directory: Path, interactions: list[Interaction]) -> list[Path]:
    return [write_cassette(directory, interaction) for interaction in interactions]


# --- schema ---


def test_rows_match_the_table_columns() -> None:
    row, choices = interaction_rows(make_interaction(1), None)
    assert tuple(row) == INTERACTION_NAMES
    assert tuple(choices[0]) == CHOICE_NAMES


def test_migrations_are_recorded_and_applied_once(tmp_path: Path) -> None:
    db = tmp_path / "traffic.duckdb"
    import_directory(db, tmp_path)  # creates the database
    import_directory(db, tmp_path)
    names = [row[0] for row in run_sql(db, "SELECT name FROM schema_migrations ORDER BY applied_at, name")[1]]
    assert sorted(names) == sorted(migration.__name__ for migration in MIGRATIONS)


def test_views_exist_and_are_documented(tmp_path: Path) -> None:
    db = tmp_path / "traffic.duckdb"
    import_directory(db, tmp_path)
    _, rows = run_sql(db, "SELECT view_name, comment FROM duckdb_views() WHERE NOT internal ORDER BY view_name")
    assert [name for name, _ in rows] == sorted({**VIEWS, **VIEWS_V2})
    assert all(comment for _, comment in rows)


def test_a_keyed_interactions_table_loses_its_key_and_keeps_its_rows(tmp_path: Path) -> None:
    db = tmp_path / "traffic.duckdb"
    con = duckdb.connect(str(db))  # as the previous version left it: every migration but the last, two rows
    con.execute("CREATE TABLE schema_migrations (name VARCHAR PRIMARY KEY, applied_at TIMESTAMP)")
    for migration in MIGRATIONS[:-1]:
        migration(con)
        con.execute("INSERT INTO schema_migrations VALUES (?, now())", [migration.__name__])
    old = [interaction_rows(make_interaction(n), None) for n in (1, 2)]
    write_batch(con, old)
    before = con.execute("SELECT * FROM interactions ORDER BY id").fetchall()
    con.close()

    with writing(db) as con:
        keys = con.execute("SELECT count(*) FROM duckdb_constraints() WHERE table_name = 'interactions'").fetchone()
        assert keys == (0,)
        assert con.execute("SELECT * FROM interactions ORDER BY id").fetchall() == before
        again = [interaction_rows(make_interaction(n), None) for n in (2, 3)]
        assert write_batch(con, again) == 1  # the stored one is still recognised by its id
        assert write_batch(con, again, just_recorded=True) == 0
    assert (count(db), count(db, "choices")) == (3, 3)


def test_what_a_writer_spills_goes_beside_the_database_not_into_the_working_directory(tmp_path: Path) -> None:
    # A read-write connection attaches the file to an in-memory database (db.py), whose own default would
    # be `.tmp` in whatever directory the proxy was started from.
    db = tmp_path / "data" / "traffic.duckdb"
    with writing(db) as con:
        assert con.execute("SELECT current_setting('temp_directory')").fetchone() == (f"{db}.tmp",)


def test_a_batch_written_twice_by_the_proxys_writer_is_stored_once(tmp_path: Path) -> None:
    # After a recording worker dies, its batches are sent again: the same rows, the same recorded_at.
    batch = [
        interaction_rows(make_interaction(n, day=day), None) for n in (1, 2) for day in ("2026-11-20", "2026-11-22")
    ]
    with writing(tmp_path / "traffic.duckdb") as con:
        assert write_batch(con, batch, just_recorded=True) == 4
        assert write_batch(con, batch[1:], just_recorded=True) == 0
        assert write_batch(con, list(reversed(batch)), just_recorded=True) == 0
    assert count(tmp_path / "traffic.duckdb") == 4


# --- the background writer ---


async def test_writer_inserts_a_burst_as_one_batch(tmp_path: Path) -> None:
    db = tmp_path / "traffic.duckdb"
    writer = DuckDBWriter(db, flush_interval=0.2)
    writer.start()
    for n in range(200):
        writer.submit(make_interaction(n), f"20261122/{n}.json")
    # the first time any row is visible, all 200 are: they went in as one transaction
    started = time.monotonic()
    seen = 0
    while seen == 0 and time.monotonic() - started < 5:
        seen = await asyncio.to_thread(count, db)
        await asyncio.sleep(0.01)
    assert seen == 200
    assert count(db, "choices") == 200
    writer.close()
    assert (writer.rows_written, writer.write_errors, writer.last_error) == (200, 0, None)


async def test_writer_keeps_writing_batches_while_running(tmp_path: Path) -> None:
    db = tmp_path / "traffic.duckdb"
    writer = DuckDBWriter(db, flush_interval=0.1)
    writer.start()
    for round_ in range(3):
        for n in range(round_ * 10, round_ * 10 + 10):
            writer.submit(make_interaction(n), None)
        await wait_for_count(db, round_ * 10 + 10)
    writer.close()
    assert writer.rows_written == 30


async def test_close_flushes_every_buffered_row(tmp_path: Path) -> None:
    db = tmp_path / "traffic.duckdb"
    writer = DuckDBWriter(db, flush_interval=3600)  # never flushes on its own
    writer.start()
    for n in range(50):
        writer.submit(make_interaction(n), None)
    writer.close()
    assert count(db) == 50
    assert writer.rows_written == 50
    assert writer.pending == 0


async def test_the_cassette_path_is_stored(tmp_path: Path) -> None:
    db = tmp_path / "traffic.duckdb"
    writer = DuckDBWriter(db)
    writer.start()
    writer.submit(make_interaction(1), "20261122/035801-chat-completions-gpt-4o-mini-00000001.json")
    writer.submit(make_interaction(2), None)
    writer.close()
    _, rows = run_sql(db, "SELECT cassette FROM interactions ORDER BY id")
    assert rows == [("20261122/035801-chat-completions-gpt-4o-mini-00000001.json",), (None,)]


def _unusable_db_paths(tmp_path: Path) -> dict[str, Path]:
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("x")
    a_dir = tmp_path / "a-folder.duckdb"
    a_dir.mkdir()
    return {"parent is a file": a_file / "traffic.duckdb", "directory at the db path": a_dir}


@pytest.mark.parametrize("case", ["parent is a file", "directory at the db path"])
async def test_a_failing_database_is_counted_and_logged_once_never_raised(
    tmp_path: Path, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    db = _unusable_db_paths(tmp_path)[case]
    writer = DuckDBWriter(db, flush_interval=0.05)
    with caplog.at_level(logging.ERROR, logger="proxy.analytics"):
        writer.start()
        for n in range(5):
            writer.submit(make_interaction(n), None)
            await asyncio.sleep(0.08)
        writer.close()
    assert writer.write_errors >= 3
    assert writer.rows_written == 0
    assert writer.last_error is not None and str(db) in writer.last_error
    failures = [r for r in caplog.records if r.name == "proxy.analytics" and "cannot write" in r.getMessage()]
    assert len(failures) == 1


async def test_a_failed_batch_is_kept_and_written_when_the_database_recovers(tmp_path: Path) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("a file where the database folder should be")
    db = blocker / "traffic.duckdb"
    writer = DuckDBWriter(db, flush_interval=0.05)
    writer.start()
    for n in range(20):
        writer.submit(make_interaction(n), None)
    await asyncio.sleep(0.3)
    assert writer.write_errors > 0 and writer.pending == 20
    blocker.unlink()  # the folder can be created now
    await wait_for_count(db, 20)
    writer.close()
    assert (writer.rows_written, writer.last_error, writer.pending) == (20, None, 0)


async def test_the_buffer_is_bounded_and_drops_the_oldest(tmp_path: Path) -> None:
    writer = DuckDBWriter(tmp_path / "traffic.duckdb", flush_interval=3600, max_buffered=10)
    for n in range(15):
        writer.submit(make_interaction(n), None)  # before start(): nothing is written yet
    assert (writer.pending, writer.rows_dropped) == (10, 5)
    writer.close()
    _, rows = run_sql(tmp_path / "traffic.duckdb", "SELECT min(id), count(*) FROM interactions")
    assert rows == [(make_interaction(5).id, 10)]


async def test_a_backlog_bigger_than_one_batch_is_written_in_several(tmp_path: Path) -> None:
    # Rows kept while the file was busy go in BATCH_ROWS at a time, and all of them in the one flush.
    writer = DuckDBWriter(tmp_path / "traffic.duckdb", flush_interval=3600)
    total = BATCH_ROWS + BATCH_ROWS // 4
    for n in range(total):
        writer.submit(make_interaction(n), None)  # before start(): all wait in the buffer
    writer.flush()
    assert (writer.rows_written, writer.pending) == (total, 0)
    writer.close()
    _, rows = run_sql(tmp_path / "traffic.duckdb", "SELECT count(DISTINCT id) FROM interactions")
    assert rows == [(total,)]


async def test_submit_after_close_is_counted_not_raised(tmp_path: Path) -> None:
    writer = DuckDBWriter(tmp_path / "traffic.duckdb")
    writer.start()
    writer.close()
    writer.submit(make_interaction(1), None)
    assert writer.rows_dropped == 1


async def test_a_row_the_database_refuses_is_dropped_alone(tmp_path: Path) -> None:
    db = tmp_path / "traffic.duckdb"
    bad = make_interaction(2)
    bad.request.body = Body(json_={"text": "lone surrogate \ud800"})  # valid in Python, not in UTF-8 / JSON
    writer = DuckDBWriter(db)
    writer.start()
    for interaction in (make_interaction(1), bad, make_interaction(3)):
        writer.submit(interaction, None)
    writer.close()
    assert count(db) == 2
    assert (writer.rows_written, writer.rows_dropped, writer.write_errors) == (2, 1, 1)


async def test_a_row_bigger_than_the_writers_memory_bound_is_still_written(tmp_path: Path) -> None:
    # The writer's DuckDB memory is bounded, and its JSON reader wants twice the largest row: a prompt
    # carrying a few images must still reach the table, and the rows around it too.
    db = tmp_path / "traffic.duckdb"
    big = make_interaction(2)
    big.request.body = Body(json_={"text": "x" * 12_000_000})
    writer = DuckDBWriter(db)
    writer.start()
    for interaction in (make_interaction(1), big, make_interaction(3)):
        writer.submit(interaction, None)
    writer.close()
    _, rows = run_sql(db, "SELECT id, length(request->>'$.text') FROM interactions ORDER BY id")
    assert rows == [(make_interaction(1).id, None), (big.id, 12_000_000), (make_interaction(3).id, None)]
    assert (writer.rows_written, writer.rows_dropped, writer.write_errors) == (3, 0, 0)


# --- concurrency: readers in other processes while the writer runs ---

READER = r"""
import json, sys, time
from analytics.query import AnalyticsError, run_sql

db, marker = sys.argv[1], sys.argv[2]
print("ready", flush=True)
failures, counts, started = 0, set(), time.monotonic()
while time.monotonic() - started < 15:
    try:
        _, rows = run_sql(db, f"SELECT count(*) FILTER (WHERE id = '{marker}'), count(*) FROM interactions")
    except AnalyticsError as exc:
        failures += 1
        print("error", exc, file=sys.stderr, flush=True)
        continue
    counts.add(rows[0][1])
    if rows[0][0]:
        print(json.dumps({"failures": failures, "distinct_counts": len(counts)}), flush=True)
        break
    time.sleep(0.02)
"""


async def test_a_reader_process_sees_new_rows_within_a_second_or_two(tmp_path: Path) -> None:
    db = tmp_path / "traffic.duckdb"
    writer = DuckDBWriter(db, flush_interval=0.5)
    writer.start()
    running = True

    async def traffic() -> None:
        n = 0
        while running:
            writer.submit(make_interaction(n), None)
            n += 1
            await asyncio.sleep(0.005)

    feeder = asyncio.create_task(traffic())
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    marker = make_interaction(999_999, day="2026-11-23")
    reader = await asyncio.create_subprocess_exec(
        sys.executable, "-c", READER, str(db), marker.id,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=str(ROOT),
    )  # fmt: skip
    try:
        assert reader.stdout is not None
        assert (await asyncio.wait_for(reader.stdout.readline(), 30)).strip() == b"ready"
        await asyncio.sleep(1.0)  # the reader is polling and the writer is writing
        writer.submit(marker, None)
        submitted = time.monotonic()
        line = await asyncio.wait_for(reader.stdout.readline(), 15)
        seen_after = time.monotonic() - submitted
    finally:
        running = False
        await feeder
        if reader.returncode is None:
            reader.kill()
        await reader.communicate()  # drains and closes the pipes
    writer.close()
    result = json.loads(line)
    assert result["failures"] == 0
    assert result["distinct_counts"] >= 2  # it read while the table grew
    assert seen_after < 2.0
    assert writer.write_errors == 0


async def test_run_sql_in_a_thread_of_the_recording_process_while_the_writer_runs(tmp_path: Path) -> None:
    db = tmp_path / "traffic.duckdb"
    writer = DuckDBWriter(db, flush_interval=0.05)
    writer.start()
    results = []
    for n in range(40):
        writer.submit(make_interaction(n), None)
        results.append(await asyncio.to_thread(count, db))
        await asyncio.sleep(0.05)
    writer.close()
    assert results == sorted(results)
    assert writer.write_errors == 0 and count(db) == 40


HOLDER = r"""
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
"""


def test_a_reader_waits_for_a_writer_in_another_process(tmp_path: Path) -> None:
    db = tmp_path / "traffic.duckdb"
    import_directory(db, tmp_path)
    command = [sys.executable, "-c", HOLDER, str(db), "0.8"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as holder:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        assert count(db) == 0
        waited = time.monotonic() - started
    assert waited > 0.3


async def test_the_writer_retries_while_another_process_holds_the_file(tmp_path: Path) -> None:
    db = tmp_path / "traffic.duckdb"
    writer = DuckDBWriter(db, flush_interval=0.1, lock_timeout=0.2)
    writer.start()
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, str(db), "1.0", stdout=asyncio.subprocess.PIPE
    )
    try:
        assert holder.stdout is not None and (await holder.stdout.readline()).strip() == b"locked"
        for n in range(10):
            writer.submit(make_interaction(n), None)
        await asyncio.sleep(0.6)
        assert writer.last_error is not None and "locked by another process" in writer.last_error
        assert writer.pending == 10
    finally:
        await holder.communicate()
    await wait_for_count(db, 10)
    writer.close()
    assert (writer.rows_written, writer.last_error) == (10, None)


def test_a_reader_lets_a_waiting_writer_go_first_but_not_forever(tmp_path: Path) -> None:
    db = tmp_path / "traffic.duckdb"
    import_directory(db, tmp_path)
    flag = tmp_path / "traffic.duckdb.writer-waiting"
    flag.touch()  # a writer waiting for the file (that never gets it: the reader gives up waiting)
    started = time.monotonic()
    assert count(db) == 0
    assert 0.9 < time.monotonic() - started < 3.0


def test_a_flag_left_by_a_dead_writer_is_ignored(tmp_path: Path) -> None:
    db = tmp_path / "traffic.duckdb"
    import_directory(db, tmp_path)
    flag = tmp_path / "traffic.duckdb.writer-waiting"
    flag.touch()
    old = time.time() - 60
    os.utime(flag, (old, old))
    started = time.monotonic()
    assert count(db) == 0
    assert time.monotonic() - started < 0.5


async def test_the_writer_removes_its_flag_once_it_gets_the_file(tmp_path: Path) -> None:
    db = tmp_path / "traffic.duckdb"
    writer = DuckDBWriter(db, flush_interval=0.05)
    writer.start()
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, str(db), "0.5", stdout=asyncio.subprocess.PIPE
    )
    try:
        assert holder.stdout is not None and (await holder.stdout.readline()).strip() == b"locked"
        writer.submit(make_interaction(1), None)
        await asyncio.sleep(0.3)
        assert (tmp_path / "traffic.duckdb.writer-waiting").exists()
    finally:
        await holder.communicate()
    await wait_for_count(db, 1)
    writer.close()
    assert not (tmp_path / "traffic.duckdb.writer-waiting").exists()
    assert writer.write_errors == 0


OPENS_WITHOUT_ASKING = r"""
import sys, duckdb
try:
    duckdb.connect(sys.argv[1], read_only=True).close()
    print("opened")
except duckdb.IOException as exc:
    print("locked" if "Could not set lock" in str(exc) else repr(exc))
"""


def opens_without_asking(db: Path) -> str:
    """Whether another process gets the file without raising the `wanted` flag (as a plain duckdb client)."""
    command = [sys.executable, "-c", OPENS_WITHOUT_ASKING, str(db)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout.strip()


async def test_the_writer_holds_the_file_while_rows_keep_coming_and_lets_go_when_asked(tmp_path: Path) -> None:
    db = tmp_path / "traffic.duckdb"
    writer = DuckDBWriter(db, flush_interval=0.05)
    writer.start()
    feeding = True

    async def feed() -> None:
        n = 0
        while feeding:
            writer.submit(make_interaction(n), None)
            n += 1
            await asyncio.sleep(0.02)

    feeder = asyncio.create_task(feed())
    try:
        await eventually_written(writer, 1)
        assert await asyncio.to_thread(opens_without_asking, db) == "locked"  # held between batches
        started = time.monotonic()
        assert await asyncio.to_thread(count, db) >= 1  # run_sql asks for the file, and gets in
        assert time.monotonic() - started < 2.0
        assert not (tmp_path / "traffic.duckdb.wanted").exists()  # withdrawn once the reader is done
    finally:
        feeding = False
        await feeder
        writer.close()
    assert await asyncio.to_thread(opens_without_asking, db) == "opened"  # a closed writer holds nothing
    assert writer.write_errors == 0 and count(db) == writer.rows_written


async def test_an_idle_writer_lets_go_of_the_file(tmp_path: Path) -> None:
    db = tmp_path / "traffic.duckdb"
    writer = DuckDBWriter(db, flush_interval=0.05)
    writer.start()
    try:
        writer.submit(make_interaction(1), None)
        await eventually_written(writer, 1)
        started = time.monotonic()
        while await asyncio.to_thread(opens_without_asking, db) != "opened":  # any DuckDB client, no flag
            assert time.monotonic() - started < 10, "the writer kept the file while idle"
        writer.submit(make_interaction(2), None)
        await eventually_written(writer, 2)  # and takes it back for the next batch
    finally:
        writer.close()
    assert count(db) == 2 and writer.write_errors == 0


async def test_a_database_deleted_under_the_writer_is_created_again(tmp_path: Path) -> None:
    db = tmp_path / "traffic.duckdb"
    writer = DuckDBWriter(db, flush_interval=0.05)
    writer.start()
    try:
        writer.submit(make_interaction(1), None)
        await eventually_written(writer, 1)
        db.unlink()
        writer.submit(make_interaction(2), None)
        await eventually_written(writer, 2)
    finally:
        writer.close()
    assert run_sql(db, "SELECT id FROM interactions")[1] == [(make_interaction(2).id,)]
    assert writer.write_errors == 0


async def eventually_written(writer: DuckDBWriter, rows: int, timeout: float = 5.0) -> None:
    started = time.monotonic()
    while writer.rows_written < rows:
        assert time.monotonic() - started < timeout, f"{writer.rows_written} rows written, not {rows}"
        await asyncio.sleep(0.02)


# --- import and export ---


def mixed_traffic() -> list[Interaction]:
    return [
        make_interaction(1, day="2026-11-21", prompt=10, completion=1, latency=100.0, ttfb=10.0),
        make_interaction(2, day="2026-11-21", prompt=20, completion=2, cached=5, latency=200.0, ttfb=20.0),
        make_interaction(3, prompt=30, completion=3, latency=300.0, ttfb=30.0),
        make_interaction(
            4,
            model="o3-mini",
            stream=True,
            prompt=1000,
            completion=500,
            cached=64,
            reasoning=128,
            latency=1000.0,
        ),
        make_interaction(5, stream=True, usage=False, finish="length", latency=500.0),
        make_interaction(6, status=429, usage=False, latency=5.0),
        make_interaction(7, stream=True, usage=False, finish=None, incomplete_reason="stream ended without [DONE]"),
    ]


def test_import_is_idempotent(tmp_path: Path) -> None:
    cassettes = tmp_path / "cassettes"
    write_cassettes(cassettes, mixed_traffic())
    db = tmp_path / "traffic.duckdb"
    first = import_directory(db, cassettes)
    second = import_directory(db, cassettes)
    assert (first.imported, first.skipped_existing, first.bad) == (7, 0, [])
    assert (second.imported, second.skipped_existing, second.bad) == (0, 7, [])
    assert (count(db), count(db, "choices")) == (7, 6)


def test_import_stores_paths_relative_to_the_cassette_directory(tmp_path: Path) -> None:
    cassettes = tmp_path / "cassettes"
    [path] = write_cassettes(cassettes, [make_interaction(1)])
    import_directory(tmp_path / "traffic.duckdb", cassettes)
    assert run_sql(tmp_path / "traffic.duckdb", "SELECT cassette FROM interactions")[1] == [
        (str(path.relative_to(cassettes)),)
    ]


def test_import_reports_bad_cassettes_and_keeps_going(tmp_path: Path) -> None:
    cassettes = tmp_path / "cassettes"
    write_cassettes(cassettes, [make_interaction(1), make_interaction(2)])
    (cassettes / "broken.json").write_text("{not json")
    (cassettes / "future.json").write_text(json.dumps({"version": 99}))
    report = import_directory(tmp_path / "traffic.duckdb", cassettes, batch_size=1)
    assert report.imported == 2
    assert sorted((bad.path.name, bad.reason.split(":")[0]) for bad in report.bad) == [
        ("broken.json", "not valid JSON"),
        ("future.json", "unknown format version 99 (this proxy reads versions 1 to 2)"),
    ]


async def test_import_skips_what_the_writer_already_wrote(tmp_path: Path) -> None:
    cassettes, db = tmp_path / "cassettes", tmp_path / "traffic.duckdb"
    traffic = mixed_traffic()
    write_cassettes(cassettes, traffic)
    writer = DuckDBWriter(db)
    writer.start()
    for interaction in traffic[:3]:
        writer.submit(interaction, None)
    writer.close()
    report = import_directory(db, cassettes)
    assert (report.imported, report.skipped_existing) == (4, 3)


def test_import_of_a_missing_directory_is_an_analytics_error(tmp_path: Path) -> None:
    with pytest.raises(AnalyticsError, match=r"^cassette directory not found: "):
        import_directory(tmp_path / "traffic.duckdb", tmp_path / "nope")


def test_export_writes_parquet_by_day_that_reads_back_the_same(tmp_path: Path) -> None:
    cassettes, db, out = tmp_path / "cassettes", tmp_path / "traffic.duckdb", tmp_path / "out"
    write_cassettes(cassettes, mixed_traffic())
    import_directory(db, cassettes)
    report = export_parquet(db, out)
    again = export_parquet(db, out)  # again: nothing new, nothing duplicated
    assert (report.interactions, report.choices) == (7, 6)
    assert (again.interactions, again.choices, again.run_id) == (0, 0, None)
    assert sorted(p.name for p in (out / "interactions").iterdir()) == ["day=2026-11-21", "day=2026-11-22"]
    assert sorted(p.name for p in (out / "choices").iterdir()) == ["day=2026-11-21", "day=2026-11-22"]
    lake = lake_connection(out)  # the lake's views give back the local tables' columns and types
    try:
        for table, key in (("interactions", "id"), ("choices", "interaction_id")):
            exported = lake.execute(f"SELECT * FROM {table} ORDER BY {key}").fetchall()
            original = duckdb.connect(str(db), read_only=True)
            try:
                stored = original.execute(f"SELECT * FROM {table} ORDER BY {key}").fetchall()
            finally:
                original.close()
            assert exported == stored
    finally:
        lake.close()
    con = duckdb.connect()
    try:
        days = con.execute(
            f"SELECT DISTINCT interaction_id, day FROM read_parquet('{out}/choices/**/*.parquet', "
            "hive_partitioning=true) ORDER BY 1"
        ).fetchall()
    finally:
        con.close()
    by_id = {interaction.id: interaction.metadata.recorded_at[:10] for interaction in mixed_traffic()}
    assert all(str(day) == by_id[interaction_id] for interaction_id, day in days)


# --- stats ---


@pytest.fixture
def traffic_db(tmp_path: Path) -> Path:
    cassettes, db = tmp_path / "cassettes", tmp_path / "traffic.duckdb"
    write_cassettes(cassettes, mixed_traffic())
    import_directory(db, cassettes)
    return db


def section(sections: list[Any], title_start: str) -> list[dict[str, Any]]:
    [match] = [s for s in sections if s.title.startswith(title_start)]
    return [dict(zip(match.columns, row, strict=True)) for row in match.rows]


def test_stats_sections(traffic_db: Path) -> None:
    sections = stats(traffic_db, None)
    assert [s.title for s in sections] == [
        "Cost, latency, time to first token and tokens/s by model",
        "Requests and tokens by model",
        "Requests and tokens by day (UTC)",
        "Finish reasons",
        "Latency and time to first byte, ms (successful responses)",
        "Errors and incomplete",
        "Most frequent errors",
        "Models without a price (cost_usd is NULL: add them under [prices] in the config)",
    ]
    by_model = {row["model"]: row for row in section(sections, "Requests and tokens by model")}
    mini = by_model["gpt-4o-mini"]
    assert (mini["requests"], mini["errors"], mini["incomplete"]) == (6, 1, 1)
    assert (mini["prompt_tokens"], mini["completion_tokens"], mini["cached_tokens"]) == (60, 6, 5)
    o3 = by_model["o3-mini"]
    assert (o3["prompt_tokens"], o3["completion_tokens"], o3["cached_tokens"], o3["reasoning_tokens"]) == (
        1000,
        500,
        64,
        128,
    )
    by_day = {row["day"]: row["requests"] for row in section(sections, "Requests and tokens by day")}
    assert by_day == {date(2026, 11, 21): 2, date(2026, 11, 22): 5}
    finish = {row["finish_reason"]: row["choices"] for row in section(sections, "Finish reasons")}
    assert finish == {"stop": 4, "length": 1, "(none)": 1}
    latency = {row["model"]: row for row in section(sections, "Latency")}
    assert latency["(all)"]["requests"] == 6  # the 429 is not a successful response
    assert latency["o3-mini"]["latency_p50_ms"] == 1000.0
    [totals] = section(sections, "Errors and incomplete")
    assert totals == {
        "requests": 7,
        "errors": 1,
        "status_4xx": 1,
        "status_5xx_or_none": 0,
        "incomplete": 1,
        "streams": 3,
        "streams_without_usage": 2,
    }
    top = section(sections, "Most frequent errors")
    assert [(row["status"], row["error"]) for row in top] == [
        (200, "stream ended without [DONE]"),
        (429, "upstream says no (429)"),
    ]


def test_stats_since_leaves_out_older_traffic(traffic_db: Path) -> None:
    sections = stats(traffic_db, datetime(2026, 11, 22))
    [totals] = section(sections, "Errors and incomplete")
    assert totals["requests"] == 5
    assert [row["day"] for row in section(sections, "Requests and tokens by day")] == [date(2026, 11, 22)]


def test_stats_on_an_empty_database(tmp_path: Path) -> None:
    db = tmp_path / "traffic.duckdb"
    import_directory(db, tmp_path)
    [totals] = section(stats(db, None), "Errors and incomplete")
    assert totals["requests"] == 0


# --- run_sql and render ---


def test_run_sql_returns_columns_and_rows(traffic_db: Path) -> None:
    columns, rows = run_sql(traffic_db, "SELECT model, count(*) AS n FROM interactions GROUP BY 1 ORDER BY 1")
    assert columns == ["model", "n"]
    assert rows == [("gpt-4o-mini", 6), ("o3-mini", 1)]


def test_the_views_can_be_queried_directly(traffic_db: Path) -> None:
    for view in VIEWS:
        columns, _ = run_sql(traffic_db, f"SELECT * FROM {view}")
        assert columns


def test_run_sql_marks_json_columns(traffic_db: Path) -> None:
    _, rows = run_sql(traffic_db, "SELECT request, request->'messages' AS messages FROM interactions LIMIT 1")
    assert all(isinstance(value, JSONText) for value in rows[0])


def test_json_output_nests_json_columns_and_writes_iso_timestamps(traffic_db: Path) -> None:
    columns, rows = run_sql(
        traffic_db, "SELECT id, recorded_at, request, response FROM interactions ORDER BY id LIMIT 2"
    )
    records = json.loads("\n".join(render(columns, rows, "json")))
    assert len(records) == 2
    assert records[0]["request"]["messages"][0]["role"] == "user"
    assert records[0]["response"]["object"] == "chat.completion"
    assert records[0]["recorded_at"] == "2026-11-21T03:58:01.000001"


DATA_COLUMNS = ["name", "n", "ms", "ok", "at", "body", "note"]
DATA_ROWS: list[tuple[Any, ...]] = [
    ("gpt-4o-mini", 1200, 512.25, True, datetime(2026, 11, 22, 3, 58), JSONText('{"a":[1,2]}'), None),
    ("o3", 7, 0.5, False, None, JSONText('"just text"'), 'two\nlines, "quoted"'),
]


def test_render_table_aligns_columns() -> None:
    lines = list(render(DATA_COLUMNS, DATA_ROWS, "table"))
    assert lines == [
        "name            n      ms  ok     at                   body         note",
        "-----------  ----  ------  -----  -------------------  -----------  --------------------",
        'gpt-4o-mini  1200  512.25  true   2026-11-22 03:58:00  {"a":[1,2]}  NULL',
        'o3              7     0.5  false  NULL                 "just text"  two\\nlines, "quoted"',
    ]


def test_render_table_keeps_long_cells_whole_unless_a_max_width_is_given() -> None:
    [_, _, line] = render(["text"], [("x" * 500,)], "table")
    assert line == "x" * 500
    [_, _, line] = render(["text"], [("x" * 500,)], "table", max_width=60)
    assert len(line) == 60 and line.endswith("…")


def test_render_csv_round_trips_through_the_csv_module() -> None:
    lines = list(render(DATA_COLUMNS, DATA_ROWS, "csv"))
    parsed = list(csv.reader("\n".join(lines).splitlines(keepends=True)))
    assert parsed == [
        DATA_COLUMNS,
        ["gpt-4o-mini", "1200", "512.25", "true", "2026-11-22T03:58:00", '{"a":[1,2]}', ""],
        ["o3", "7", "0.5", "false", "", '"just text"', 'two\nlines, "quoted"'],
    ]


def test_render_json_is_one_array_of_objects() -> None:
    records = json.loads("\n".join(render(DATA_COLUMNS, DATA_ROWS, "json")))
    assert records == [
        {"name": "gpt-4o-mini", "n": 1200, "ms": 512.25, "ok": True, "at": "2026-11-22T03:58:00",
         "body": {"a": [1, 2]}, "note": None},
        {"name": "o3", "n": 7, "ms": 0.5, "ok": False, "at": None, "body": "just text",
         "note": 'two\nlines, "quoted"'},
    ]  # fmt: skip


@pytest.mark.parametrize(("fmt", "expected"), [("table", ["a", "-"]), ("csv", ["a"]), ("json", ["[]"])])
def test_render_with_no_rows(fmt: str, expected: list[str]) -> None:
    assert list(render(["a"], [], fmt)) == expected


def test_render_rejects_an_unknown_format() -> None:
    with pytest.raises(AnalyticsError, match="unknown format 'xml'"):
        render(["a"], [], "xml")


# --- errors the user sees ---


@pytest.mark.parametrize(
    "call",
    [
        lambda db: run_sql(db, "SELECT 1"),
        lambda db: stats(db, None),
        lambda db, out=None: export_parquet(db, db.parent / "out"),
    ],
    ids=["run_sql", "stats", "export_parquet"],
)
def test_a_missing_database_is_named(tmp_path: Path, call: Any) -> None:
    db = tmp_path / "nope.duckdb"
    with pytest.raises(AnalyticsError) as info:
        call(db)
    assert str(info.value) == f"database not found: {db}"
    assert not db.exists()


@pytest.mark.parametrize(
    ("sql", "start"),
    [
        ("SELEC 1", "Parser Error: syntax error at or near"),
        ("SELECT * FROM no_such_table", "Catalog Error: Table with name no_such_table does not exist"),
        ("DELETE FROM interactions", 'Invalid Input Error: Cannot execute statement of type "DELETE"'),
        ("   ", "empty query"),
    ],
)
def test_a_bad_query_keeps_duckdbs_message(traffic_db: Path, sql: str, start: str) -> None:
    with pytest.raises(AnalyticsError) as info:
        run_sql(traffic_db, sql)
    message = str(info.value)
    assert message.startswith(start)  # and DuckDB's hints, if any, on the lines below
    # no chained duckdb traceback would be printed under it
    assert info.value.__cause__ is None
    assert info.value.__context__ is None or info.value.__suppress_context__
