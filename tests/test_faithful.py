"""Recordings a test suite can trust: what was recorded is what the API sent, and whatever was recorded replays.

Each defect of issue #11 has its test here; each failed on the code before its fix.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import duckdb
import openai
import pytest

from proxy.cassettes import dumps, iter_cassette_paths, load_cassette
from proxy.interaction import Interaction
from proxy.recording import Recording, body_bytes, build_interaction
from tests.chunks import content_delta, make_choice, make_chunk, role_delta, stream_content, to_sse
from tests.cli_process import start_proxy_process
from tests.conftest import API_KEY, RunningUpstream, StartProxy, wait_for_cassettes
from tests.upstream import FakeUpstream, serve_upstream_in_thread

MESSAGES: list[Any] = [{"role": "user", "content": "Count to three"}]
DATA = Path(__file__).resolve().parent / "data"


def sdk(url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=API_KEY, max_retries=0)


async def only_cassette(directory: Path) -> Interaction:
    (path,) = await wait_for_cassettes(directory, 1)
    return load_cassette(path)


async def post(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """A raw POST, to see the exact bytes the proxy answers with."""
    async with aiohttp.ClientSession() as session, session.post(url, json=body, headers=headers) as response:
        return response.status, await response.read()


def recording_of(stream: bytes, pieces: int = 1) -> Recording:
    """A finished streamed exchange, as forward() leaves it, with the body arriving in `pieces` chunks."""
    recording = Recording(
        "POST", "/v1/chat/completions", "", [], b'{"model":"m"}', "http://upstream", started=0.0, status=200
    )
    recording.response_headers = [("Content-Type", "text/event-stream")]
    size = -(-len(stream) // pieces)
    for number in range(pieces):
        recording.add(stream[number * size : (number + 1) * size], 0.01 * (number + 1))
    recording.ended = 0.1
    return recording


# --- 1. a stream the upstream finished is complete, whatever the client did after ---------------------------


def test_a_stream_the_sdk_closes_at_done_before_the_body_ends_is_recorded_complete(tmp_path: Path) -> None:
    """The SDK stops reading at [DONE] and closes; here the upstream keeps its body open 300 ms after [DONE],
    so the client is always gone before the upstream's end (the race behind 1 in 100 streams, made certain)."""
    fake = FakeUpstream()
    fake.streams["default"] = stream_content()
    url, stop, thread = serve_upstream_in_thread(fake)
    cassettes = tmp_path / "c"
    proc = start_proxy_process(["record", "--upstream", url, "--cassettes", str(cassettes), "--no-db"])
    try:
        client = openai.OpenAI(base_url=f"{proc.url}/v1", api_key=API_KEY, max_retries=0)
        stream = client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_headers={"x-end-hold-ms": "300"}
        )
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        client.close()
        replay_ready = _wait_for_files(cassettes, 1)
    finally:
        code, stderr = proc.stop()
        stop.set()
        thread.join(10)
    assert code == 0, stderr
    interaction = load_cassette(replay_ready[0])
    assert interaction.outcome.complete, interaction.outcome
    assert interaction.outcome.incomplete_reason is None
    assert interaction.response.completion is not None
    assert interaction.response.completion["choices"][0]["message"]["content"] == text


def _wait_for_files(directory: Path, count: int, timeout: float = 10.0) -> list[Path]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        paths = list(iter_cassette_paths(directory)) if directory.is_dir() else []
        if len(paths) >= count:
            return paths
        time.sleep(0.02)
    raise AssertionError(f"expected {count} cassette(s) in {directory}")


def test_a_client_leaving_before_done_still_makes_the_recording_incomplete() -> None:
    chunks = [make_chunk([make_choice(role_delta())]), make_chunk([make_choice(content_delta("One"))])]
    recording = recording_of(to_sse(chunks, done=False).encode())
    recording.incomplete_reason = "client disconnected"
    interaction = build_interaction(recording)
    assert not interaction.outcome.complete
    assert interaction.outcome.incomplete_reason == "client disconnected"


# --- 2. a recording whose client left early replays, in replay mode ---------------------------------------


async def record_abandoned_stream(upstream: RunningUpstream, start_proxy: StartProxy) -> tuple[list[str], Path]:
    """A loop that breaks after two chunks of a slow stream; returns what it read and the cassette dir."""
    upstream.fake.streams["default"] = stream_content()
    recorder = await start_proxy(upstream.url)
    seen: list[str] = []
    async with sdk(recorder.url) as client:
        stream = await client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_headers={"x-gap-ms": "150"}
        )
        async for chunk in stream:
            seen.append(chunk.choices[0].delta.content or "")
            if len(seen) == 2:
                break
        await stream.close()
    interaction = await only_cassette(recorder.settings.cassettes)
    assert interaction.outcome.incomplete_reason == "client disconnected"
    return seen, recorder.settings.cassettes


async def test_a_stream_the_client_abandoned_replays_what_was_recorded_in_replay_mode(
    upstream: RunningUpstream, start_proxy: StartProxy
) -> None:
    seen, cassettes = await record_abandoned_stream(upstream, start_proxy)
    recorded = load_cassette(next(iter_cassette_paths(cassettes)))
    recorded_texts = [
        (event.payload["choices"][0]["delta"].get("content") or "")
        for event in recorded.response.events or []
        if isinstance(event.payload, dict)
    ]
    replay = await start_proxy(mode="replay", cassettes=cassettes)
    async with sdk(replay.url) as client:
        stream = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        replayed = [chunk.choices[0].delta.content or "" async for chunk in stream]
    assert replayed == recorded_texts  # in order, ending where the recording ended
    assert replayed[: len(seen)] == seen
    assert len(upstream.fake.received) == 1


async def test_auto_mode_forwards_a_request_whose_recording_the_client_abandoned(
    upstream: RunningUpstream, start_proxy: StartProxy
) -> None:
    _, cassettes = await record_abandoned_stream(upstream, start_proxy)
    auto = await start_proxy(upstream.url, mode="auto", cassettes=cassettes)
    async with sdk(auto.url) as client:
        stream = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])
    assert text == "".join(
        chunk["choices"][0]["delta"].get("content") or "" for chunk in stream_content() if chunk["choices"]
    )
    assert len(upstream.fake.received) == 2


# --- 3. every JSON body is stored as JSON, in the cassette and in DuckDB; replay gives the same bytes --------


async def test_an_api_error_body_indented_by_four_is_stored_as_json_and_replays_byte_for_byte(
    upstream: RunningUpstream, start_proxy: StartProxy, tmp_path: Path
) -> None:
    recorder = await start_proxy(upstream.url, db_enabled=True, db=tmp_path / "t.duckdb", db_flush_interval=0.05)
    body = {"model": "gpt-4o-mini", "messages": MESSAGES}
    status, sent = await post(f"{recorder.url}/v1/chat/completions", body, {"x-status": "400"})
    assert status == 400
    assert sent.startswith(b'{\n    "error": {\n        "message"')  # the API's own layout
    interaction = await only_cassette(recorder.settings.cassettes)
    assert interaction.response.body.json_["error"]["type"] == "server_error"
    assert "text" not in interaction.response.body.model_dump(exclude_none=True)
    await recorder.server.close()  # flushes the database writer
    with duckdb.connect(str(tmp_path / "t.duckdb"), read_only=True) as con:
        row = con.execute("SELECT response->>'$.error.message', json_type(response) FROM interactions").fetchone()
    assert row == ("fake upstream says 400", "OBJECT")

    replay = await start_proxy(mode="replay", cassettes=recorder.settings.cassettes)
    assert await post(f"{replay.url}/v1/chat/completions", body) == (400, sent)


def test_json_in_a_layout_no_writer_uses_is_json_and_keeps_its_exact_bytes() -> None:
    recording = recording_of(b"")
    recording.response_headers = [("Content-Type", "application/json")]
    odd = b'{"error" :  {"code": "x"} }'
    recording.chunks, recording.chunk_times = [odd], [0.01]
    interaction = build_interaction(recording)
    assert interaction.response.body.json_ == {"error": {"code": "x"}}
    assert body_bytes(interaction.response.body) == odd


# --- 4. reassembly stops at the first [DONE], as every official SDK does ------------------------------------


async def test_bytes_after_done_are_forwarded_and_kept_but_not_reassembled(
    upstream: RunningUpstream, start_proxy: StartProxy
) -> None:
    chunks = [
        make_chunk([make_choice(role_delta())]),
        make_chunk([make_choice(content_delta("Before"))]),
        make_chunk([make_choice(finish_reason="stop")]),
    ]
    after = make_chunk([make_choice(content_delta(" and after"))])
    raw = (to_sse(chunks) + to_sse([after], done=False)).encode()
    upstream.fake.raw_streams["after-done"] = raw
    proxy = await start_proxy(upstream.url)
    headers = {"x-scenario": "after-done"}
    async with sdk(proxy.url) as client:
        async with client.chat.completions.stream(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers=headers
        ) as stream:
            final = await stream.get_final_completion()
        async with aiohttp.ClientSession() as session:
            body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
            async with session.post(f"{proxy.url}/v1/chat/completions", json=body, headers=headers) as r:
                assert await r.read() == raw  # every byte still reaches the client
    paths = await wait_for_cassettes(proxy.settings.cassettes, 2)
    interaction = load_cassette(paths[0])
    assert interaction.response.completion is not None
    assert interaction.response.completion["choices"][0]["message"]["content"] == final.choices[0].message.content
    assert final.choices[0].message.content == "Before"
    assert [event.text for event in interaction.response.events or []][-2:] == [
        "[DONE]",
        json.dumps(after, separators=(",", ":")),
    ]
    assert interaction.outcome.complete


# --- 5. the last event, completed only at the end of the body, reaches the recording --------------------------


@pytest.mark.parametrize("pieces", [1, 3])
def test_a_last_event_ending_in_a_lone_cr_is_recorded(pieces: int) -> None:
    chunks = [
        make_chunk([make_choice(role_delta())]),
        make_chunk([make_choice(content_delta("Hi"))]),
        make_chunk([make_choice(finish_reason="stop")]),
    ]
    stream = to_sse(chunks, done=False).encode() + b"data: [DONE]\r\r"
    interaction = build_interaction(recording_of(stream, pieces))
    events = interaction.response.events or []
    assert events[-1].text == "[DONE]"
    assert events[-1].raw == "data: [DONE]\r\r"
    assert interaction.outcome.complete, interaction.outcome
    assert interaction.response.tail is None


# --- cassettes that read and diff well --------------------------------------------------------------------


async def test_streamed_events_are_json_values_one_per_line_and_replay_the_same_bytes(
    upstream: RunningUpstream, start_proxy: StartProxy
) -> None:
    upstream.fake.streams["default"] = stream_content()
    recorder = await start_proxy(upstream.url)
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
    _, recorded_bytes = await post(f"{recorder.url}/v1/chat/completions", body)
    (path,) = await wait_for_cassettes(recorder.settings.cassettes, 1)
    lines = path.read_text().splitlines()
    event_lines = [line.strip() for line in lines if line.strip().startswith('{"offset_ms"')]
    assert len(event_lines) == len(stream_content()) + 1
    first = json.loads(event_lines[0].rstrip(","))
    assert first["json"]["object"] == "chat.completion.chunk"  # a value, not an escaped string
    last = json.loads(event_lines[-1])
    assert (sorted(last), last["data"]) == (["data", "offset_ms"], "[DONE]")

    replay = await start_proxy(mode="replay", cassettes=recorder.settings.cassettes)
    assert await post(f"{replay.url}/v1/chat/completions", body) == (200, recorded_bytes)


def test_a_version_1_cassette_is_converted_on_read_and_replays_the_same_bytes() -> None:
    v1 = json.loads((DATA / "v1-stream-with-usage.json").read_text())
    assert v1["version"] == 1
    interaction = load_cassette(DATA / "v1-stream-with-usage.json")
    assert interaction.version == 2
    events = interaction.response.events or []
    assert [event.text for event in events] == [event["data"] for event in v1["response"]["events"]]
    assert isinstance(events[0].json_, dict) and events[-1].data == "[DONE]"
    assert '"version": 2' in dumps(interaction)


async def test_cassette_names_carry_the_requested_and_the_answering_model(
    upstream: RunningUpstream, start_proxy: StartProxy
) -> None:
    upstream.fake.streams["default"] = stream_content()  # answers as gpt-4o-mini-2024-07-18
    proxy = await start_proxy(upstream.url)
    async with sdk(proxy.url) as client:
        stream = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        [chunk async for chunk in stream]
    (path,) = await wait_for_cassettes(proxy.settings.cassettes, 1)
    assert "-chat-completions-gpt-4o-mini--gpt-4o-mini-2024-07-18-" in path.name


def test_the_shipped_samples_are_the_current_format() -> None:
    samples = Path(__file__).resolve().parent.parent / "cassettes"
    for path in iter_cassette_paths(samples):
        assert json.loads(path.read_text())["version"] == 2, path
