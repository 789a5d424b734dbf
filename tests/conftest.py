"""Shared fixtures: a fake upstream, the real proxy app in front of it, and the official SDK as the client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
from aiohttp.test_utils import TestServer

from analytics.sinks import database_sinks
from proxy.app import create_app
from proxy.cassettes import iter_cassette_paths
from proxy.settings import Settings
from tests.upstream import FakeUpstream

API_KEY = "sk-test-SECRET-4f1c2b9e7a6d"


@dataclass
class RunningProxy:
    server: TestServer
    settings: Settings

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    def client(self, **kwargs: Any) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=f"{self.url}/v1", api_key=API_KEY, max_retries=0, **kwargs)


@dataclass
class RunningUpstream:
    fake: FakeUpstream
    server: TestServer

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")


@pytest.fixture
async def upstream(aiohttp_server: Any) -> RunningUpstream:
    fake = FakeUpstream()
    server = await aiohttp_server(fake.app())
    return RunningUpstream(fake, server)


StartProxy = Callable[..., Awaitable[RunningProxy]]


@pytest.fixture(params=["process", "in-process"])
def runner(request: pytest.FixtureRequest) -> str:
    """Where recording runs; a test that takes this fixture runs once with each runner (the default is the
    worker process, as `proxy record` runs it; the in-process one is what embedding uses)."""
    return str(request.param)


@pytest.fixture
def start_proxy(aiohttp_server: Any, tmp_path: Path) -> StartProxy:
    async def start(upstream_url: str = "http://127.0.0.1:9", **overrides: Any) -> RunningProxy:
        values: dict[str, Any] = {
            "upstream": upstream_url,
            "cassettes": tmp_path / "cassettes",
            "db_enabled": False,
            "db": tmp_path / "traffic.duckdb",
            # the default runner, the recording worker process, as `proxy record` runs it; tests that also
            # cover the in-process runner (embedding) pass record_workers="in-process"
            "record_workers": "process",
        }
        values.update(overrides)
        settings = Settings.model_validate(values)
        server = await aiohttp_server(create_app(settings, sinks=database_sinks(settings)))
        return RunningProxy(server, settings)

    return start


@pytest.fixture
async def sdk_close() -> AsyncIterator[list[openai.AsyncOpenAI]]:
    clients: list[openai.AsyncOpenAI] = []
    yield clients
    for client in clients:
        await client.close()


async def wait_for_cassettes(directory: Path, count: int, timeout: float = 5.0) -> list[Path]:
    """The cassette files under directory once there are at least `count` of them (they are written in the
    background, after the response). Fails after `timeout` seconds, naming how many there were."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        paths = list(iter_cassette_paths(directory)) if directory.is_dir() else []
        if len(paths) >= count:
            return paths
        if loop.time() > deadline:
            raise AssertionError(f"expected {count} cassette(s) in {directory} within {timeout}s, found {len(paths)}")
        await asyncio.sleep(0.01)


async def eventually(check: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    """Poll `check` until it holds; fail after `timeout` seconds naming `what`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout}s")
        await asyncio.sleep(0.01)
