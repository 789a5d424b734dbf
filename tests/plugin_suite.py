"""An example test suite that uses the pytest plugin, and how the plugin's tests run it: a real pytest in a
subprocess (`pytester.runpytest_subprocess`) over a temporary project, against the fake upstream on a thread.

The example covers each kind of client: the official SDK sync and async, plain and streamed, the
`chat.completions.stream(...)` helper, a tool call, a program in another process that only knows
`OPENAI_BASE_URL`, and code that swallows the SDK's error.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from proxy.cassettes import iter_cassette_paths
from tests.chunks import (
    make_completion,
    make_completion_choice,
    make_message,
    make_tool_call,
    stream_content,
)
from tests.conftest import API_KEY
from tests.upstream import FakeUpstream, serve_upstream_in_thread

STREAM_DELTAS = ["Hello", "!", " How can", " I help", " you today?"]

INI = """\
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
"""

EXAMPLE = '''\
import json, os, subprocess, sys

import openai
import pytest

PROMPT = "Say hello to the proxy"
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object",
    "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def ask(text):
    return [{"role": "user", "content": text}]


def expected(llm_proxy):
    return "replayed" if llm_proxy.proxy_mode == "replay" else "recorded"


def test_plain(llm_proxy):
    with openai.OpenAI(max_retries=0) as client:
        answer = client.chat.completions.create(model="gpt-4o-mini", messages=ask(PROMPT))
    assert answer.choices[0].message.content == "Hello!"
    assert [e.outcome for e in llm_proxy.interactions] == [expected(llm_proxy)]
    [exchange] = llm_proxy.interactions
    assert exchange.cassette.parent.parent == llm_proxy.cassette_dir
    assert llm_proxy.load(exchange).metadata.tags == {"test": "test_llm.py::test_plain"}
    assert os.environ["OPENAI_BASE_URL"] == llm_proxy.base_url


async def test_async_streamed(llm_proxy):
    async with openai.AsyncOpenAI(max_retries=0) as client:
        stream = await client.chat.completions.create(model="gpt-4o-mini", messages=ask("Stream it"), stream=True)
        deltas = [c.choices[0].delta.content async for c in stream if c.choices and c.choices[0].delta.content]
    assert deltas == STREAM_DELTAS


def test_stream_helper(llm_proxy):
    with openai.OpenAI(max_retries=0) as client:
        with client.chat.completions.stream(model="gpt-4o-mini", messages=ask("Count to three")) as stream:
            events = list(stream)
            final = stream.get_final_completion()
    if os.environ.get("EVENTS_OUT"):  # each chunk the helper saw, for the outer test to compare runs
        chunks = [e.chunk.model_dump(mode="json", exclude_unset=True) for e in events if e.type == "chunk"]
        with open(os.environ["EVENTS_OUT"], "a") as out:
            print(json.dumps(chunks), file=out)
    deltas = [event.delta for event in events if event.type == "content.delta"]
    assert deltas == ["", *STREAM_DELTAS]  # the role chunk's empty content comes first
    assert final.choices[0].message.content == "".join(STREAM_DELTAS)


def test_tool_call(llm_proxy):
    with openai.OpenAI(max_retries=0) as client:
        answer = client.chat.completions.create(
            model="gpt-4o-mini", messages=ask("Weather in Paris?"), tools=[WEATHER],
            extra_headers={"x-scenario": "tool"},
        )
    call = answer.choices[0].message.tool_calls[0]
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "Paris"})


CHILD = """
import json, os, urllib.request
body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "From a child"}]}).encode()
request = urllib.request.Request(os.environ["OPENAI_BASE_URL"] + "/chat/completions", data=body,
    headers={"Content-Type": "application/json", "Authorization": "Bearer " + os.environ["OPENAI_API_KEY"]})
print(json.load(urllib.request.urlopen(request))["choices"][0]["message"]["content"])
"""


def test_another_process(llm_proxy):
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "Hello!", done.stderr


def test_swallowing(llm_proxy):
    try:
        with openai.OpenAI(max_retries=0) as client:
            client.chat.completions.create(model="gpt-4o-mini", messages=ask("Swallowed"))
    except openai.APIError:
        pass  # the code under test hides the error: the plugin still fails the test on a miss
'''.replace("STREAM_DELTAS", repr(STREAM_DELTAS))

EXAMPLE_TESTS = 6


@dataclass
class Upstream:
    """The fake upstream on a thread (the proxy of the inner pytest reaches it over loopback)."""

    fake: FakeUpstream
    url: str
    stop: object

    def close(self) -> None:
        self.stop.set()  # type: ignore[attr-defined]

    @property
    def requests(self) -> int:
        return len(self.fake.received)


@pytest.fixture
def upstream_thread() -> Iterator[Upstream]:
    fake = FakeUpstream()
    fake.streams["default"] = stream_content()
    fake.completions["default"] = make_completion()
    tool = make_message(None, tool_calls=[make_tool_call("call_1", "get_weather", '{"city":"Paris"}')])
    fake.completions["tool"] = make_completion([make_completion_choice(tool, finish_reason="tool_calls")])
    url, stop, thread = serve_upstream_in_thread(fake)
    running = Upstream(fake, url, stop)
    yield running
    stop.set()
    thread.join(10)


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A temporary project with the pytest settings of the example (the key is the test key, a secret)."""
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    pytester.makefile(".ini", pytest=INI)
    return pytester


def write(pytester: pytest.Pytester, name: str, source: str) -> Path:
    path = pytester.path / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    return path


def run(pytester: pytest.Pytester, upstream: Upstream | str, *args: str) -> pytest.RunResult:
    url = upstream if isinstance(upstream, str) else upstream.url
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "--llm-upstream", url, *args, timeout=120)


def cassettes(directory: Path) -> list[Path]:
    return list(iter_cassette_paths(directory)) if directory.is_dir() else []


def cassette_counts(root: Path) -> dict[str, int]:
    """How many cassettes each test directory under `root/<module>/` holds."""
    return {d.name: len(cassettes(d)) for d in sorted(root.iterdir())} if root.is_dir() else {}
