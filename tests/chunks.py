"""Factories for Chat Completions payloads as plain dicts, and named sample streams.

The `stream_*` functions return fresh lists of chunk dicts. Those in `ORACLE_STREAMS` are shaped as
OpenAI sends them (role and empty content on the first delta, tool call id and name once, usage on a
final chunk with no choices), so openai-python's accumulator can serve as the oracle for them. The
others mimic OpenAI-compatible servers or add keys no API defines.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

ID = "chatcmpl-AbC123"
MODEL = "gpt-4o-mini-2024-07-18"
CREATED = 1_732_000_000
FINGERPRINT = "fp_0ba0d124f1"

_OMIT: Any = object()  # a key left out, as opposed to sent as null


def _put(out: dict[str, Any], key: str, value: Any) -> None:
    if value is not _OMIT:
        out[key] = value


# --- pieces of a chunk ----------------------------------------------------------------------------


def make_chunk(
    choices: list[dict[str, Any]] | None = None,
    *,
    id: str = ID,
    model: str = MODEL,
    created: int = CREATED,
    usage: Any = _OMIT,
    service_tier: Any = "default",
    system_fingerprint: Any = FINGERPRINT,
    obfuscation: Any = _OMIT,
    **extra: Any,
) -> dict[str, Any]:
    """One `chat.completion.chunk`; `usage=None` sends `"usage": null`, leaving it out omits the key."""
    chunk: dict[str, Any] = {"id": id, "object": "chat.completion.chunk", "created": created, "model": model}
    _put(chunk, "service_tier", service_tier)
    _put(chunk, "system_fingerprint", system_fingerprint)
    chunk["choices"] = [] if choices is None else choices
    _put(chunk, "usage", usage)
    _put(chunk, "obfuscation", obfuscation)
    chunk.update(extra)
    return chunk


def make_choice(
    delta: dict[str, Any] | None = None,
    *,
    index: int = 0,
    finish_reason: str | None = None,
    logprobs: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One entry of a chunk's `choices`, with `logprobs` and `finish_reason` sent as null when unset."""
    choice = {"index": index, "delta": {} if delta is None else delta, "logprobs": logprobs}
    choice["finish_reason"] = finish_reason
    choice.update(extra)
    return choice


def role_delta(role: str = "assistant", *, content: Any = "", **extra: Any) -> dict[str, Any]:
    """OpenAI's first delta: the role, an empty content (null when tools or a refusal follow), refusal null."""
    return {"role": role, "content": content, "refusal": None, **extra}


def content_delta(text: str, **extra: Any) -> dict[str, Any]:
    return {"content": text, **extra}


def refusal_delta(text: str, **extra: Any) -> dict[str, Any]:
    return {"refusal": text, **extra}


def tool_call_delta(
    index: int,
    arguments: str | None = None,
    *,
    id: str | None = None,
    name: str | None = None,
    type: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One entry of `delta.tool_calls`; `id` or `name` given makes it a first fragment (type "function")."""
    call: dict[str, Any] = {"index": index}
    if id is not None:
        call["id"] = id
    if type is not None or id is not None or name is not None:
        call["type"] = type or "function"
    function: dict[str, Any] = {}
    if name is not None:
        function["name"] = name
    if arguments is not None:
        function["arguments"] = arguments
    if function:
        call["function"] = function
    call.update(extra)
    return call


def tool_calls_delta(*calls: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"tool_calls": list(calls), **extra}


def token_logprob(token: str, logprob: float, top: Iterable[tuple[str, float]] = ()) -> dict[str, Any]:
    """A `ChatCompletionTokenLogprob`; `top` as (token, logprob) pairs."""

    def entry(tok: str, lp: float) -> dict[str, Any]:
        return {"token": tok, "logprob": lp, "bytes": list(tok.encode())}

    return {**entry(token, logprob), "top_logprobs": [entry(t, lp) for t, lp in top]}


def make_logprobs(
    content: list[dict[str, Any]] | None = None, refusal: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {"content": content, "refusal": refusal}


def make_usage(
    prompt: int = 19,
    completion: int = 10,
    *,
    cached: int | None = None,
    reasoning: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A `CompletionUsage`; the details objects are sent when `cached` or `reasoning` is given, as OpenAI does."""
    usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion}
    usage["total_tokens"] = prompt + completion
    if cached is not None or reasoning is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached or 0, "audio_tokens": 0}
        usage["completion_tokens_details"] = {
            "reasoning_tokens": reasoning or 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        }
    usage.update(extra)
    return usage


# --- a whole (non-streamed) completion --------------------------------------------------------------


def make_message(content: str | None = None, *, role: str = "assistant", **extra: Any) -> dict[str, Any]:
    return {"role": role, "content": content, "refusal": None, **extra}


def make_tool_call(id: str, name: str, arguments: str, **extra: Any) -> dict[str, Any]:
    return {"id": id, "type": "function", "function": {"name": name, "arguments": arguments}, **extra}


def make_completion_choice(
    message: dict[str, Any] | None = None,
    *,
    index: int = 0,
    finish_reason: str | None = "stop",
    logprobs: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "index": index,
        "message": make_message("Hello!") if message is None else message,
        "logprobs": logprobs,
        "finish_reason": finish_reason,
        **extra,
    }


def make_completion(
    choices: list[dict[str, Any]] | None = None,
    *,
    id: str = ID,
    model: str = MODEL,
    created: int = CREATED,
    usage: Any = _OMIT,
    service_tier: Any = "default",
    system_fingerprint: Any = FINGERPRINT,
    **extra: Any,
) -> dict[str, Any]:
    """One `chat.completion`; `usage` defaults to `make_usage()`, `usage=None` sends null."""
    completion: dict[str, Any] = {"id": id, "object": "chat.completion", "created": created, "model": model}
    completion["choices"] = [make_completion_choice()] if choices is None else choices
    completion["usage"] = make_usage() if usage is _OMIT else usage
    _put(completion, "service_tier", service_tier)
    _put(completion, "system_fingerprint", system_fingerprint)
    completion.update(extra)
    return completion


def to_sse(chunks: Iterable[Any], *, done: bool = True) -> str:
    """The stream as OpenAI frames it: `data: {json}` and a blank line per chunk, then `data: [DONE]`."""
    events = [f"data: {json.dumps(chunk, separators=(',', ':'))}\n\n" for chunk in chunks]
    if done:
        events.append("data: [DONE]\n\n")
    return "".join(events)


# --- streams shaped as OpenAI sends them ------------------------------------------------------------


def _text_stream(texts: list[str], finish: str = "stop", **chunk_extra: Any) -> list[dict[str, Any]]:
    chunks = [make_chunk([make_choice(role_delta())], **chunk_extra)]
    chunks += [make_chunk([make_choice(content_delta(t))], **chunk_extra) for t in texts]
    chunks.append(make_chunk([make_choice(finish_reason=finish)], **chunk_extra))
    return chunks


def stream_content() -> list[dict[str, Any]]:
    chunks = _text_stream(["Hello", "!", " How can", " I help", " you today?"])
    for n, chunk in enumerate(chunks):
        chunk["obfuscation"] = "xY3"[: n % 3 + 1]
    return chunks


def stream_parallel_tool_calls() -> list[dict[str, Any]]:
    def tools(*calls: dict[str, Any]) -> dict[str, Any]:
        return make_chunk([make_choice(tool_calls_delta(*calls))])

    return [
        make_chunk([make_choice(role_delta(content=None))]),
        tools(tool_call_delta(0, "", id="call_paris01", name="get_weather")),
        tools(tool_call_delta(0, '{"city"')),
        tools(tool_call_delta(0, ': "Paris"}')),
        tools(tool_call_delta(1, "", id="call_tokyo02", name="get_weather")),
        tools(tool_call_delta(1, '{"city": ')),
        tools(tool_call_delta(1, '"Tokyo"}')),
        tools(tool_call_delta(2, "", id="call_time03", name="get_time")),
        tools(tool_call_delta(2, '{"tz": "Asia/Tokyo"}')),
        make_chunk([make_choice(finish_reason="tool_calls")]),
    ]


def stream_n2_interleaved() -> list[dict[str, Any]]:
    def text(index: int, t: str) -> dict[str, Any]:
        return make_chunk([make_choice(content_delta(t), index=index)])

    return [
        make_chunk([make_choice(role_delta(), index=0)]),
        make_chunk([make_choice(role_delta(), index=1)]),
        text(0, "Red"),
        text(1, "Blue"),
        text(1, " sky"),
        text(0, " rose"),
        make_chunk([make_choice(index=1, finish_reason="stop")]),
        text(0, " petal"),
        make_chunk([make_choice(index=0, finish_reason="stop")]),
    ]


def stream_logprobs() -> list[dict[str, Any]]:
    tokens = [("The", -0.01, [("A", -4.7)]), (" answer", -0.2, [(" result", -1.9)]), (".", -0.003, [])]
    chunks = [make_chunk([make_choice(role_delta(), logprobs=make_logprobs(content=[]))])]
    for token, lp, top in tokens:
        lps = make_logprobs(content=[token_logprob(token, lp, top)])
        chunks.append(make_chunk([make_choice(content_delta(token), logprobs=lps)]))
    chunks.append(make_chunk([make_choice(finish_reason="stop")]))
    return chunks


def stream_refusal() -> list[dict[str, Any]]:
    parts = ["I'm sorry,", " I can't", " help with that."]
    chunks = [make_chunk([make_choice({"role": "assistant", "content": None, "refusal": ""})])]
    chunks += [make_chunk([make_choice(refusal_delta(p))]) for p in parts]
    chunks.append(make_chunk([make_choice(finish_reason="stop")]))
    return chunks


def stream_with_usage() -> list[dict[str, Any]]:
    """`stream_options.include_usage`: usage null on every chunk, then one with no choices and the usage."""
    chunks = _text_stream(["Cached", " prompt", " reply."], usage=None)
    chunks.append(make_chunk([], usage=make_usage(2006, 300, cached=1920, reasoning=192)))
    return chunks


def stream_function_call() -> list[dict[str, Any]]:
    """The deprecated `functions` API: `delta.function_call` instead of tool calls."""
    first = {"role": "assistant", "content": None, "function_call": {"name": "lookup", "arguments": ""}}
    parts = ['{"q": ', '"weather', ' in Oslo"}']
    chunks = [make_chunk([make_choice(first)])]
    chunks += [make_chunk([make_choice({"function_call": {"arguments": p}})]) for p in parts]
    chunks.append(make_chunk([make_choice(finish_reason="function_call")]))
    return chunks


def stream_audio() -> list[dict[str, Any]]:
    """Audio output: the id with the first transcript part, data and transcript in pieces, expiry last."""

    def audio(**fields: Any) -> dict[str, Any]:
        return make_chunk([make_choice({"audio": fields})])

    return [
        make_chunk([make_choice({"role": "assistant", "content": None, "refusal": None})]),
        audio(id="audio_6f2e", transcript="Hi"),
        audio(data="UklGRiQ"),
        audio(transcript=" there"),
        audio(data="AAAAV0FW"),
        audio(expires_at=CREATED + 3600),
        make_chunk([make_choice(finish_reason="stop")]),
    ]


# --- other shapes ------------------------------------------------------------------------------------


def stream_unknown_fields() -> list[dict[str, Any]]:
    """Keys no API defines, at every level, and a delta-level obfuscation to drop."""
    first_call = tool_call_delta(0, "", id="call_x1", name="search", x_tool="first")
    first_call["function"]["x_function"] = {"strict": True}
    return [
        make_chunk([make_choice(role_delta(x_delta="keep-first"), x_choice=1)], x_chunk="one", x_null=1),
        make_chunk(
            [make_choice(content_delta("Hi", x_delta="ignored", x_count=1, obfuscation="pad"), x_choice=2)],
            x_chunk="two",
        ),
        make_chunk([make_choice(tool_calls_delta(first_call), x_choice=None)], x_null=None),
        make_chunk([make_choice(tool_calls_delta(tool_call_delta(0, '{"q": 1}', x_tool="second")))]),
        make_chunk([make_choice(content_delta("!", x_count=2), finish_reason="tool_calls", x_choice_end=[1, 2])]),
    ]


def stream_role_repeated() -> list[dict[str, Any]]:
    """Some compatible servers send the role on every delta."""
    texts = ["", "Hello", " from", " a compatible server."]
    chunks = [make_chunk([make_choice({"role": "assistant", "content": t})]) for t in texts]
    chunks.append(make_chunk([make_choice({"role": "assistant"}, finish_reason="stop")]))
    return chunks


def stream_tool_id_repeated() -> list[dict[str, Any]]:
    """Some compatible servers repeat the tool call id, type and name on every fragment."""

    def part(arguments: str) -> dict[str, Any]:
        call = tool_call_delta(0, arguments, id="call_rep1", name="get_weather")
        return make_chunk([make_choice(tool_calls_delta(call, role="assistant"))])

    return [part('{"city":'), part(' "Oslo"'), part("}"), make_chunk([make_choice(finish_reason="tool_calls")])]


def stream_several_deltas_same_tool_index() -> list[dict[str, Any]]:
    """One chunk carrying several fragments of the same tool call (and of another one)."""
    return [
        make_chunk([make_choice(role_delta(content=None))]),
        make_chunk(
            [
                make_choice(
                    tool_calls_delta(
                        tool_call_delta(0, "", id="call_a", name="add"),
                        tool_call_delta(0, '{"a": 1,'),
                        tool_call_delta(0, ' "b": 2}'),
                        tool_call_delta(1, '{"x"', id="call_b", name="neg"),
                    )
                )
            ]
        ),
        make_chunk([make_choice(tool_calls_delta(tool_call_delta(1, ": 3}"), tool_call_delta(0, "")))]),
        make_chunk([make_choice(finish_reason="tool_calls")]),
    ]


def stream_usage_on_choice_chunk() -> list[dict[str, Any]]:
    """Usage on the chunk with the finish_reason, no empty-choices chunk after it."""
    chunks = _text_stream(["Short", " answer."])
    chunks[-1]["usage"] = make_usage(12, 3)
    return chunks


ORACLE_STREAMS: dict[str, Callable[[], list[dict[str, Any]]]] = {
    "content": stream_content,
    "parallel_tool_calls": stream_parallel_tool_calls,
    "n2_interleaved": stream_n2_interleaved,
    "logprobs": stream_logprobs,
    "refusal": stream_refusal,
    "with_usage": stream_with_usage,
    "function_call": stream_function_call,
    "audio": stream_audio,
}
