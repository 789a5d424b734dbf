"""The embedding API: one call starts a proxy inside a running program, a base URL comes back, a stop is clean.
It is what `proxy serve` runs on and what the pytest plugin holds for a session."""

from __future__ import annotations

import asyncio
import gc
import socket
import time
from pathlib import Path

import aiohttp
import openai
import pytest

from proxy.cassettes import iter_cassette_paths, load_cassette
from proxy.collector import YOUNG_COLLECTION_THRESHOLD, collect_young_less_often
from proxy.embed import ProxyThread, start_proxy
from proxy.errors import ProxyError
from proxy.settings import Settings
from proxy.trafficlog import Exchange
from tests.chunks import stream_content
from tests.cli_process import run_cli, start_proxy_process
from tests.conftest import API_KEY, RunningUpstream, wait_for_cassettes

SAMPLES = Path(__file__).resolve().parent.parent / "cassettes"
HELLO = [{"role": "user", "content": "Say hello to the proxy"}]


def settings(**values: object) -> Settings:
    return Settings.model_validate({"port": 0, "record_workers": "in-process", **values})


async def test_a_replaying_proxy_starts_on_a_free_port_answers_and_stops(tmp_path: Path) -> None:
    async with await start_proxy(settings(mode="replay", cassettes=SAMPLES)) as proxy:
        assert proxy.base_url == f"http://127.0.0.1:{proxy.port}/v1"
        async with openai.AsyncOpenAI(base_url=proxy.base_url, api_key="unused", max_retries=0) as client:
            answer = await client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)  # type: ignore[arg-type]
        assert answer.choices[0].message.content is not None
        port = proxy.port
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0  # stopped: nobody listens any more
    assert not (tmp_path / "cassettes").exists()


async def test_embedding_leaves_the_host_programs_garbage_collector_alone() -> None:
    before = gc.get_threshold()
    async with await start_proxy(settings(mode="replay", cassettes=SAMPLES)) as proxy:
        assert proxy.port
        assert gc.get_threshold() == before
    assert gc.get_threshold() == before


def test_the_proxys_own_processes_collect_the_youngest_generation_less_often() -> None:
    before = gc.get_threshold()
    try:
        collect_young_less_often()
        assert gc.get_threshold() == (YOUNG_COLLECTION_THRESHOLD, before[1], before[2])
    finally:
        gc.set_threshold(*before)


async def test_a_recording_proxy_writes_its_cassettes_before_stop_returns(
    upstream: RunningUpstream, tmp_path: Path, runner: str
) -> None:
    upstream.fake.streams["default"] = stream_content()
    cassettes = tmp_path / "cassettes"
    proxy = await start_proxy(settings(upstream=upstream.url, cassettes=cassettes, record_workers=runner))
    async with openai.AsyncOpenAI(base_url=proxy.base_url, api_key=API_KEY, max_retries=0) as client:
        stream = await client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True)  # type: ignore[arg-type]
        [chunk async for chunk in stream]
    await proxy.stop()
    assert len(list(cassettes.rglob("*.json"))) == 1


def test_a_synchronous_program_gets_a_proxy_on_its_own_thread() -> None:
    thread = ProxyThread(settings(mode="replay", cassettes=SAMPLES))
    proxy = thread.start()
    try:
        client = openai.OpenAI(base_url=proxy.base_url, api_key="unused", max_retries=0)
        answer = client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)  # type: ignore[arg-type]
        client.close()
        assert answer.choices[0].message.content is not None
        assert thread.call(lambda: proxy.settings.mode.value) == "replay"
    finally:
        thread.stop()


async def test_retarget_switches_directory_and_mode_for_the_next_request(
    upstream: RunningUpstream, tmp_path: Path
) -> None:
    upstream.fake.streams["default"] = stream_content()
    first, second = tmp_path / "first", tmp_path / "second"
    proxy = await start_proxy(settings(upstream=upstream.url, mode="replay", cassettes=first), may_record=True)
    try:
        async with openai.AsyncOpenAI(base_url=proxy.base_url, api_key=API_KEY, max_retries=0) as client:
            with pytest.raises(openai.NotFoundError):  # replay of an empty directory: a miss
                await client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)  # type: ignore[arg-type]
            proxy.retarget(second, "record")
            await client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True)  # type: ignore[arg-type]
            await wait_for_cassettes(second, 1)
            report = proxy.retarget(second, "replay")
            assert report.loaded == 1
            replayed = await client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True)  # type: ignore[arg-type]
            assert [chunk async for chunk in replayed]
    finally:
        await proxy.stop()
    assert len(upstream.fake.received) == 1
    assert not first.exists()


async def test_retarget_to_recording_needs_a_recording_side(tmp_path: Path) -> None:
    async with await start_proxy(settings(mode="replay", cassettes=SAMPLES)) as proxy:
        with pytest.raises(ValueError, match="may_record"):
            proxy.retarget(tmp_path, "record")


async def test_a_port_in_use_is_a_one_line_error_and_creates_no_file(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cassettes = tmp_path / "cassettes"
        with pytest.raises(ProxyError, match=f"cannot listen on 127.0.0.1:{port}"):
            await start_proxy(settings(port=port, cassettes=cassettes, record_workers="process"))
        result = run_cli(["record", "--port", str(port), "--cassettes", str(cassettes)], cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"proxy: cannot listen on 127.0.0.1:{port}: Address already in use"]
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no cassette directory, no database


async def test_replay_stops_at_once_when_idle_even_with_a_client_connection_open() -> None:
    proxy = start_proxy_process(["replay", str(SAMPLES)])
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{proxy.url}/_proxy/health") as response:
            assert response.status == 200
        started = time.monotonic()
        code, stderr = await asyncio.to_thread(proxy.stop)
        took = time.monotonic() - started
    assert code == 0, stderr
    # not a benchmark: the bound is half the drain timeout (10 s), which a wait for the idle connection would use
    assert took < 5.0


async def test_an_observer_sees_each_exchange_with_its_cassette_and_a_miss_with_its_reason(
    upstream: RunningUpstream, tmp_path: Path
) -> None:
    upstream.fake.streams["default"] = stream_content()
    cassettes = tmp_path / "cassettes"
    seen: list[Exchange] = []
    proxy = await start_proxy(settings(upstream=upstream.url, mode="auto", cassettes=cassettes))
    proxy.observe(seen.append)
    try:
        async with openai.AsyncOpenAI(base_url=proxy.base_url, api_key=API_KEY, max_retries=0) as client:
            stream = await client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True)  # type: ignore[arg-type]
            [chunk async for chunk in stream]
            await proxy.settle()
            proxy.retarget(cassettes, "replay")
            stream = await client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True)  # type: ignore[arg-type]
            [chunk async for chunk in stream]
            with pytest.raises(openai.NotFoundError):
                await client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, temperature=0.3)  # type: ignore[arg-type]
    finally:
        await proxy.stop()
    (written,) = list(cassettes.rglob("*.json"))
    assert [(e.outcome, e.status, e.cassette) for e in seen] == [
        ("recorded", 200, written),
        ("replayed", 200, written),
        ("miss", 404, None),
    ]
    assert (
        seen[2].message is not None and "body.temperature (requested 0.3, absent in the recording)" in seen[2].message
    )


async def test_default_tags_label_every_recording_and_a_tag_header_of_the_same_name_wins(
    upstream: RunningUpstream, tmp_path: Path
) -> None:
    upstream.fake.streams["default"] = stream_content()
    cassettes = tmp_path / "cassettes"
    proxy = await start_proxy(settings(upstream=upstream.url, mode="replay", cassettes=cassettes), may_record=True)
    try:
        proxy.retarget(cassettes, "record", default_tags={"Test": "tests/test_x.py::test_y"})
        async with openai.AsyncOpenAI(base_url=proxy.base_url, api_key=API_KEY, max_retries=0) as client:
            for extra in ({"X-Proxy-Tag-Feature": "search"}, {"X-Proxy-Tag-Test": "from-the-header"}):
                stream = await client.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=HELLO,  # type: ignore[arg-type]
                    stream=True,
                    extra_headers=extra,
                )
                [chunk async for chunk in stream]
            await proxy.settle()
    finally:
        await proxy.stop()
    tags = sorted(
        sorted(load_cassette(path).metadata.tags.items())  # type: ignore[union-attr]
        for path in iter_cassette_paths(cassettes)
    )
    assert tags == [[("feature", "search"), ("test", "tests/test_x.py::test_y")], [("test", "from-the-header")]]
    assert all("x-proxy-tag" not in {k.lower() for k in r.headers} for r in upstream.fake.received)
