"""The record -> replay loop a test suite can put in CI: 500 streamed SDK requests recorded by `proxy record`
under concurrency while `proxy sql` reads the database, then every one replayed offline by `proxy replay`.
Zero recordings incomplete, zero misses, every replayed completion equal to the recorded one."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletion

from proxy.cassettes import iter_cassette_paths, load_cassette
from tests.chunks import stream_with_usage
from tests.cli_process import run_cli, start_proxy_process
from tests.conftest import API_KEY
from tests.test_record_e2e import sdk_dump
from tests.upstream import FakeUpstream, serve_upstream_in_thread

REQUESTS = 500
CONCURRENCY = 16
MAX_SQL_POLLS = 400


def prompt(number: int) -> list[Any]:
    return [{"role": "user", "content": f"Question number {number}"}]


async def stream_all(url: str) -> dict[int, dict[str, Any]]:
    """Every request through the SDK's stream helper (it stops reading at [DONE] and closes, as users' code
    does); returns each final completion as the SDK accumulated it."""
    finals: dict[int, dict[str, Any]] = {}
    queue: asyncio.Queue[int] = asyncio.Queue()
    for number in range(REQUESTS):
        queue.put_nowait(number)
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=API_KEY, max_retries=0, timeout=60) as client:

        async def worker() -> None:
            while not queue.empty():
                number = queue.get_nowait()
                async with client.chat.completions.stream(
                    model="gpt-4o-mini", messages=prompt(number), stream_options={"include_usage": True}
                ) as stream:
                    final = await stream.get_final_completion()
                finals[number] = sdk_dump(final)

        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(CONCURRENCY))), timeout=240)
    return finals


def poll_sql(db: Path, done: threading.Event, results: list[int]) -> None:
    """`proxy sql` in a loop while the traffic runs, as a user watching the numbers would (bounded)."""
    for _ in range(MAX_SQL_POLLS):
        if done.is_set():
            return
        result = run_cli(["sql", "SELECT count(*) FROM interactions", "--db", str(db), "--format", "csv"])
        results.append(result.returncode)


@pytest.mark.timeout(600)
def test_500_streams_recorded_under_load_while_sql_reads_all_replay_offline(tmp_path: Path) -> None:
    fake = FakeUpstream()
    fake.streams["default"] = stream_with_usage()
    url, stop_upstream, thread = serve_upstream_in_thread(fake)
    cassettes, db = tmp_path / "cassettes", tmp_path / "traffic.duckdb"
    recorder = start_proxy_process(["record", "--upstream", url, "--cassettes", str(cassettes), "--db", str(db)])
    # The recording worker starts in the background and creates the database; readers poll it from then on.
    deadline = time.monotonic() + 30
    while not db.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    done, sql_codes = threading.Event(), []
    poller = threading.Thread(target=poll_sql, args=(db, done, sql_codes))
    poller.start()
    try:
        recorded_finals = asyncio.run(stream_all(recorder.url))
    finally:
        done.set()
        poller.join(60)
        code, stderr = recorder.stop(timeout=120)
        stop_upstream.set()
        thread.join(10)
    assert code == 0, stderr
    assert len(sql_codes) >= 1 and set(sql_codes) == {0}

    paths = list(iter_cassette_paths(cassettes))
    assert len(paths) == REQUESTS
    completions: dict[str, dict[str, Any]] = {}
    incomplete = []
    for path in paths:
        interaction = load_cassette(path)
        if not interaction.outcome.complete:
            incomplete.append((path.name, interaction.outcome.incomplete_reason))
        assert interaction.response.completion is not None
        completions[interaction.request.body.json_["messages"][0]["content"]] = interaction.response.completion
    assert incomplete == []

    replay = start_proxy_process(["replay", str(cassettes), "--on-exhausted", "fail"])
    try:
        replayed_finals = asyncio.run(stream_all(replay.url))
    finally:
        code, stderr = replay.stop()
    assert code == 0, stderr
    assert f"loaded {REQUESTS} recording(s)" in replay.early_output
    assert "skipped" not in replay.early_output
    assert f"{REQUESTS} replayed, 0 miss(es), 0 error(s)" in replay.late_output
    for number in range(REQUESTS):
        recorded = ChatCompletion.model_validate(completions[prompt(number)[0]["content"]]).model_dump()
        assert replayed_finals[number] == recorded_finals[number] == recorded
