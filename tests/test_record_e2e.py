"""End to end through the record path: the official SDK -> the real proxy -> a fake upstream, all on 127.0.0.1.

What the client gets is compared with what the upstream sent (bytes, headers, status), and what was recorded
is read back from the cassette files with the proxy's own reader.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import shutil
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import openai
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ParsedChatCompletion
from yarl import URL

from proxy.cassettes import load_cassette
from proxy.interaction import Interaction
from proxy.recording import body_bytes
from tests.chunks import (
    MODEL,
    ORACLE_STREAMS,
    content_delta,
    make_choice,
    make_chunk,
    make_completion,
    make_completion_choice,
    make_message,
    make_tool_call,
    make_usage,
    stream_content,
    stream_role_repeated,
    stream_several_deltas_same_tool_index,
    stream_tool_id_repeated,
    stream_usage_on_choice_chunk,
    stream_with_usage,
)
from tests.conftest import API_KEY, RunningProxy, RunningUpstream, StartProxy, eventually, wait_for_cassettes

MESSAGES: list[Any] = [{"role": "user", "content": "Hi"}]
CHAT = "/v1/chat/completions"

Chunks = list[dict[str, Any]]


# --- helpers ---------------------------------------------------------------------------------------------


async def recorded(proxy: RunningProxy, count: int = 1) -> list[Interaction]:
    """The interactions recorded so far, waiting for `count` cassettes, oldest first."""
    paths = await wait_for_cassettes(proxy.settings.cassettes, count)
    interactions = [load_cassette(path) for path in paths]
    return sorted(interactions, key=lambda i: i.metadata.recorded_at)


async def only_recorded(proxy: RunningProxy) -> Interaction:
    interactions = await recorded(proxy, 1)
    assert len(interactions) == 1, [i.request.path for i in interactions]
    return interactions[0]


def sdk_dump(final: ParsedChatCompletion[Any]) -> dict[str, Any]:
    """The SDK's accumulated completion without what its parsing helpers add (as in test_reassemble)."""
    dumped = final.model_dump()
    for choice in dumped["choices"]:
        del choice["message"]["parsed"]
        for call in choice["message"]["tool_calls"] or []:
            del call["function"]["parsed_arguments"]
            del call["index"]  # the delta's index, which a ChatCompletion's tool call has not
    return dumped


def assert_same_completion(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    """Field by field, so a failure names the field."""
    assert ours.keys() == theirs.keys()
    for key in theirs:
        if key != "choices":
            assert ours[key] == theirs[key], key
    assert len(ours["choices"]) == len(theirs["choices"])
    for mine, expected in zip(ours["choices"], theirs["choices"], strict=True):
        for key in expected:
            assert mine[key] == expected[key], (expected["index"], key)


def sse(chunks: Chunks) -> list[str]:
    """The `data` of each event as the fake upstream frames the chunks."""
    return [json.dumps(chunk, separators=(",", ":")) for chunk in chunks] + ["[DONE]"]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def scenario(name: str, **knobs: str) -> dict[str, str]:
    return {"x-scenario": name, **knobs}


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}


def chat_body(stream: bool) -> bytes:
    return json.dumps({"model": MODEL, "messages": MESSAGES, "stream": stream}).encode()


# --- 1. the recorded completion is the one the SDK accumulates ---------------------------------------------


@pytest.mark.parametrize("name", list(ORACLE_STREAMS))
async def test_recorded_completion_equals_sdk_final_completion(
    name: str, upstream: RunningUpstream, start_proxy: StartProxy, runner: str
) -> None:
    chunks = ORACLE_STREAMS[name]()
    upstream.fake.streams[name] = chunks
    proxy = await start_proxy(upstream.url, record_workers=runner)
    async with (
        proxy.client() as client,
        client.chat.completions.stream(model=MODEL, messages=MESSAGES, extra_headers=scenario(name)) as stream,
    ):
        final = await stream.get_final_completion()

    interaction = await only_recorded(proxy)
    assert interaction.response.completion is not None
    ours = ChatCompletion.model_validate(interaction.response.completion).model_dump()
    assert_same_completion(ours, sdk_dump(final))
    assert [event.text for event in interaction.response.events or []] == sse(chunks)
    assert interaction.outcome.complete


NON_STREAMED = {
    "text": make_completion(),
    "tool_calls": make_completion(
        [
            make_completion_choice(
                make_message(None, tool_calls=[make_tool_call("call_1", "get_weather", '{"city": "Paris"}')]),
                finish_reason="tool_calls",
            )
        ],
        usage=make_usage(30, 12, cached=0),
    ),
}


@pytest.mark.parametrize("name", list(NON_STREAMED))
async def test_non_streamed_response_body_is_recorded_as_received(
    name: str, upstream: RunningUpstream, start_proxy: StartProxy
) -> None:
    upstream.fake.completions[name] = NON_STREAMED[name]
    proxy = await start_proxy(upstream.url)
    async with proxy.client() as client:
        raw = await client.chat.completions.with_raw_response.create(
            model=MODEL, messages=MESSAGES, extra_headers=scenario(name)
        )
        got = raw.parse()
        received = raw.http_response.content

    interaction = await only_recorded(proxy)
    body = interaction.response.body
    assert body.json_ == json.loads(received) == NON_STREAMED[name]
    assert body_bytes(body) == received
    assert ChatCompletion.model_validate(body.json_) == got
    assert interaction.response.stream is False and interaction.response.completion is None


# --- 2. OpenAI-compatible shapes follow the reassembly rules ---------------------------------------------

TOOL_OSLO = {
    "id": "call_rep1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
}
TOOLS_ADD_NEG = [
    {"id": "call_a", "type": "function", "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'}},
    {"id": "call_b", "type": "function", "function": {"name": "neg", "arguments": '{"x": 3}'}},
]

# (case, stream, path into the recorded completion, expected value)
COMPATIBLE: list[tuple[str, Callable[[], Chunks], tuple[str | int, ...], Any]] = [
    ("role repeated is not doubled", stream_role_repeated, ("choices", 0, "message", "role"), "assistant"),
    (
        "content beside a repeated role is joined",
        stream_role_repeated,
        ("choices", 0, "message", "content"),
        "Hello from a compatible server.",
    ),
    (
        "repeated tool call id is not doubled",
        stream_tool_id_repeated,
        ("choices", 0, "message", "tool_calls"),
        [TOOL_OSLO],
    ),
    (
        "several deltas for one tool index in one chunk are joined",
        stream_several_deltas_same_tool_index,
        ("choices", 0, "message", "tool_calls"),
        TOOLS_ADD_NEG,
    ),
    ("usage on a chunk with choices is kept", stream_usage_on_choice_chunk, ("usage",), make_usage(12, 3)),
]


@pytest.mark.parametrize(("stream", "path", "expected"), [c[1:] for c in COMPATIBLE], ids=[c[0] for c in COMPATIBLE])
async def test_compatible_server_stream_is_recorded_by_the_rules(
    stream: Callable[[], Chunks],
    path: tuple[str | int, ...],
    expected: Any,
    upstream: RunningUpstream,
    start_proxy: StartProxy,
) -> None:
    upstream.fake.streams["compat"] = stream()
    proxy = await start_proxy(upstream.url)
    async with proxy.client() as client:
        response = await client.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, extra_headers=scenario("compat")
        )
        got = [chunk async for chunk in response]
    assert len(got) == len(upstream.fake.streams["compat"])

    interaction = await only_recorded(proxy)
    value: Any = interaction.response.completion
    for step in path:
        value = value[step]
    assert value == expected


# --- 3. bytes and headers pass through unchanged -----------------------------------------------------------


@pytest.mark.parametrize("piece_size", ["7", "1"])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_client_receives_exactly_the_bytes_upstream_sent(
    stream: bool, piece_size: str, upstream: RunningUpstream, start_proxy: StartProxy
) -> None:
    upstream.fake.streams["default"] = stream_with_usage()
    upstream.fake.completions["default"] = make_completion()
    proxy = await start_proxy(upstream.url)
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{proxy.url}{CHAT}", data=chat_body(stream), headers={**auth(), "x-piece-size": piece_size}
        ) as response,
    ):
        received = await response.read()
        request_id = response.headers["x-request-id"]
    assert received == upstream.fake.sent[request_id]
    assert len(received) > 100


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_upstream_status_and_headers_reach_the_client(
    stream: bool, upstream: RunningUpstream, start_proxy: StartProxy
) -> None:
    upstream.fake.streams["default"] = stream_content()
    upstream.fake.completions["default"] = make_completion()
    proxy = await start_proxy(upstream.url)
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{proxy.url}{CHAT}", data=chat_body(stream), headers=auth()) as response,
    ):
        await response.read()
    expected_type = "text/event-stream; charset=utf-8" if stream else "application/json"
    assert response.status == 200
    assert response.headers["content-type"] == expected_type
    assert response.headers["x-request-id"] == f"req_{len(upstream.fake.received)}"
    assert response.headers["openai-processing-ms"] == "12"


async def test_request_body_and_headers_reach_upstream_unchanged(
    upstream: RunningUpstream, start_proxy: StartProxy
) -> None:
    upstream.fake.completions["default"] = make_completion()
    proxy = await start_proxy(upstream.url)
    sent = b'{ "model" : "gpt-4o-mini",\n  "messages": [{"role": "user", "content": "h\\u00e9"}] }'
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{proxy.url}{CHAT}", data=sent, headers={**auth(), "X-Custom": "kept"}) as response,
    ):
        await response.read()
    assert response.status == 200
    received = upstream.fake.received[-1]
    assert received.body == sent
    assert received.headers["X-Custom"] == "kept"
    assert received.headers["Host"] == upstream.url.removeprefix("http://")


# --- 4. gzip passes through compressed; the cassette holds it decoded ------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_gzipped_body_reaches_client_compressed_and_is_recorded_decoded(
    stream: bool, upstream: RunningUpstream, start_proxy: StartProxy
) -> None:
    chunks = stream_with_usage()
    upstream.fake.streams["default"] = chunks
    upstream.fake.completions["default"] = make_completion()
    proxy = await start_proxy(upstream.url)
    headers = {**auth(), "Accept-Encoding": "gzip", "x-gzip": "1"}
    async with (
        aiohttp.ClientSession(auto_decompress=False) as session,
        session.post(f"{proxy.url}{CHAT}", data=chat_body(stream), headers=headers) as response,
    ):
        received = await response.read()
        request_id = response.headers["x-request-id"]
    assert response.headers["content-encoding"] == "gzip"
    assert received == upstream.fake.sent[request_id]
    assert int(response.headers["content-length"]) == len(received)
    assert upstream.fake.received[-1].headers["Accept-Encoding"] == "gzip"
    gzip.decompress(received)  # really gzip

    interaction = await only_recorded(proxy)
    assert interaction.response.decoded_from == "gzip"
    if stream:
        assert [event.text for event in interaction.response.events or []] == sse(chunks)
        assert interaction.response.completion is not None
        assert interaction.response.completion["usage"] == chunks[-1]["usage"]
    else:
        assert interaction.response.body.json_ == make_completion()


async def test_sdk_reads_gzipped_responses_through_the_proxy(
    upstream: RunningUpstream, start_proxy: StartProxy
) -> None:
    chunks = stream_content()
    upstream.fake.streams["default"] = chunks
    upstream.fake.completions["default"] = make_completion()
    proxy = await start_proxy(upstream.url)
    gzipped = {"x-gzip": "1"}
    async with proxy.client() as client:
        completion = await client.chat.completions.create(model=MODEL, messages=MESSAGES, extra_headers=gzipped)
        async with client.chat.completions.stream(model=MODEL, messages=MESSAGES, extra_headers=gzipped) as stream:
            final = await stream.get_final_completion()
    assert completion == ChatCompletion.model_validate(make_completion())
    assert final.choices[0].message.content == "Hello! How can I help you today?"
    assert len(await recorded(proxy, 2)) == 2


async def test_accept_encoding_is_narrowed_to_codings_the_recorder_can_decode(
    upstream: RunningUpstream, start_proxy: StartProxy
) -> None:
    upstream.fake.completions["default"] = make_completion()
    proxy = await start_proxy(upstream.url)
    headers = {**auth(), "Accept-Encoding": "br, zstd, gzip;q=0.8"}
    async with (
        aiohttp.ClientSession(auto_decompress=False) as session,
        session.post(f"{proxy.url}{CHAT}", data=chat_body(False), headers=headers) as response,
    ):
        await response.read()
    assert upstream.fake.received[-1].headers["Accept-Encoding"] == "gzip;q=0.8"


# --- 5. secrets never reach the cassette directory ---------------------------------------------------------


async def test_api_key_and_cookies_never_reach_the_cassette_directory(
    upstream: RunningUpstream, start_proxy: StartProxy, runner: str
) -> None:
    upstream.fake.streams["default"] = stream_content()
    upstream.fake.completions["default"] = make_completion()
    proxy = await start_proxy(upstream.url, record_workers=runner)
    also_secret = {"api-key": API_KEY, "Cookie": f"session={API_KEY}"}
    async with proxy.client() as client:
        await client.chat.completions.create(model=MODEL, messages=MESSAGES, extra_headers=also_secret)
        async with client.chat.completions.stream(model=MODEL, messages=MESSAGES) as stream:
            await stream.get_final_completion()
        with pytest.raises(openai.RateLimitError):
            await client.chat.completions.create(model=MODEL, messages=MESSAGES, extra_headers={"x-status": "429"})
        # (on a path where the fake upstream does not echo the query back in its body)
        await client.chat.completions.create(model=MODEL, messages=MESSAGES, extra_query={"api_key": API_KEY})

    await recorded(proxy, 4)
    files = [path for path in proxy.settings.cassettes.rglob("*") if path.is_file()]
    assert len(files) == 4
    for path in files:
        data = path.read_bytes()
        assert API_KEY.encode() not in data, path
        assert b"upstream-secret" not in data, path
    # ...while the upstream still got them, and the client the cookie.
    assert [r.headers["Authorization"] for r in upstream.fake.received] == [f"Bearer {API_KEY}"] * 4
    assert upstream.fake.received[0].headers["api-key"] == API_KEY
    assert upstream.fake.received[-1].query == f"api_key={API_KEY}"


async def test_upstream_set_cookie_still_reaches_the_client(upstream: RunningUpstream, start_proxy: StartProxy) -> None:
    upstream.fake.completions["default"] = make_completion()
    proxy = await start_proxy(upstream.url)
    async with proxy.client() as client:
        raw = await client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES)
    assert raw.headers["set-cookie"] == "session=upstream-secret"


# --- 6. upstream down or slow: an OpenAI-style 502 / 504, and recorded --------------------------------------


async def test_upstream_down_gives_502_naming_the_upstream_and_is_recorded(start_proxy: StartProxy) -> None:
    dead = f"http://127.0.0.1:{closed_port()}"
    proxy = await start_proxy(dead)
    async with proxy.client() as client:
        with pytest.raises(openai.InternalServerError) as caught:
            await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    error = caught.value
    assert error.status_code == 502
    assert dead in error.message
    assert (error.type, error.code) == ("proxy_error", "upstream_unreachable")

    interaction = await only_recorded(proxy)
    assert interaction.response.status == 502
    assert interaction.outcome.complete is False
    assert interaction.outcome.error is not None and dead in interaction.outcome.error
    assert interaction.response.body.json_ == error.response.json()
    assert interaction.request.body.json_ == {"model": MODEL, "messages": MESSAGES}


async def test_upstream_silent_beyond_first_byte_timeout_gives_504_and_is_recorded(
    upstream: RunningUpstream, start_proxy: StartProxy
) -> None:
    upstream.fake.completions["default"] = make_completion()
    proxy = await start_proxy(upstream.url, first_byte_timeout=0.3)
    async with proxy.client() as client:
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(model=MODEL, messages=MESSAGES, extra_headers={"x-hang-ms": "3000"})
    error = caught.value
    assert error.status_code == 504
    assert upstream.url in error.message
    assert error.code == "upstream_timeout"

    interaction = await only_recorded(proxy)
    assert interaction.response.status == 504
    assert interaction.outcome.complete is False
    assert interaction.outcome.error is not None and "did not answer in time" in interaction.outcome.error


# --- 7. upstream errors pass through as they are -------------------------------------------------------


async def test_upstream_429_reaches_sdk_with_retry_after_and_is_recorded(
    upstream: RunningUpstream, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(upstream.url)
    async with proxy.client() as client:
        with pytest.raises(openai.RateLimitError) as caught:
            await client.chat.completions.create(
                model=MODEL, messages=MESSAGES, extra_headers={"x-status": "429", "x-retry-after": "7"}
            )
    error = caught.value
    assert error.response.headers["retry-after"] == "7"
    assert error.message.endswith("fake upstream says 429")

    interaction = await only_recorded(proxy)
    assert interaction.response.status == 429
    assert interaction.response.body.json_ == json.loads(upstream.fake.sent["req_1"])
    assert [value for name, value in interaction.response.headers if name.lower() == "retry-after"] == ["7"]


# --- 8, 9. streams cut short: recorded as incomplete, with what arrived -----------------------------------


async def test_upstream_reset_mid_stream_is_recorded_incomplete_with_events_so_far(
    upstream: RunningUpstream, start_proxy: StartProxy
) -> None:
    chunks = stream_content()
    upstream.fake.streams["default"] = chunks
    proxy = await start_proxy(upstream.url)
    got: list[ChatCompletionChunk] = []
    failure: Exception | None = None
    async with proxy.client() as client:
        response = await client.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, extra_headers={"x-reset-after": "3"}
        )
        try:
            async for chunk in response:
                got.append(chunk)
        except Exception as exc:  # whatever the SDK raises for a cut connection
            failure = exc
    assert failure is not None or len(got) < len(chunks), "client saw a clean, complete stream"
    assert len(got) <= 3

    interaction = await only_recorded(proxy)
    assert interaction.outcome.complete is False
    assert "upstream" in (interaction.outcome.incomplete_reason or "")
    assert [event.text for event in interaction.response.events or []] == sse(chunks)[:3]
    assert interaction.response.completion is not None
    assert interaction.response.completion["choices"][0]["message"]["content"] == "Hello!"


async def test_client_disconnect_mid_stream_reaches_upstream_and_is_recorded_incomplete(
    upstream: RunningUpstream, start_proxy: StartProxy
) -> None:
    chunks = stream_content()
    upstream.fake.streams["default"] = chunks
    proxy = await start_proxy(upstream.url)
    got: list[ChatCompletionChunk] = []
    async with proxy.client() as client:
        response = await client.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, extra_headers={"x-gap-ms": "400"}
        )
        async for chunk in response:
            got.append(chunk)
            if len(got) == 2:
                break
        await response.close()
        # A full stream would take 8 x 400 ms; the upstream must hear of the client leaving well before.
        await eventually(lambda: upstream.fake.disconnects == 1, timeout=2.0, what="upstream saw the disconnect")

    assert len(upstream.fake.sent["req_1"]) < len("".join(f"data: {d}\n\n" for d in sse(chunks)))
    interaction = await only_recorded(proxy)
    assert interaction.outcome.complete is False
    assert interaction.outcome.incomplete_reason == "client disconnected"
    events = [event.text for event in interaction.response.events or []]
    assert 2 <= len(events) < len(chunks)
    assert events == sse(chunks)[: len(events)]
    assert [json.loads(data) for data in events[:2]] == [c.model_dump(exclude_unset=True) for c in got]


async def test_upstream_stalling_mid_stream_beyond_chunk_timeout_is_recorded_incomplete(
    upstream: RunningUpstream, start_proxy: StartProxy
) -> None:
    chunks = stream_content()
    upstream.fake.streams["default"] = chunks
    # The first-byte timeout would let the 800 ms gaps through; the chunk timeout must not, from the first gap on.
    proxy = await start_proxy(upstream.url, first_byte_timeout=5.0, chunk_timeout=0.3)
    got: list[ChatCompletionChunk] = []
    async with proxy.client() as client:
        response = await client.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, extra_headers={"x-gap-ms": "800"}
        )
        with pytest.raises(openai.APIConnectionError):
            async for chunk in response:
                got.append(chunk)
    assert len(got) == 1

    interaction = await only_recorded(proxy)
    assert interaction.outcome.complete is False
    assert interaction.outcome.incomplete_reason == "upstream timeout mid-response"
    assert [event.text for event in interaction.response.events or []] == sse(chunks)[:1]


async def test_upstream_stalling_later_in_a_stream_is_cut_by_the_chunk_timeout(
    upstream: RunningUpstream, start_proxy: StartProxy
) -> None:
    chunks = stream_content()
    upstream.fake.streams["default"] = chunks
    # Chunks keep arriving 50 ms apart, then upstream goes silent: the bound now comes from the socket's read
    # timer, re-armed with the chunk timeout on each arrival, not from the first-read guard.
    proxy = await start_proxy(upstream.url, first_byte_timeout=5.0, chunk_timeout=0.3)
    async with proxy.client() as client:
        response = await client.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, extra_headers={"x-gap-ms": "50", "x-stall-after": "3"}
        )
        with pytest.raises(openai.APIConnectionError):
            async for _ in response:
                pass

    interaction = await only_recorded(proxy)
    assert interaction.outcome.incomplete_reason == "upstream timeout mid-response"
    assert [event.text for event in interaction.response.events or []] == sse(chunks)[:3]
    assert (interaction.timings.total_ms or 0) < 3000  # cut by the 0.3 s bound, not by the 5 s first-byte one


async def test_a_client_slow_to_read_is_not_taken_for_a_silent_upstream(
    upstream: RunningUpstream, start_proxy: StartProxy
) -> None:
    # The chunk timeout bounds the upstream's silence, not the client's pace: 18 MB fill every buffer on the
    # way, so the proxy waits for this client far longer than the chunk timeout, and must not cut the answer.
    upstream.fake.streams["default"] = [make_chunk([make_choice(content_delta("x" * 60_000))]) for _ in range(300)]
    proxy = await start_proxy(upstream.url, chunk_timeout=0.3)
    async with (
        aiohttp.ClientSession() as session,
        session.post(proxy.url + CHAT, json={"model": MODEL, "messages": MESSAGES, "stream": True}) as response,
    ):
        assert await response.content.readany()
        await asyncio.sleep(1.0)
        rest = await response.read()
    assert rest.endswith(b"data: [DONE]\n\n")
    interaction = await only_recorded(proxy)
    assert interaction.outcome.complete, interaction.outcome
    assert len(interaction.response.events or []) == 301


async def test_client_giving_up_before_upstream_answers_is_recorded_and_reaches_upstream(
    upstream: RunningUpstream, start_proxy: StartProxy
) -> None:
    upstream.fake.completions["default"] = make_completion()
    proxy = await start_proxy(upstream.url)
    async with proxy.client(timeout=0.3) as client:
        with pytest.raises(openai.APITimeoutError):
            await client.chat.completions.create(model=MODEL, messages=MESSAGES, extra_headers={"x-hang-ms": "3000"})
    await eventually(lambda: upstream.fake.disconnects == 1, timeout=2.0, what="upstream saw the disconnect")

    interaction = await only_recorded(proxy)
    assert interaction.outcome.complete is False
    assert interaction.outcome.incomplete_reason == "client disconnected"
    assert interaction.request.body.json_ == {"model": MODEL, "messages": MESSAGES}


# --- 10. usage ---------------------------------------------------------------------------------------------


async def test_stream_without_usage_is_marked_usage_missing(upstream: RunningUpstream, start_proxy: StartProxy) -> None:
    upstream.fake.streams["default"] = stream_content()
    proxy = await start_proxy(upstream.url)
    async with proxy.client() as client:
        response = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
        [chunk async for chunk in response]

    interaction = await only_recorded(proxy)
    assert interaction.outcome.usage_missing is True
    assert interaction.response.completion is not None
    assert interaction.response.completion.get("usage") is None


async def test_stream_with_usage_chunk_records_that_usage(upstream: RunningUpstream, start_proxy: StartProxy) -> None:
    chunks = stream_with_usage()
    upstream.fake.streams["default"] = chunks
    proxy = await start_proxy(upstream.url)
    async with proxy.client() as client:
        response = await client.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        state: ChatCompletionStreamState[object] = ChatCompletionStreamState()
        async for chunk in response:
            state.handle_chunk(chunk)

    interaction = await only_recorded(proxy)
    assert interaction.outcome.usage_missing is False
    assert interaction.response.completion is not None
    assert interaction.response.completion["usage"] == chunks[-1]["usage"]
    sdk_usage = state.get_final_completion().usage
    assert sdk_usage is not None and sdk_usage.model_dump(exclude_unset=True) == chunks[-1]["usage"]


# --- 11. health --------------------------------------------------------------------------------------------


async def health(proxy: RunningProxy) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(f"{proxy.url}/_proxy/health") as response:
        assert response.status == 200
        body: dict[str, Any] = await response.json()
        return body


async def wait_for_health(
    proxy: RunningProxy, check: Callable[[dict[str, Any]], bool], what: str, timeout: float = 5.0
) -> dict[str, Any]:
    """Health reports counts once the background writer is done: poll until `check` holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check(report := await health(proxy)):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"health never showed {what} within {timeout}s: {report}")
        await asyncio.sleep(0.02)
    return report


def break_cassette_directory(directory: Path) -> None:
    """Tests run as root, which no permission bits stop: a file where the directory was stops everyone."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.write_text("not a directory\n")


async def test_health_reports_mode_upstream_and_recorded_count(
    upstream: RunningUpstream, start_proxy: StartProxy
) -> None:
    upstream.fake.completions["default"] = make_completion()
    proxy = await start_proxy(upstream.url)
    before = await health(proxy)
    assert (before["status"], before["mode"], before["upstream"]) == ("ok", "record", upstream.url)
    assert (before["interactions_recorded"], before["write_errors"]) == (0, 0)

    async with proxy.client() as client:
        for _ in range(2):
            await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    await recorded(proxy, 2)
    after = await wait_for_health(proxy, lambda h: h["interactions_recorded"] == 2, "2 recorded")
    assert (after["status"], after["write_errors"], after["last_write_error"]) == ("ok", 0, None)


async def test_unwritable_cassette_directory_degrades_health_but_not_traffic(
    upstream: RunningUpstream, start_proxy: StartProxy
) -> None:
    upstream.fake.completions["default"] = make_completion()
    upstream.fake.streams["default"] = stream_content()
    proxy = await start_proxy(upstream.url)
    break_cassette_directory(proxy.settings.cassettes)
    async with proxy.client() as client:
        completion = await client.chat.completions.create(model=MODEL, messages=MESSAGES)
        async with client.chat.completions.stream(model=MODEL, messages=MESSAGES) as stream:
            final = await stream.get_final_completion()
    assert completion == ChatCompletion.model_validate(make_completion())
    assert final.choices[0].message.content == "Hello! How can I help you today?"

    report = await wait_for_health(proxy, lambda h: h["write_errors"] == 2, "2 write errors")
    assert report["status"] == "degraded"
    assert report["interactions_recorded"] == 0
    assert str(proxy.settings.cassettes) in report["last_write_error"]
    assert "Not a directory" in report["last_write_error"]


async def test_health_recovers_once_the_cassette_directory_is_writable_again(
    upstream: RunningUpstream, start_proxy: StartProxy
) -> None:
    upstream.fake.completions["default"] = make_completion()
    proxy = await start_proxy(upstream.url)
    directory = proxy.settings.cassettes
    break_cassette_directory(directory)
    async with proxy.client() as client:
        await client.chat.completions.create(model=MODEL, messages=MESSAGES)
        await wait_for_health(proxy, lambda h: h["status"] == "degraded", "degraded")
        directory.unlink()
        await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    report = await wait_for_health(proxy, lambda h: h["interactions_recorded"] == 1, "1 recorded")
    assert (report["status"], report["write_errors"], report["last_write_error"]) == ("ok", 1, None)
    await recorded(proxy, 1)


# --- 12. other paths and query strings are forwarded as they are -------------------------------------------


async def test_non_chat_path_and_query_string_are_forwarded_byte_for_byte(
    upstream: RunningUpstream, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(upstream.url)
    target = "/v1/models?limit=2&after=m%2F1&tag=a&tag=b"
    url = URL(f"{proxy.url}{target}", encoded=True)  # or aiohttp itself would send `m/1`
    async with aiohttp.ClientSession() as session, session.get(url, headers=auth()) as response:
        echoed = await response.json()
    assert response.status == 200
    assert upstream.fake.received[-1].raw_path_qs == target
    assert upstream.fake.received[-1].method == "GET"
    assert echoed["path"] == "/v1/models"
    assert echoed["query"] == "limit=2&after=m/1&tag=a&tag=b"

    interaction = await only_recorded(proxy)
    assert (interaction.request.method, interaction.request.path) == ("GET", "/v1/models")
    assert parse_qsl(interaction.request.query) == [("limit", "2"), ("after", "m/1"), ("tag", "a"), ("tag", "b")]
    assert interaction.response.body.json_ == echoed


async def test_sdk_call_to_another_endpoint_is_forwarded(upstream: RunningUpstream, start_proxy: StartProxy) -> None:
    proxy = await start_proxy(upstream.url)
    async with proxy.client() as client:
        page = await client.models.list(extra_query={"limit": 2})
    assert page.data == []
    assert (upstream.fake.received[-1].path, upstream.fake.received[-1].query) == ("/v1/models", "limit=2")
    interaction = await only_recorded(proxy)
    assert interaction.request.query == "limit=2"
