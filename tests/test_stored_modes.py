"""Which mode answers the stored Chat Completions API: auto serves it from the recordings, new ones included;
record mode, and auto with `stored_completions = "forward"`, pass its calls to the upstream like any other."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import openai
import pytest

from proxy.app import summary_line
from proxy.cassettes import load_cassette
from tests.chunks import content_delta, make_choice, make_chunk, make_completion
from tests.conftest import RunningUpstream, StartProxy, wait_for_cassettes

MESSAGES: list[openai.types.chat.ChatCompletionMessageParam] = [{"role": "user", "content": "Tag me"}]


async def listed_once_indexed(client: openai.AsyncOpenAI, count: int, timeout: float = 5.0) -> list[str]:
    """The stored list once it has `count` items (a recording joins the index just after its response has
    gone, when its cassette is written), or as it is after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        ids = [c.id async for c in client.chat.completions.list()]
        if len(ids) >= count or loop.time() > deadline:
            return ids
        await asyncio.sleep(0.02)


async def test_completions_recorded_in_auto_mode_join_the_stored_list(
    upstream: RunningUpstream, start_proxy: StartProxy
) -> None:
    upstream.fake.completions["default"] = make_completion(id="chatcmpl-auto1", created=1_764_000_001)
    upstream.fake.streams["default"] = [
        make_chunk([make_choice({"role": "assistant", "content": ""})], id="chatcmpl-auto2", created=1_764_000_002),
        make_chunk(
            [make_choice(content_delta("streamed"), finish_reason="stop")], id="chatcmpl-auto2", created=1_764_000_002
        ),
    ]
    auto = await start_proxy(upstream.url, mode="auto")
    async with auto.client() as client:
        assert [c.id async for c in client.chat.completions.list()] == []
        await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, store=True, metadata={"k": "1"})
        stream = await client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, store=True, metadata={"k": "2"}, stream=True
        )
        async for _ in stream:
            pass
        await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "no store"}])
        await wait_for_cassettes(auto.settings.cassettes, 3)
        assert await listed_once_indexed(client, 2) == ["chatcmpl-auto1", "chatcmpl-auto2"]
        streamed = await client.chat.completions.retrieve("chatcmpl-auto2")
        assert streamed.choices[0].message.content == "streamed"
        assert streamed.metadata == {"k": "2"}
        tagged = [c.id async for c in client.chat.completions.list(metadata={"k": "1"})]
        assert tagged == ["chatcmpl-auto1"]
    # The stored API was answered locally: the upstream saw only the three creates.
    assert [r.method for r in upstream.fake.received] == ["POST", "POST", "POST"]


async def test_record_mode_forwards_and_records_the_stored_api_calls(
    upstream: RunningUpstream, start_proxy: StartProxy
) -> None:
    recorder = await start_proxy(upstream.url, mode="record")
    async with recorder.client() as client:
        page = await client.chat.completions.list(limit=5, metadata={"team": "a b"})
        assert page.data == []
        await client.chat.completions.delete("chatcmpl-x")
    (received_list, received_delete) = upstream.fake.received
    assert (received_list.method, received_list.path) == ("GET", "/v1/chat/completions")
    assert "metadata%5Bteam%5D=a+b" in received_list.raw_path_qs
    assert (received_delete.method, received_delete.path) == ("DELETE", "/v1/chat/completions/chatcmpl-x")
    paths = await wait_for_cassettes(recorder.settings.cassettes, 2)
    recorded = sorted((load_cassette(p).request.method, load_cassette(p).request.path) for p in paths)
    assert recorded == [("DELETE", "/v1/chat/completions/chatcmpl-x"), ("GET", "/v1/chat/completions")]


async def test_auto_mode_can_forward_the_stored_api_instead(upstream: RunningUpstream, start_proxy: StartProxy) -> None:
    upstream.fake.completions["default"] = make_completion(id="chatcmpl-fwd", created=1_764_000_001)
    auto = await start_proxy(upstream.url, mode="auto", stored_completions="forward")
    async with auto.client() as client:
        await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, store=True)
        await wait_for_cassettes(auto.settings.cassettes, 1)
        page = await client.chat.completions.with_raw_response.list()
    # The fake upstream's answer, not the local one (which would list chatcmpl-fwd).
    assert json.loads(page.http_response.content)["path"] == "/v1/chat/completions"
    assert [r.method for r in upstream.fake.received] == ["POST", "GET"]


async def test_replay_with_forward_replays_recorded_stored_api_calls(
    upstream: RunningUpstream, start_proxy: StartProxy
) -> None:
    recorder = await start_proxy(upstream.url, mode="record")
    async with recorder.client() as client:
        await client.chat.completions.list(limit=5)
    await wait_for_cassettes(recorder.settings.cassettes, 1)
    url = upstream.url
    await upstream.server.close()
    replay = await start_proxy(url, mode="replay", stored_completions="forward")
    async with replay.client() as client:
        raw = await client.chat.completions.with_raw_response.list(limit=5)
        assert json.loads(raw.http_response.content)["query"] == "limit=5"  # the recorded upstream answer


async def test_the_sample_cassettes_list_with_store_all_as_the_readme_says(start_proxy: StartProxy) -> None:
    samples = Path(__file__).resolve().parent.parent / "cassettes"
    plain = await start_proxy(mode="replay", cassettes=samples)
    async with plain.client() as client:
        assert [c.id async for c in client.chat.completions.list()] == []  # none was created with store: true
    browsing = await start_proxy(mode="replay", cassettes=samples, store_all=True)
    async with browsing.client() as client:
        listed = [c async for c in client.chat.completions.list()]
    assert len(listed) == 3  # the 429 is not a completion
    contents = {c.choices[0].message.content for c in listed}
    assert "Hello, proxy! Nice to meet you. Everything looks good on this end." in contents
    assert "One, two, three!" in contents
    assert summary_line(browsing.server.app).startswith("proxy: stopped after 1 request(s): ")
    assert "1 stored-API" in summary_line(browsing.server.app)


async def test_a_version_1_cassette_is_served_converted(start_proxy: StartProxy, tmp_path: Path) -> None:
    directory = tmp_path / "old"
    directory.mkdir()
    shutil.copy(Path(__file__).resolve().parent / "data" / "v1-stream-with-usage.json", directory / "old.json")
    replay = await start_proxy(mode="replay", cassettes=directory, store_all=True)
    async with replay.client() as client:
        got = await client.chat.completions.retrieve("chatcmpl-SampleCount03")
    assert got.choices[0].message.content == "One, two, three!"
    assert got.usage is not None


async def test_a_cassette_gone_after_startup_is_a_500_naming_it(
    upstream: RunningUpstream, start_proxy: StartProxy, tmp_path: Path
) -> None:
    upstream.fake.completions["default"] = make_completion(id="chatcmpl-gone", created=1_764_000_001)
    recorder = await start_proxy(upstream.url)
    async with recorder.client() as client:
        await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, store=True)
    (cassette,) = await wait_for_cassettes(recorder.settings.cassettes, 1)
    replay = await start_proxy(mode="replay")
    cassette.unlink()
    async with replay.client() as client:
        with pytest.raises(openai.InternalServerError) as caught:
            await client.chat.completions.retrieve("chatcmpl-gone")
        with pytest.raises(openai.InternalServerError):
            await client.chat.completions.list()
    assert caught.value.code == "bad_cassette"
    assert cassette.name in caught.value.message
