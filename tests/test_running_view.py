"""What a user sees while the proxy runs: a line per request, what replay loaded, a summary at a clean stop,
misses that show values, a reset between test-suite runs, and VCR.py's `once`."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from proxy.matching import ABSENT, Difference, MatchPolicy, RequestFacts, difference_details
from tests.chunks import stream_content
from tests.cli_process import start_proxy_process
from tests.conftest import API_KEY, RunningUpstream, StartProxy, wait_for_cassettes
from tests.test_replay_e2e import MESSAGES, record_three_answers, replayer
from tests.upstream import FakeUpstream, serve_upstream_in_thread

CHAT = "/v1/chat/completions"


def post(url: str, body: dict[str, Any]) -> int:
    request = urllib.request.Request(
        url + CHAT,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", "authorization": f"Bearer {API_KEY}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def traffic_lines(stderr: str) -> list[str]:
    return [line.split("proxy.traffic: ", 1)[1] for line in stderr.splitlines() if "proxy.traffic: " in line]


def test_record_then_replay_log_a_line_per_request_and_a_summary_at_stop(tmp_path: Path) -> None:
    fake = FakeUpstream()
    fake.streams["default"] = stream_content()
    fake.completions["default"] = {"id": "c", "object": "chat.completion", "model": "gpt-4o-mini", "choices": []}
    url, stop, thread = serve_upstream_in_thread(fake)
    cassettes = tmp_path / "c"
    plain = {"model": "gpt-4o-mini", "messages": MESSAGES}
    streamed = {**plain, "stream": True}
    try:
        recorder = start_proxy_process(["record", "--upstream", url, "--cassettes", str(cassettes), "--no-db"])
        assert post(recorder.url, plain) == 200
        assert post(recorder.url, streamed) == 200
        code, stderr = recorder.stop()
    finally:
        stop.set()
        thread.join(10)
    assert code == 0, stderr
    assert API_KEY not in stderr
    lines = sorted(traffic_lines(stderr))
    assert len(lines) == 2, stderr
    files = sorted(str(path.relative_to(cassettes)) for path in cassettes.rglob("*.json"))
    for line in lines:
        outcome, method, path, model, status, took, cassette = line.split(" ")
        assert (outcome, method, path, model, status) == ("recorded", "POST", CHAT, "gpt-4o-mini", "200")
        assert took.endswith("ms") and float(took.removesuffix("ms")) >= 0
        assert cassette in files
    assert "proxy: stopped after 2 request(s): 2 recorded, 0 replayed, 0 miss(es), 0 error(s)" in recorder.late_output

    (cassettes / "broken.json").write_text("{not json")
    replay = start_proxy_process(["replay", str(cassettes)])
    assert post(replay.url, plain) == 200
    assert post(replay.url, {**plain, "temperature": 0.5}) == 404
    code, stderr = replay.stop()
    assert code == 0, stderr
    assert f"proxy replay: loaded 2 recording(s) from {cassettes}/; skipped 1: 1 unreadable" in replay.early_output
    lines = traffic_lines(stderr)
    assert [line.split(" ")[:5] for line in lines] == [
        ["replayed", "POST", CHAT, "gpt-4o-mini", "200"],
        ["miss", "POST", CHAT, "gpt-4o-mini", "404"],
    ]
    assert lines[0].split(" ")[6] in files
    assert "proxy: stopped after 2 request(s): 0 recorded, 1 replayed, 1 miss(es), 0 error(s)" in replay.late_output


def test_quiet_turns_the_request_lines_off(tmp_path: Path) -> None:
    samples = Path(__file__).resolve().parent.parent / "cassettes"
    replay = start_proxy_process(["replay", str(samples), "--quiet"])
    assert post(replay.url, {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "nothing"}]}) == 404
    code, stderr = replay.stop()
    assert code == 0
    assert traffic_lines(stderr) == []


# --- a miss shows the values ---------------------------------------------------------------------------------


def facts(body: dict[str, Any], query: str = "") -> RequestFacts:
    return RequestFacts.from_parts("POST", CHAT, query, [], json.dumps(body).encode())


BASE = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
}

DETAILS: list[tuple[str, RequestFacts, RequestFacts, list[str]]] = [
    (
        "a changed value",
        facts({**BASE, "temperature": 0.9}),
        facts({**BASE, "temperature": 0.2}),
        ["body.temperature (recorded 0.2, requested 0.9)"],
    ),
    (
        "a field only the request has",
        facts({**BASE, "seed": 3}),
        facts(BASE),
        ["body.seed (requested 3, absent in the recording)"],
    ),
    (
        "a field only the recording has",
        facts(BASE),
        facts({**BASE, "seed": 3}),
        ["body.seed (recorded 3, absent in the request)"],
    ),
    (
        "one word of a long prompt, named by its place",
        facts({**BASE, "messages": [BASE["messages"][0], {"role": "user", "content": "Hello"}]}),
        facts(BASE),
        ['body.messages[1].content (recorded "Hi", requested "Hello")'],
    ),
    (
        "a long value is shortened",
        facts({**BASE, "user": "x" * 200}),
        facts({**BASE, "user": "y"}),
        ['body.user (recorded "y", requested "' + "x" * 78 + "…)"],
    ),
    (
        "a query parameter",
        facts(BASE, "api-version=2"),
        facts(BASE, "api-version=1"),
        ['query.api-version (recorded "1", requested "2")'],
    ),
]


@pytest.mark.parametrize(("live", "recorded", "expected"), [c[1:] for c in DETAILS], ids=[c[0] for c in DETAILS])
def test_a_miss_names_each_differing_field_with_both_values(
    live: RequestFacts, recorded: RequestFacts, expected: list[str]
) -> None:
    assert [d.describe() for d in difference_details(live, recorded, MatchPolicy())] == expected


def test_a_difference_keeps_absent_apart_from_null() -> None:
    assert Difference("body.seed", None, ABSENT).describe() == "body.seed (recorded null, absent in the request)"


async def test_a_miss_through_the_sdk_shows_recorded_and_requested_values(
    upstream: RunningUpstream, start_proxy: StartProxy
) -> None:
    upstream.fake.completions["default"] = {"id": "c", "object": "chat.completion", "model": "m", "choices": []}
    recorder = await start_proxy(upstream.url)
    async with recorder.client() as client:
        await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, temperature=0.2)
    await wait_for_cassettes(recorder.settings.cassettes, 1)
    replay = await replayer(start_proxy, upstream)
    async with replay.client() as client:
        with pytest.raises(openai.NotFoundError) as caught:
            await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, temperature=0.9)
    assert "body.temperature (recorded 0.2, requested 0.9)" in caught.value.message


# --- reset between runs ------------------------------------------------------------------------------------------


async def test_replay_reset_starts_every_repeat_counter_from_the_first_recording(
    upstream: RunningUpstream, start_proxy: StartProxy
) -> None:
    await record_three_answers(upstream, start_proxy)
    replay = await replayer(start_proxy, upstream, on_exhausted="fail")

    async def run_suite(client: openai.AsyncOpenAI) -> list[str | None]:
        answers = [(await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)) for _ in range(3)]
        return [a.choices[0].message.content for a in answers]

    async with replay.client() as client:
        first = await run_suite(client)
        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        async with aiohttp.ClientSession() as session, session.post(f"{replay.url}/_proxy/replay/reset") as r:
            assert r.status == 200
            assert (await r.json())["queues_rewound"] == 1
        second = await run_suite(client)
    assert first == second == ["First answer.", "Second answer.", "Third answer."]


# --- VCR.py's `once` -----------------------------------------------------------------------------------------------


async def test_mode_once_records_into_an_empty_directory_then_only_replays(
    upstream: RunningUpstream, start_proxy: StartProxy
) -> None:
    upstream.fake.completions["default"] = {"id": "c", "object": "chat.completion", "model": "m", "choices": []}
    first = await start_proxy(upstream.url, mode="once")
    async with first.client() as client:
        await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    await wait_for_cassettes(first.settings.cassettes, 1)
    second = await start_proxy(upstream.url, mode="once")
    async with second.client() as client:
        again = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, temperature=1.0)
    assert again.id == "c"
    assert len(upstream.fake.received) == 1  # the second proxy never went upstream
