"""The pytest plugin's record modes, by real pytest runs of an example suite against the fake upstream:
`once` records then `none` replays offline, a changed prompt fails exactly its test with the miss explained,
`rewrite` replaces, `new_episodes` adds only what is new, and a parallel run (-n 2) collides nowhere."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.chunks import stream_content
from tests.conftest import API_KEY
from tests.plugin_suite import (
    EXAMPLE,
    EXAMPLE_TESTS,
    Upstream,
    cassette_counts,
    cassettes,
    project,
    run,
    upstream_thread,
    write,
)

pytest_plugins = ["pytester"]
__all__ = ["project", "upstream_thread"]  # fixtures used by name

ALL_ONE = {
    name: 1
    for name in (
        "test_another_process",
        "test_async_streamed",
        "test_plain",
        "test_stream_helper",
        "test_swallowing",
        "test_tool_call",
    )
}


def record_example(project: pytest.Pytester, upstream: Upstream, *args: str, tests: int = EXAMPLE_TESTS) -> None:
    write(project, "test_llm", EXAMPLE)
    result = run(project, upstream, "--llm-record-mode=once", *args)
    result.assert_outcomes(passed=tests)
    assert upstream.requests == tests


def test_once_records_each_test_in_its_own_directory_then_none_replays_offline(
    project: pytest.Pytester, upstream_thread: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    record_example(project, upstream_thread)
    root = project.path / "cassettes" / "test_llm"
    assert cassette_counts(root) == ALL_ONE
    for path in cassettes(root):
        text = path.read_text()
        assert API_KEY not in text  # the key went upstream, never to disk
        test = path.relative_to(root).parts[0]
        assert json.loads(text)["metadata"]["tags"] == {"test": f"test_llm.py::{test}"}
    upstream_thread.close()
    monkeypatch.delenv("OPENAI_API_KEY")  # replay needs no key: the plugin sets a placeholder
    result = run(project, upstream_thread)  # the default mode is none
    result.assert_outcomes(passed=EXAMPLE_TESTS)
    assert upstream_thread.requests == EXAMPLE_TESTS
    assert cassette_counts(root) == ALL_ONE


def test_a_changed_prompt_fails_exactly_its_test_with_the_miss_explained_even_when_swallowed(
    project: pytest.Pytester, upstream_thread: Upstream
) -> None:
    record_example(project, upstream_thread)
    changed = EXAMPLE.replace("ask(PROMPT))", 'ask("Say goodbye to the proxy"))').replace(
        'ask("Swallowed")', 'ask("Swallowed too")'
    )
    write(project, "test_llm", changed)
    result = run(project, upstream_thread, "--llm-record-mode=none")
    result.assert_outcomes(passed=EXAMPLE_TESTS - 2, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*_ test_plain _*",
            "*openai.NotFoundError*",
            "*Captured llm-cassette call*",
            "1 request(s) found no recording in cassettes/test_llm/test_plain/ (record mode none*",
            "  - no recording for POST /v1/chat/completions (model gpt-4o-mini); closest recording: 2*.json, which "
            'differs in body.messages[[]0].content (recorded "Say hello to the proxy", requested "Say goodbye*")',
            "*_ test_swallowing _*",
            "*found no recording in cassettes/test_llm/test_swallowing/*",
            '*(recorded "Swallowed", requested "Swallowed too")',
            "*Captured llm-cassette call*",
        ]
    )
    assert {line.split(" - ")[0] for line in result.outlines if line.startswith("FAILED")} == {
        "FAILED test_llm.py::test_plain",
        "FAILED test_llm.py::test_swallowing",
    }
    assert upstream_thread.requests == EXAMPLE_TESTS  # none never forwards


def test_rewrite_replaces_the_cassettes_of_the_tests_it_runs(
    project: pytest.Pytester, upstream_thread: Upstream
) -> None:
    record_example(project, upstream_thread)
    root = project.path / "cassettes" / "test_llm"
    before = {d: cassettes(root / d) for d in ALL_ONE}
    result = run(project, upstream_thread, "--llm-record-mode=rewrite", "-k", "test_plain or test_stream_helper")
    result.assert_outcomes(passed=2)
    after = {d: cassettes(root / d) for d in ALL_ONE}
    assert {d for d in ALL_ONE if after[d] != before[d]} == {"test_plain", "test_stream_helper"}
    assert not before["test_plain"][0].exists()
    assert cassette_counts(root) == ALL_ONE
    assert upstream_thread.requests == EXAMPLE_TESTS + 2


def test_new_episodes_records_only_the_new_request(project: pytest.Pytester, upstream_thread: Upstream) -> None:
    record_example(project, upstream_thread)
    root = project.path / "cassettes" / "test_llm"
    [old] = cassettes(root / "test_plain")
    grown = EXAMPLE.replace(
        '    assert answer.choices[0].message.content == "Hello!"\n'
        "    assert [e.outcome for e in llm_proxy.interactions] == [expected(llm_proxy)]",
        '        client.chat.completions.create(model="gpt-4o-mini", messages=ask("And another"))\n'
        '    assert [e.outcome for e in llm_proxy.interactions] == ["replayed", "recorded"]',
    ).replace("    [exchange] = llm_proxy.interactions\n", "    exchange = llm_proxy.interactions[1]\n")
    assert grown != EXAMPLE
    write(project, "test_llm", grown)
    result = run(project, upstream_thread, "--llm-record-mode=new_episodes")
    result.assert_outcomes(passed=EXAMPLE_TESTS)
    assert upstream_thread.requests == EXAMPLE_TESTS + 1
    assert old in cassettes(root / "test_plain")
    assert cassette_counts(root) == {**ALL_ONE, "test_plain": 2}


def test_a_streamed_test_replays_chunk_for_chunk(
    project: pytest.Pytester, upstream_thread: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = project.path / "events.jsonl"
    monkeypatch.setenv("EVENTS_OUT", str(seen))
    record_example(project, upstream_thread, "-k", "stream", tests=2)
    upstream_thread.close()
    result = run(project, upstream_thread, "-k", "stream")
    result.assert_outcomes(passed=2)
    recorded, replayed = (json.loads(line) for line in seen.read_text().splitlines())
    assert replayed == recorded  # the stream helper saw the same chunks, one for one
    assert replayed == stream_content()  # ... which are the chunks upstream sent, every key as sent


def test_parallel_workers_record_and_replay_without_collisions(
    project: pytest.Pytester, upstream_thread: Upstream
) -> None:
    record_example(project, upstream_thread, "-n", "2")
    root = project.path / "cassettes" / "test_llm"
    assert cassette_counts(root) == ALL_ONE
    upstream_thread.close()
    result = run(project, upstream_thread, "-n", "2")
    result.assert_outcomes(passed=EXAMPLE_TESTS)
    result.stdout.fnmatch_lines(["*2 workers*"])


CURL = """
import json, os, subprocess


def test_curl(llm_proxy):
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "From curl"}]})
    key = "Authorization: Bearer " + os.environ["OPENAI_API_KEY"]
    url = os.environ["OPENAI_BASE_URL"] + "/chat/completions"
    command = ["curl", "-sS", "-H", "Content-Type: application/json", "-H", key, "-d", body, url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert json.loads(done.stdout)["choices"][0]["message"]["content"] == "Hello!", done.stdout + done.stderr
    assert [e.outcome for e in llm_proxy.interactions] in (["recorded"], ["replayed"])
"""


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_a_program_in_another_language_records_and_replays_through_the_base_url(
    project: pytest.Pytester, upstream_thread: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(project, "test_curl", CURL)
    run(project, upstream_thread, "--llm-record-mode=once").assert_outcomes(passed=1)
    [recorded] = cassettes(project.path / "cassettes" / "test_curl" / "test_curl")
    assert API_KEY not in recorded.read_text()
    upstream_thread.close()
    monkeypatch.delenv("OPENAI_API_KEY")
    run(project, upstream_thread).assert_outcomes(passed=1)
    assert upstream_thread.requests == 1
