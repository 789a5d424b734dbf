"""End to end: record through the real app against the fake upstream, then replay offline with the official SDK."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from proxy.cassettes import iter_cassette_paths
from tests.chunks import (
    content_delta,
    make_choice,
    make_chunk,
    make_completion,
    make_completion_choice,
    make_message,
    role_delta,
    stream_content,
)
from tests.conftest import API_KEY, RunningProxy, RunningUpstream, StartProxy
from tests.samples import WEATHER_TOOL

REPO = Path(__file__).resolve().parent.parent
MESSAGES: list[Any] = [{"role": "user", "content": "Say hello to the proxy"}]


# --- helpers ---------------------------------------------------------------------------------------------


async def health(proxy: RunningProxy) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(f"{proxy.url}/_proxy/health") as response:
        data: dict[str, Any] = await response.json()
        return data


async def wait_for_cassettes(directory: Path, count: int, timeout: float = 5.0) -> list[Path]:
    """Cassettes are written in the background after each response: wait (bounded) until `count` exist."""
    deadline = time.monotonic() + timeout
    while True:
        paths = list(iter_cassette_paths(directory)) if directory.is_dir() else []
        if len(paths) >= count or time.monotonic() > deadline:
            assert len(paths) == count, f"expected {count} cassettes in {directory}, found {len(paths)}"
            return paths
        await asyncio.sleep(0.02)


def split_events(raw: bytes) -> list[bytes]:
    """SSE events with their framing: each piece ends with its blank line (LF, CRLF or CR line ends)."""
    pieces = re.findall(rb".*?(?:\r\n\r\n|\n\n|\r\r)|.+", raw, re.DOTALL)
    assert b"".join(pieces) == raw
    return pieces


def text_stream(*texts: str) -> list[dict[str, Any]]:
    chunks = [make_chunk([make_choice(role_delta())])]
    chunks += [make_chunk([make_choice(content_delta(t))]) for t in texts]
    chunks.append(make_chunk([make_choice(finish_reason="stop")]))
    return chunks


def answer(text: str) -> dict[str, Any]:
    return make_completion([make_completion_choice(make_message(text))])


def scenario(name: str, **more: str) -> dict[str, Any]:
    return {"extra_headers": {"x-scenario": name, **more}}


async def replayer(start_proxy: StartProxy, upstream: RunningUpstream, **overrides: Any) -> RunningProxy:
    """Stop the upstream, then start a replay proxy on the cassettes just recorded: replay is offline."""
    url = upstream.url
    await upstream.server.close()
    return await start_proxy(url, mode="replay", **overrides)


# --- 1. replay gives back what was recorded, byte for byte ----------------------------------------------


async def test_replay_returns_recorded_completion_and_identical_sse_bytes(
    upstream: RunningUpstream, start_proxy: StartProxy
) -> None:
    fake = upstream.fake
    fake.completions["default"] = answer("Hello, proxy! Nice to meet you.")
    fake.streams["default"] = stream_content()
    recorder = await start_proxy(upstream.url)
    async with recorder.client() as client:
        plain = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        async with client.chat.completions.stream(model="gpt-4o-mini", messages=MESSAGES) as stream:
            streamed = await stream.get_final_completion()
    await wait_for_cassettes(recorder.settings.cassettes, 2)
    plain_sent, stream_sent = fake.sent["req_1"], fake.sent["req_2"]

    replay = await replayer(start_proxy, upstream)
    async with replay.client() as client:
        raw_plain = await client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
        assert raw_plain.http_response.content == plain_sent
        assert raw_plain.parse().model_dump() == plain.model_dump()
        async with client.chat.completions.with_streaming_response.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True
        ) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            raw_stream = b"".join([chunk async for chunk in response.iter_bytes()])
        # A later identical request repeats the last recording (on_exhausted=repeat): parse it with the SDK.
        async with client.chat.completions.stream(model="gpt-4o-mini", messages=MESSAGES) as stream:
            replayed = await stream.get_final_completion()
    assert split_events(raw_stream) == split_events(stream_sent)
    assert raw_stream == stream_sent
    assert replayed.model_dump() == streamed.model_dump()
    assert replayed.choices[0].message.content == "Hello! How can I help you today?"


async def test_replay_reproduces_unusual_sse_framing_byte_for_byte(
    upstream: RunningUpstream, start_proxy: StartProxy
) -> None:
    chunks = text_stream("Line", " ends", " vary.")
    raw = b": keep-alive\r\n\r\n"
    for number, chunk in enumerate(chunks):
        raw += b"data: " + json.dumps(chunk).encode() + b"\r\n\r\n"
        if number == 1:
            raw += b": keep-alive\r\n"
    raw += b"data: [DONE]\r\n\r\n"
    upstream.fake.raw_streams["crlf"] = raw
    recorder = await start_proxy(upstream.url)
    async with recorder.client() as client:
        # Pieces of 7 bytes split the CRLF pairs and the comments across writes.
        options = scenario("crlf", **{"x-piece-size": "7"})
        async with client.chat.completions.stream(model="gpt-4o-mini", messages=MESSAGES, **options) as stream:
            recorded = await stream.get_final_completion()
    await wait_for_cassettes(recorder.settings.cassettes, 1)
    assert upstream.fake.sent["req_1"] == raw

    replay = await replayer(start_proxy, upstream)
    async with replay.client() as client:
        async with client.chat.completions.with_streaming_response.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True
        ) as response:
            replayed_raw = b"".join([chunk async for chunk in response.iter_bytes()])
        async with client.chat.completions.stream(model="gpt-4o-mini", messages=MESSAGES) as stream:
            replayed = await stream.get_final_completion()
    assert replayed_raw == raw
    assert replayed.model_dump() == recorded.model_dump()


# --- 2. identical requests replay in recorded order ------------------------------------------------------


async def record_three_answers(upstream: RunningUpstream, start_proxy: StartProxy) -> None:
    for name, text in (("one", "First answer."), ("two", "Second answer."), ("three", "Third answer.")):
        upstream.fake.completions[name] = answer(text)
    recorder = await start_proxy(upstream.url)
    async with recorder.client() as client:
        for name in ("one", "two", "three"):
            # x-scenario is not a matched header: the three requests are identical to the matcher.
            await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, **scenario(name))
    await wait_for_cassettes(recorder.settings.cassettes, 3)


async def test_identical_requests_replay_in_order_then_the_last_repeats(
    upstream: RunningUpstream, start_proxy: StartProxy
) -> None:
    await record_three_answers(upstream, start_proxy)
    replay = await replayer(start_proxy, upstream, on_exhausted="repeat")
    async with replay.client() as client:
        texts = [
            (await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)).choices[0].message.content
            for _ in range(5)
        ]
    assert texts == ["First answer.", "Second answer.", "Third answer.", "Third answer.", "Third answer."]


async def test_identical_requests_replay_in_recorded_order_whatever_their_file_names(
    upstream: RunningUpstream, start_proxy: StartProxy, tmp_path: Path
) -> None:
    await record_three_answers(upstream, start_proxy)
    cassettes = tmp_path / "cassettes"
    paths = sorted(iter_cassette_paths(cassettes))  # recorded first to last
    for letter, path in zip("zyx", paths, strict=True):  # file names now sort last to first
        path.rename(path.with_name(f"{letter}-{path.name}"))
    replay = await replayer(start_proxy, upstream, on_exhausted="fail")
    async with replay.client() as client:
        texts = [
            (await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)).choices[0].message.content
            for _ in range(3)
        ]
    assert texts == ["First answer.", "Second answer.", "Third answer."]


async def test_identical_requests_replay_in_order_then_miss_when_exhausted_is_fail(
    upstream: RunningUpstream, start_proxy: StartProxy
) -> None:
    await record_three_answers(upstream, start_proxy)
    replay = await replayer(start_proxy, upstream, on_exhausted="fail")
    async with replay.client() as client:
        texts = [
            (await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)).choices[0].message.content
            for _ in range(3)
        ]
        with pytest.raises(openai.NotFoundError) as caught:
            await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert texts == ["First answer.", "Second answer.", "Third answer."]
    assert "3 recording(s) were all used" in caught.value.message


# --- 3. what the matcher ignores and what it adds --------------------------------------------------------


async def test_ignored_body_fields_do_not_prevent_a_hit(upstream: RunningUpstream, start_proxy: StartProxy) -> None:
    upstream.fake.completions["default"] = answer("Hello, Alice!")
    recorder = await start_proxy(upstream.url)
    async with recorder.client() as client:
        await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, user="alice", seed=1)
    await wait_for_cassettes(recorder.settings.cassettes, 1)

    replay = await replayer(start_proxy, upstream, ignore_body_fields=("user", "seed"))
    async with replay.client() as client:
        hit = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, user="bob", seed=2)
        without = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        with pytest.raises(openai.NotFoundError) as caught:
            await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, user="bob", temperature=0)
    assert hit.choices[0].message.content == without.choices[0].message.content == "Hello, Alice!"
    assert "body.temperature" in caught.value.message
    assert "body.user" not in caught.value.message


async def test_matched_headers_select_the_recording(upstream: RunningUpstream, start_proxy: StartProxy) -> None:
    upstream.fake.completions["red"] = answer("Hello, red team!")
    upstream.fake.completions["blue"] = answer("Hello, blue team!")
    recorder = await start_proxy(upstream.url)
    async with recorder.client() as client:
        for team in ("red", "blue"):
            await client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, **scenario(team, **{"x-team": team})
            )
    await wait_for_cassettes(recorder.settings.cassettes, 2)

    replay = await replayer(start_proxy, upstream, match_headers=("X-Team",), on_exhausted="fail")
    async with replay.client() as client:
        blue = await client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers={"x-team": "blue"}
        )
        red = await client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers={"x-team": "red"}
        )
        with pytest.raises(openai.NotFoundError) as caught:
            await client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, extra_headers={"x-team": "green"}
            )
    assert blue.choices[0].message.content == "Hello, blue team!"
    assert red.choices[0].message.content == "Hello, red team!"
    assert "header x-team" in caught.value.message


async def test_secret_query_parameter_redacted_in_the_cassette_still_matches(
    upstream: RunningUpstream, start_proxy: StartProxy
) -> None:
    upstream.fake.completions["default"] = answer("Hello over a keyed URL!")
    query = {"key": "AIza-not-on-disk", "api-version": "2024-06-01"}
    recorder = await start_proxy(upstream.url)
    async with recorder.client() as client:
        await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, extra_query=query)
    (cassette,) = await wait_for_cassettes(recorder.settings.cassettes, 1)
    assert "AIza-not-on-disk" not in cassette.read_text()

    replay = await replayer(start_proxy, upstream, on_exhausted="fail")
    async with replay.client() as client:
        hit = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, extra_query=query)
        with pytest.raises(openai.NotFoundError) as caught:
            await client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, extra_query={**query, "api-version": "2025-01-01"}
            )
    assert hit.choices[0].message.content == "Hello over a keyed URL!"
    assert caught.value.message.endswith(
        'which differs in query.api-version (recorded "2024-06-01", requested "2025-01-01")'
    )


# --- 4. a miss explains itself and is not retried --------------------------------------------------------


async def test_miss_fails_at_once_without_retries_and_names_the_closest_recording(
    upstream: RunningUpstream, start_proxy: StartProxy
) -> None:
    upstream.fake.completions["default"] = answer("Hello!")
    recorder = await start_proxy(upstream.url)
    async with recorder.client() as client:
        await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, temperature=0.2)
    (cassette,) = await wait_for_cassettes(recorder.settings.cassettes, 1)

    replay = await replayer(start_proxy, upstream)
    # The SDK's defaults: max_retries=2, which it would use on a retryable status.
    async with openai.AsyncOpenAI(base_url=f"{replay.url}/v1", api_key=API_KEY) as client:
        assert client.max_retries == 2
        started = time.monotonic()
        with pytest.raises(openai.NotFoundError) as caught:
            await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, temperature=0.9)
        elapsed = time.monotonic() - started
    error = caught.value
    assert error.status_code == 404
    assert error.response.headers["x-should-retry"] == "false"
    assert error.code == "replay_miss"
    assert cassette.name in error.message
    assert "body.temperature" in error.message
    counts = (await health(replay))["counts"]
    assert counts["requests"] == 1
    assert counts["misses"] == 1
    assert elapsed < 0.4  # a retry would first back off for at least 0.5 s


# --- 5. bad cassettes are skipped, good ones replay ------------------------------------------------------


async def test_bad_cassettes_are_skipped_with_one_warning_each(
    upstream: RunningUpstream, start_proxy: StartProxy, caplog: pytest.LogCaptureFixture
) -> None:
    upstream.fake.completions["default"] = answer("Still here.")
    recorder = await start_proxy(upstream.url)
    async with recorder.client() as client:
        await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    (good,) = await wait_for_cassettes(recorder.settings.cassettes, 1)
    text = good.read_text()
    data = json.loads(text)
    folder = good.parent
    (folder / "corrupt.json").write_text("{this is not json")
    (folder / "truncated.json").write_text(text[: len(text) // 2])
    (folder / "wrong-version.json").write_text(json.dumps({**data, "version": 99}))
    (folder / "no-request.json").write_text(json.dumps({key: v for key, v in data.items() if key != "request"}))
    reasons = {
        "corrupt.json": "not valid JSON",
        "truncated.json": "not valid JSON",
        "wrong-version.json": "unknown format version 99",
        "no-request.json": "missing or invalid request",
    }

    caplog.set_level(logging.WARNING, logger="proxy")
    replay = await replayer(start_proxy, upstream)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name.startswith("proxy")]
    for name, reason in reasons.items():
        lines = [line for line in warnings if name in line]
        assert len(lines) == 1, (name, warnings)
        assert reason in lines[0]
        assert "\n" not in lines[0]
    assert not any(good.name in line for line in warnings)
    assert (await health(replay))["recordings"] == 1
    async with replay.client() as client:
        hit = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert hit.choices[0].message.content == "Still here."


# --- 6. --timing original -----------------------------------------------------------------------------------


async def stream_arrivals(proxy: RunningProxy) -> list[float]:
    """Arrival times (seconds, monotonic) of each chunk the SDK yields for the timed request."""
    arrivals: list[float] = []
    async with proxy.client() as client:
        stream = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        async for _ in stream:
            arrivals.append(time.monotonic())
    return arrivals


async def test_timing_original_follows_the_recorded_gaps_and_speed_shortens_them(
    upstream: RunningUpstream, start_proxy: StartProxy
) -> None:
    gap_ms = 80
    upstream.fake.streams["default"] = text_stream("Slow", " and", " steady.")  # 5 chunks, then [DONE]
    recorder = await start_proxy(upstream.url)
    async with recorder.client() as client:
        stream = await client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_headers={"x-gap-ms": str(gap_ms)}
        )
        async for _ in stream:
            pass
    (cassette,) = await wait_for_cassettes(recorder.settings.cassettes, 1)
    offsets = [event["offset_ms"] for event in json.loads(cassette.read_text())["response"]["events"]]
    chunk_offsets = offsets[:-1]  # the SDK yields no chunk for [DONE]
    recorded_span = (chunk_offsets[-1] - chunk_offsets[0]) / 1000
    assert recorded_span >= 4 * gap_ms / 1000 * 0.9

    url = upstream.url
    await upstream.server.close()
    original = await start_proxy(url, mode="replay", timing="original")
    arrivals = await stream_arrivals(original)
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert len(arrivals) == len(chunk_offsets)
    assert arrivals[-1] - arrivals[0] >= 0.7 * recorded_span
    # Loose on purpose: a late event (a noisy machine) shortens the gap after it, as the schedule is absolute.
    assert all(gap > 0.025 for gap in gaps), gaps
    assert statistics.median(gaps) > 0.05, gaps

    faster = await start_proxy(url, mode="replay", timing="original", speed=4)
    arrivals = await stream_arrivals(faster)
    assert arrivals[-1] - arrivals[0] < 0.6 * recorded_span

    fast = await start_proxy(url, mode="replay", timing="fast")
    arrivals = await stream_arrivals(fast)
    assert arrivals[-1] - arrivals[0] < 0.25 * recorded_span


async def test_timing_original_delays_a_whole_response_by_its_recorded_duration(
    upstream: RunningUpstream, start_proxy: StartProxy
) -> None:
    upstream.fake.completions["default"] = answer("Worth the wait.")
    recorder = await start_proxy(upstream.url)
    async with recorder.client() as client:
        await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, extra_headers={"x-hang-ms": "300"})
    await wait_for_cassettes(recorder.settings.cassettes, 1)
    url = upstream.url
    await upstream.server.close()

    async def elapsed(proxy: RunningProxy) -> float:
        async with proxy.client() as client:
            started = time.monotonic()
            await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            return time.monotonic() - started

    assert await elapsed(await start_proxy(url, mode="replay", timing="original")) >= 0.25
    assert await elapsed(await start_proxy(url, mode="replay", timing="fast")) < 0.2


# --- 7. auto mode ---------------------------------------------------------------------------------------------


async def test_auto_mode_hit_from_existing_cassette_does_not_touch_upstream(
    upstream: RunningUpstream, start_proxy: StartProxy
) -> None:
    upstream.fake.completions["default"] = answer("Recorded earlier.")
    recorder = await start_proxy(upstream.url)
    async with recorder.client() as client:
        await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    await wait_for_cassettes(recorder.settings.cassettes, 1)
    upstream.fake.completions["default"] = answer("Fresh from upstream.")

    auto = await start_proxy(upstream.url, mode="auto")
    async with auto.client() as client:
        hit = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert hit.choices[0].message.content == "Recorded earlier."
    assert len(upstream.fake.received) == 1
    assert (await health(auto))["counts"]["replayed"] == 1


async def test_auto_mode_records_a_miss_and_replays_it_next_time(
    upstream: RunningUpstream, start_proxy: StartProxy, runner: str
) -> None:
    upstream.fake.completions["default"] = answer("First time through.")
    auto = await start_proxy(upstream.url, mode="auto", record_workers=runner)
    async with auto.client() as client:
        first = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert len(upstream.fake.received) == 1
        await wait_for_cassettes(auto.settings.cassettes, 1)
        upstream.fake.completions["default"] = answer("Upstream changed its mind.")
        second = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert len(upstream.fake.received) == 1
    assert first.choices[0].message.content == second.choices[0].message.content == "First time through."
    counts = (await health(auto))["counts"]
    assert (counts["forwarded"], counts["replayed"]) == (1, 1)


# --- 8. recorded errors replay as errors ---------------------------------------------------------------------


async def test_recorded_429_replays_as_rate_limit_error_with_its_body(
    upstream: RunningUpstream, start_proxy: StartProxy
) -> None:
    recorder = await start_proxy(upstream.url)
    async with recorder.client() as client:
        with pytest.raises(openai.RateLimitError) as recorded:
            await client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, extra_headers={"x-status": "429", "x-retry-after": "20"}
            )
    await wait_for_cassettes(recorder.settings.cassettes, 1)

    replay = await replayer(start_proxy, upstream)
    async with replay.client() as client:
        with pytest.raises(openai.RateLimitError) as replayed:
            await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert replayed.value.status_code == 429
    assert replayed.value.body == recorded.value.body
    assert replayed.value.message == recorded.value.message
    assert replayed.value.response.headers["retry-after"] == "20"
    assert replayed.value.response.content == upstream.fake.sent["req_1"]


# --- 9. replay refuses to start with nothing to replay -----------------------------------------------------


@pytest.mark.parametrize("kind", ["empty", "missing"])
def test_replay_cli_on_empty_or_missing_directory_exits_2_with_one_line(tmp_path: Path, kind: str) -> None:
    directory = tmp_path / "cassettes"
    if kind == "empty":
        directory.mkdir()
    proxy_command = Path(sys.executable).parent / "proxy"
    result = subprocess.run(
        [str(proxy_command), "replay", str(directory), "--port", "0", "--no-db"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(directory) in lines[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


# --- the sample cassettes shipped in the repository ------------------------------------------------------------


async def test_sample_cassettes_answer_the_readme_requests(start_proxy: StartProxy) -> None:
    """The exact requests the README shows (recorded by scripts/make_sample_cassettes.py) hit the samples."""
    replay = await start_proxy(mode="replay", cassettes=REPO / "cassettes")
    async with replay.client() as client:
        hello = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hello to the proxy"}]
        )
        async with client.chat.completions.stream(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "What's the weather in Paris?"}],
            tools=[WEATHER_TOOL],
        ) as stream:
            weather = await stream.get_final_completion()
        async with client.chat.completions.stream(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "Count to three"}],
            stream_options={"include_usage": True},
        ) as stream:
            count = await stream.get_final_completion()
        with pytest.raises(openai.RateLimitError) as limited:
            await client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "Write a haiku about rate limits"}]
            )
    assert hello.choices[0].message.content == "Hello, proxy! Nice to meet you. Everything looks good on this end."
    (call,) = weather.choices[0].message.tool_calls or []
    assert call.type == "function"
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "Paris"})
    assert weather.choices[0].finish_reason == "tool_calls"
    assert count.choices[0].message.content == "One, two, three!"
    assert count.usage is not None
    assert count.usage.total_tokens == 18
    assert limited.value.code == "rate_limit_exceeded"
