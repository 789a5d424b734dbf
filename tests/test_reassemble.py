"""Tests for proxy.reassemble: openai-python as the oracle, the merge rules one by one, golden files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from proxy import models
from proxy.reassemble import ChunkAccumulator, Reassembly, reassemble
from tests.chunks import (
    ORACLE_STREAMS,
    content_delta,
    make_choice,
    make_chunk,
    make_logprobs,
    make_usage,
    refusal_delta,
    role_delta,
    stream_content,
    stream_logprobs,
    stream_role_repeated,
    stream_several_deltas_same_tool_index,
    stream_tool_id_repeated,
    stream_unknown_fields,
    stream_usage_on_choice_chunk,
    stream_with_usage,
    token_logprob,
    tool_call_delta,
    tool_calls_delta,
)

DATA = Path(__file__).parent / "data"
GOLDEN = ["parallel_tool_calls", "n2_interleaved", "with_usage", "unknown_fields"]

Chunks = list[dict[str, Any]]


def sdk_completion(chunks: Chunks) -> dict[str, Any]:
    """openai-python's accumulated completion, without what its parsing helpers add."""
    state: ChatCompletionStreamState[object] = ChatCompletionStreamState()
    for chunk in chunks:
        state.handle_chunk(ChatCompletionChunk.model_validate(chunk))
    dumped = state.get_final_completion().model_dump()
    for choice in dumped["choices"]:
        del choice["message"]["parsed"]
        for call in choice["message"]["tool_calls"] or []:
            del call["function"]["parsed_arguments"]
            # The SDK leaves the delta's `index` on each tool call; a ChatCompletion has none.
            del call["index"]
    return dumped


def completion(chunks: Chunks) -> dict[str, Any]:
    result = reassemble(chunks).completion
    assert result is not None
    return result


def at(obj: Any, *path: str | int) -> Any:
    for step in path:
        obj = obj[step]
    return obj


def message(chunks: Chunks, choice: int = 0) -> dict[str, Any]:
    return dict(at(completion(chunks), "choices", choice, "message"))


# --- (a) openai-python as the oracle -------------------------------------------------------------

# Compatible-server shapes on which the SDK happens to agree with the rules too.
SDK_AGREES: dict[str, Callable[[], Chunks]] = {
    "several_deltas_same_tool_index": stream_several_deltas_same_tool_index,
    "usage_on_choice_chunk": stream_usage_on_choice_chunk,
}


@pytest.mark.parametrize("name", [*ORACLE_STREAMS, *SDK_AGREES])
def test_matches_openai_sdk(name: str) -> None:
    chunks = {**ORACLE_STREAMS, **SDK_AGREES}[name]()
    expected = sdk_completion(chunks)
    ours = ChatCompletion.model_validate(completion(chunks)).model_dump()
    assert ours.keys() == expected.keys()
    for key in expected:
        if key != "choices":
            assert ours[key] == expected[key], key
    assert len(ours["choices"]) == len(expected["choices"])
    for mine, theirs in zip(ours["choices"], expected["choices"], strict=True):
        for key in theirs:
            assert mine[key] == theirs[key], (theirs["index"], key)


@pytest.mark.parametrize("name", list(ORACLE_STREAMS))
def test_completion_is_json_and_fits_the_models(name: str) -> None:
    result = completion(ORACLE_STREAMS[name]())
    assert json.loads(json.dumps(result)) == result
    assert models.ChatCompletion.model_validate(result).model_dump(exclude_unset=True) == result


def test_sdk_would_double_repeated_role_and_tool_id() -> None:
    # Why the rules differ from the SDK: it appends every repeated string.
    sdk = sdk_completion(stream_tool_id_repeated())
    assert at(sdk, "choices", 0, "message", "role") == "assistant" * 3
    assert at(sdk, "choices", 0, "message", "tool_calls", 0, "id") == "call_rep1" * 3


# --- (b) the rules ------------------------------------------------------------------------------------


def text_chunks(*deltas: dict[str, Any], finish: str | None = "stop", **chunk_extra: Any) -> Chunks:
    chunks = [make_chunk([make_choice(d)], **chunk_extra) for d in deltas]
    chunks.append(make_chunk([make_choice(finish_reason=finish)], **chunk_extra))
    return chunks


def tool_chunks(*calls: dict[str, Any]) -> Chunks:
    return [make_chunk([make_choice(tool_calls_delta(c))]) for c in calls]


PARIS = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}

# (case, chunks, path into the completion, expected value)
RULES: list[tuple[str, Chunks, tuple[str | int, ...], Any]] = [
    ("role not doubled", stream_role_repeated(), ("choices", 0, "message", "role"), "assistant"),
    (
        "content beside a repeated role",
        stream_role_repeated(),
        ("choices", 0, "message", "content"),
        "Hello from a compatible server.",
    ),
    (
        "tool id, type and name not doubled",
        stream_tool_id_repeated(),
        ("choices", 0, "message", "tool_calls"),
        [{"id": "call_rep1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}],
    ),
    (
        "several deltas for one tool index in one chunk",
        stream_several_deltas_same_tool_index(),
        ("choices", 0, "message", "tool_calls"),
        [
            {"id": "call_a", "type": "function", "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'}},
            {"id": "call_b", "type": "function", "function": {"name": "neg", "arguments": '{"x": 3}'}},
        ],
    ),
    (
        "tool calls ordered by index, index dropped",
        tool_chunks(
            tool_call_delta(1, '{"b": 2}', id="call_b", name="g"),
            tool_call_delta(0, '{"a": 1}', id="call_a", name="f"),
        ),
        ("choices", 0, "message", "tool_calls"),
        [
            {"id": "call_a", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}},
            {"id": "call_b", "type": "function", "function": {"name": "g", "arguments": '{"b": 2}'}},
        ],
    ),
    (
        "tool call without a type gets function",
        tool_chunks(
            {"index": 0, "id": "call_1", "function": {"name": "get_weather", "arguments": '{"city": '}},
            {"index": 0, "function": {"arguments": '"Paris"}'}},
        ),
        ("choices", 0, "message", "tool_calls", 0),
        PARIS,
    ),
    (
        "function name first non-empty",
        tool_chunks(
            tool_call_delta(0, "", id="call_1", name=""),
            tool_call_delta(0, '{"city": "Paris"}', name="get_weather"),
            tool_call_delta(0, None, name="get_weather"),
        ),
        ("choices", 0, "message", "tool_calls", 0),
        PARIS,
    ),
    (
        "deprecated function_call: name once, arguments appended",
        text_chunks(
            {"role": "assistant", "function_call": {"name": "f", "arguments": '{"x"'}},
            {"function_call": {"name": "f", "arguments": ": 1}"}},
            finish="function_call",
        ),
        ("choices", 0, "message", "function_call"),
        {"name": "f", "arguments": '{"x": 1}'},
    ),
    (
        "audio data and transcript appended, id and expires_at not",
        text_chunks(
            {"audio": {"id": "a1", "transcript": "Hi", "data": "AB"}},
            {"audio": {"id": "a1", "transcript": "!", "data": "CD"}},
            {"audio": {"expires_at": 5}},
        ),
        ("choices", 0, "message", "audio"),
        {"id": "a1", "transcript": "Hi!", "data": "ABCD", "expires_at": 5},
    ),
    (
        "refusal appended",
        text_chunks(refusal_delta("No"), refusal_delta(", sorry.")),
        ("choices", 0, "message", "refusal"),
        "No, sorry.",
    ),
    ("role defaults to assistant", text_chunks(content_delta("hi")), ("choices", 0, "message", "role"), "assistant"),
    (
        "message defaults when nothing was sent",
        text_chunks(),
        ("choices", 0),
        {
            "index": 0,
            "message": {"role": "assistant", "content": None, "refusal": None},
            "finish_reason": "stop",
            "logprobs": None,
        },
    ),
    (
        "finish_reason last non-null",
        [
            make_chunk([make_choice(content_delta("a"), finish_reason="length")]),
            make_chunk([make_choice(content_delta("b"), finish_reason="stop")]),
            make_chunk([make_choice(content_delta("c"))]),
        ],
        ("choices", 0, "finish_reason"),
        "stop",
    ),
    (
        "finish_reason None if never",
        text_chunks(content_delta("a"), finish=None),
        ("choices", 0, "finish_reason"),
        None,
    ),
    (
        "choices ordered by index",
        [
            make_chunk([make_choice(content_delta("one"), index=1)]),
            make_chunk([make_choice(content_delta("zero"), index=0), make_choice(content_delta("!"), index=1)]),
        ],
        ("choices",),
        [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "zero", "refusal": None},
                "finish_reason": None,
                "logprobs": None,
            },
            {
                "index": 1,
                "message": {"role": "assistant", "content": "one!", "refusal": None},
                "finish_reason": None,
                "logprobs": None,
            },
        ],
    ),
    (
        "usage on the chunk with finish_reason",
        stream_usage_on_choice_chunk(),
        ("usage",),
        make_usage(12, 3),
    ),
    (
        "usage with details from the empty-choices chunk",
        stream_with_usage(),
        ("usage",),
        make_usage(2006, 300, cached=1920, reasoning=192),
    ),
    (
        "usage last non-null",
        [
            make_chunk([make_choice(content_delta("a"))], usage=make_usage(1, 1)),
            make_chunk([], usage=make_usage(1, 2)),
            make_chunk([make_choice(finish_reason="stop")], usage=None),
        ],
        ("usage",),
        make_usage(1, 2),
    ),
    (
        "logprobs extended, refusal list too",
        [
            make_chunk([make_choice(refusal_delta("No"), logprobs=make_logprobs(refusal=[token_logprob("No", -0.1)]))]),
            make_chunk([make_choice(logprobs=None)]),
            make_chunk([make_choice(refusal_delta("."), logprobs=make_logprobs(refusal=[token_logprob(".", -0.2)]))]),
        ],
        ("choices", 0, "logprobs"),
        {"content": None, "refusal": [token_logprob("No", -0.1), token_logprob(".", -0.2)]},
    ),
    (
        "logprobs absent until a chunk carries them",
        [make_chunk([make_choice(content_delta("a"))]), make_chunk([make_choice(logprobs=make_logprobs())])],
        ("choices", 0, "logprobs"),
        {"content": None, "refusal": None},
    ),
    (
        "id and created from the first chunk",
        [make_chunk(id="chatcmpl-1", created=10), make_chunk(id="chatcmpl-2", created=20)],
        ("id",),
        "chatcmpl-1",
    ),
    ("empty first id skipped", [make_chunk(id=""), make_chunk(id="chatcmpl-2")], ("id",), "chatcmpl-2"),
    (
        "model last non-null",
        [make_chunk(model="gpt-a"), make_chunk(model="gpt-b"), make_chunk(model=None)],  # type: ignore[arg-type]
        ("model",),
        "gpt-b",
    ),
    (
        "system_fingerprint last non-null",
        [
            make_chunk(system_fingerprint="fp_1"),
            make_chunk(system_fingerprint="fp_2"),
            make_chunk(system_fingerprint=None),
        ],
        ("system_fingerprint",),
        "fp_2",
    ),
    (
        "service_tier last non-null",
        [make_chunk(service_tier="default"), make_chunk(service_tier="flex"), make_chunk(service_tier=None)],
        ("service_tier",),
        "flex",
    ),
    ("object becomes chat.completion", stream_content(), ("object",), "chat.completion"),
    # Keys nobody defines stay where they appeared.
    ("unknown chunk key, last value", stream_unknown_fields(), ("x_chunk",), "two"),
    ("unknown chunk key, last value even null", stream_unknown_fields(), ("x_null",), None),
    ("unknown choice key, last non-null", stream_unknown_fields(), ("choices", 0, "x_choice"), 2),
    ("unknown choice key, late", stream_unknown_fields(), ("choices", 0, "x_choice_end"), [1, 2]),
    ("unknown delta string, first", stream_unknown_fields(), ("choices", 0, "message", "x_delta"), "keep-first"),
    ("unknown delta number, last", stream_unknown_fields(), ("choices", 0, "message", "x_count"), 2),
    (
        "unknown tool call and function keys",
        stream_unknown_fields(),
        ("choices", 0, "message", "tool_calls"),
        [
            {
                "id": "call_x1",
                "type": "function",
                "function": {"name": "search", "arguments": '{"q": 1}', "x_function": {"strict": True}},
                "x_tool": "first",
            }
        ],
    ),
]


@pytest.mark.parametrize(("chunks", "path", "expected"), [r[1:] for r in RULES], ids=[r[0] for r in RULES])
def test_rule(chunks: Chunks, path: tuple[str | int, ...], expected: Any) -> None:
    assert at(completion(chunks), *path) == expected


def test_obfuscation_dropped_at_chunk_and_delta_level() -> None:
    chunks = stream_content()
    chunks[1]["choices"][0]["delta"]["obfuscation"] = "pad"
    result = completion(chunks)
    assert "obfuscation" not in result
    assert "obfuscation" not in at(result, "choices", 0, "message")
    assert "obfuscation" not in json.dumps(completion(stream_unknown_fields()))


def test_no_tool_calls_key_without_tool_calls() -> None:
    assert "tool_calls" not in message(stream_content())
    assert "function_call" not in message(stream_content())


def test_id_change_is_flagged() -> None:
    chunks = stream_content()
    for chunk in chunks[3:]:
        chunk["id"] = "chatcmpl-other"
    chunks[-1]["id"] = ""  # an empty id is no change
    result = reassemble(chunks)
    assert result.id_changed
    assert result.completion is not None and result.completion["id"] == "chatcmpl-AbC123"
    assert len(result.notes) == 1
    assert "chatcmpl-other" in result.notes[0] and "chatcmpl-AbC123" in result.notes[0]
    assert "chunk 4" in result.notes[0] and "3 chunks differ" in result.notes[0]


def test_steady_id_is_not_flagged() -> None:
    result = reassemble(stream_with_usage())
    assert not result.id_changed
    assert result.notes == []
    assert result.chunk_count == len(stream_with_usage())


def test_empty_input() -> None:
    assert reassemble([]) == Reassembly(completion=None, chunk_count=0, usage_seen=False, id_changed=False, notes=[])


@pytest.mark.parametrize(
    ("chunks", "seen"),
    [
        (stream_content(), False),
        (text_chunks(content_delta("a"), usage=None), False),
        (stream_with_usage(), True),
        (stream_usage_on_choice_chunk(), True),
    ],
    ids=["no usage key", "usage always null", "usage chunk", "usage on choice chunk"],
)
def test_usage_seen(chunks: Chunks, seen: bool) -> None:
    result = reassemble(chunks)
    assert result.usage_seen is seen
    assert result.completion is not None
    assert (result.completion["usage"] is not None) is seen


def test_anomalies_are_noted_not_raised() -> None:
    chunks: list[Any] = [
        "not a chunk",
        make_chunk([make_choice(content_delta("a"))]),
        make_chunk(["not a choice", {"delta": content_delta("b")}]),  # type: ignore[list-item]
        make_chunk("nope"),  # type: ignore[arg-type]
        make_chunk([make_choice("nope")]),  # type: ignore[arg-type]
        make_chunk([make_choice(tool_calls_delta({"id": "call_1", "function": {"name": "f", "arguments": "{}"}}))]),
        make_chunk([make_choice(tool_calls_delta({"id": "call_2", "function": {"name": "g", "arguments": "{}"}}))]),
        "again not a chunk",
    ]
    result = reassemble(chunks)
    assert result.chunk_count == 6
    assert at(result.completion, "choices", 0, "message", "content") == "ab"
    assert [c["id"] for c in at(result.completion, "choices", 0, "message", "tool_calls")] == ["call_1", "call_2"]
    assert result.notes == [
        "skipped a chunk that is not a JSON object (str) (2 times)",
        "skipped a choice that is not a JSON object",
        "a choice without an integer index was taken as index 0",
        "a chunk's choices is not a list",
        "skipped a delta that is not a JSON object",
        "a tool call delta without an integer index was placed by its id (2 times)",
    ]


def test_result_mid_stream_is_a_snapshot() -> None:
    chunks = stream_logprobs()
    accumulator = ChunkAccumulator()
    for chunk in chunks[:2]:
        accumulator.add(chunk)
    early = accumulator.result()
    early_copy = json.loads(json.dumps(early.completion))
    for chunk in chunks[2:]:
        accumulator.add(chunk)
    assert early.completion == early_copy
    assert at(early.completion, "choices", 0, "message", "content") == "The"
    assert accumulator.result() == reassemble(chunks)


def test_long_stream() -> None:
    words = [f"w{i} " for i in range(20_000)]
    chunks = [make_chunk([make_choice(role_delta())])]
    chunks += [make_chunk([make_choice(content_delta(w))]) for w in words]
    args = [f'"{i}",' for i in range(5_000)]
    chunks += [
        make_chunk([make_choice(tool_calls_delta(tool_call_delta(0, a, id="c" if i == 0 else None)))])
        for i, a in enumerate(args)
    ]
    result = reassemble(chunks)
    assert result.chunk_count == 25_001
    assert at(result.completion, "choices", 0, "message", "content") == "".join(words)
    assert at(result.completion, "choices", 0, "message", "tool_calls", 0, "function", "arguments") == "".join(args)


# --- (c) golden files ---------------------------------------------------------------------------------


def parse_sse(text: str) -> Chunks:
    """Enough SSE for these files: one `data:` line per event, events split by blank lines."""
    events = [block for block in text.split("\n\n") if block.strip()]
    assert events[-1] == "data: [DONE]"
    chunks = []
    for event in events[:-1]:
        assert event.startswith("data: ")
        chunks.append(json.loads(event.removeprefix("data: ")))
    return chunks


@pytest.mark.parametrize("name", GOLDEN)
def test_golden(name: str) -> None:
    chunks = parse_sse((DATA / f"{name}.sse").read_text(encoding="utf-8"))
    expected = json.loads((DATA / f"{name}.json").read_text(encoding="utf-8"))
    assert completion(chunks) == expected
