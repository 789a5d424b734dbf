"""Table-driven tests of analytics.rows.interaction_rows: one Interaction in, the rows DuckDB receives out."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from analytics.rows import interaction_rows
from proxy.interaction import (
    Body,
    Interaction,
    Metadata,
    Outcome,
    RecordedEvent,
    RecordedRequest,
    RecordedResponse,
    Timings,
)

SECRET = "sk-test-SECRET-rows-0001"


def make_usage(
    prompt: int = 12, completion: int = 5, cached: int | None = None, reasoning: int | None = None
) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cached is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached, "audio_tokens": 0}
    if reasoning is not None:
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return usage


def make_choice(
    index: int = 0, content: str | None = "Hello!", finish: str | None = "stop", **message: Any
) -> dict[str, Any]:
    return {
        "index": index,
        "message": {"role": "assistant", "content": content, "refusal": None, **message},
        "logprobs": None,
        "finish_reason": finish,
    }


def make_completion(
    choices: list[dict[str, Any]] | None = None,
    usage: dict[str, Any] | None = None,
    model: str = "gpt-4o-mini-2024-07-18",
) -> dict[str, Any]:
    completion: dict[str, Any] = {
        "id": "chatcmpl-abc123",
        "object": "chat.completion",
        "created": 1_795_000_000,
        "model": model,
        "choices": choices if choices is not None else [make_choice()],
    }
    if usage is not None:
        completion["usage"] = usage
    return completion


def make_interaction(
    *,
    status: int = 200,
    body: Any = None,
    stream: bool = False,
    completion: dict[str, Any] | None = None,
    outcome: Outcome | None = None,
    request_model: str = "gpt-4o-mini",
) -> Interaction:
    events = None
    if stream:
        events = [
            RecordedEvent(offset_ms=120.0, data=json.dumps({"object": "chat.completion.chunk", "choices": []})),
            RecordedEvent(offset_ms=480.0, data="[DONE]"),
        ]
    return Interaction(
        id="20261122T035800-0123456789ab",
        metadata=Metadata(
            recorded_at="2026-11-22T03:58:00.123456Z",
            upstream="https://api.openai.com",
            proxy_version="0.1.0",
        ),
        request=RecordedRequest(
            method="POST",
            path="/v1/chat/completions",
            headers=[("authorization", f"Bearer {SECRET}"), ("content-type", "application/json")],
            body=Body(
                json_={
                    "model": request_model,
                    "messages": [{"role": "user", "content": "Hi"}],
                    "stream": stream,
                }
            ),
        ),
        response=RecordedResponse(
            status=status,
            headers=[
                ("content-type", "text/event-stream" if stream else "application/json"),
                ("x-request-id", "req_1"),
            ],
            body=Body() if body is None else Body(json_=body),
            stream=stream,
            events=events,
            completion=completion,
        ),
        timings=Timings(ttfb_ms=120.5, total_ms=480.25),
        outcome=outcome or Outcome(),
    )


PLAIN = make_interaction(body=make_completion(usage=make_usage()))
STREAM_WITH_USAGE = make_interaction(
    stream=True,
    completion=make_completion(usage=make_usage(2000, 300, cached=1536, reasoning=256), model="o3-mini"),
)
STREAM_WITHOUT_USAGE = make_interaction(stream=True, completion=make_completion(), outcome=Outcome(usage_missing=True))
TOOL_CALLS = make_interaction(
    body=make_completion(
        choices=[
            make_choice(
                0,
                content=None,
                finish="tool_calls",
                tool_calls=[
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": "{}"},
                    },
                    {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
                ],
            ),
            make_choice(1, content="It is sunny.", finish="stop"),
        ],
        usage=make_usage(),
    )
)
RATE_LIMITED = make_interaction(
    status=429,
    body={
        "error": {
            "message": "Rate limit reached for gpt-4o-mini on requests per min (RPM): Limit 3, Used 3.",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    },
)
UNREACHABLE = make_interaction(
    status=502,
    body={
        "error": {
            "message": "proxy: upstream unreachable",
            "type": "proxy_error",
            "code": "upstream_unreachable",
        }
    },
    outcome=Outcome(complete=False, error="upstream unreachable: Cannot connect to host 127.0.0.1:9"),
)
CUT_SHORT = make_interaction(
    stream=True,
    completion=make_completion(choices=[make_choice(0, content="Hel", finish=None)]),
    outcome=Outcome(complete=False, incomplete_reason="stream ended without [DONE]", usage_missing=True),
)


# (case, interaction, expected fields of the interactions row, expected choices rows as tuples of
#  (index, finish_reason, tool_calls, content_chars, refusal))
CASES: list[tuple[str, Interaction, dict[str, Any], list[tuple[int, str | None, int, int, bool]]]] = [
    (
        "plain completion",
        PLAIN,
        {
            "status": 200,
            "stream": False,
            "model": "gpt-4o-mini-2024-07-18",
            "completion_id": "chatcmpl-abc123",
            "prompt_tokens": 12,
            "completion_tokens": 5,
            "total_tokens": 17,
            "cached_tokens": None,
            "reasoning_tokens": None,
            "finish_reason": "stop",
            "n_choices": 1,
            "incomplete": False,
            "usage_missing": False,
            "error": None,
            "incomplete_reason": None,
        },
        [(0, "stop", 0, 6, False)],
    ),
    (
        "stream with usage, cached and reasoning tokens",
        STREAM_WITH_USAGE,
        {
            "stream": True,
            "model": "o3-mini",
            "prompt_tokens": 2000,
            "completion_tokens": 300,
            "total_tokens": 2300,
            "cached_tokens": 1536,
            "reasoning_tokens": 256,
            "finish_reason": "stop",
            "usage_missing": False,
        },
        [(0, "stop", 0, 6, False)],
    ),
    (
        "stream without usage",
        STREAM_WITHOUT_USAGE,
        {
            "stream": True,
            "prompt_tokens": None,
            "completion_tokens": None,
            "total_tokens": None,
            "usage_missing": True,
            "incomplete": False,
            "n_choices": 1,
        },
        [(0, "stop", 0, 6, False)],
    ),
    (
        "n=2 with tool calls in one choice",
        TOOL_CALLS,
        {"n_choices": 2, "finish_reason": "tool_calls"},
        [(0, "tool_calls", 2, 0, False), (1, "stop", 0, 12, False)],
    ),
    (
        "upstream 429 error body",
        RATE_LIMITED,
        {
            "status": 429,
            "model": "gpt-4o-mini",
            "completion_id": None,
            "prompt_tokens": None,
            "n_choices": None,
            "finish_reason": None,
            "incomplete": False,
            "error": "Rate limit reached for gpt-4o-mini on requests per min (RPM): Limit 3, Used 3.",
        },
        [],
    ),
    (
        "upstream unreachable",
        UNREACHABLE,
        {
            "status": 502,
            "model": "gpt-4o-mini",
            "incomplete": True,
            "n_choices": None,
            "error": "upstream unreachable: Cannot connect to host 127.0.0.1:9",
        },
        [],
    ),
    (
        "incomplete stream",
        CUT_SHORT,
        {
            "stream": True,
            "incomplete": True,
            "incomplete_reason": "stream ended without [DONE]",
            "finish_reason": None,
            "usage_missing": True,
            "prompt_tokens": None,
            "error": None,
        },
        [(0, None, 0, 3, False)],
    ),
]


@pytest.mark.parametrize(("interaction", "expected", "choices"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_interaction_rows(
    interaction: Interaction, expected: dict[str, Any], choices: list[tuple[int, str | None, int, int, bool]]
) -> None:
    row, choice_rows = interaction_rows(interaction, "20261122/035800123-chat-completions-gpt-4o-mini-456789ab.json")
    assert {key: row[key] for key in expected} == expected
    assert [
        (c["index"], c["finish_reason"], c["tool_calls"], c["content_chars"], c["refusal"]) for c in choice_rows
    ] == choices
    assert all(c["interaction_id"] == interaction.id for c in choice_rows)


@pytest.mark.parametrize(("interaction",), [(c[1],) for c in CASES], ids=[c[0] for c in CASES])
def test_common_fields_come_from_the_interaction(interaction: Interaction) -> None:
    row, _ = interaction_rows(interaction, "a/b.json")
    assert row["id"] == "20261122T035800-0123456789ab"
    assert row["recorded_at"] == datetime(2026, 11, 22, 3, 58, 0, 123456)  # naive UTC
    assert (row["method"], row["path"], row["upstream"]) == (
        "POST",
        "/v1/chat/completions",
        "https://api.openai.com",
    )
    assert (row["ttfb_ms"], row["latency_ms"]) == (120.5, 480.25)
    assert row["cassette"] == "a/b.json"
    assert json.loads(row["request"])["messages"] == [{"role": "user", "content": "Hi"}]


@pytest.mark.parametrize(("interaction",), [(c[1],) for c in CASES], ids=[c[0] for c in CASES])
def test_rows_carry_no_headers(interaction: Interaction) -> None:
    row, choices = interaction_rows(interaction, None)
    text = json.dumps([row, choices], default=str)
    assert SECRET not in text
    assert "req_1" not in text


def test_response_column_is_the_body_or_the_reassembled_completion() -> None:
    plain, _ = interaction_rows(PLAIN, None)
    streamed, _ = interaction_rows(STREAM_WITH_USAGE, None)
    failed, _ = interaction_rows(RATE_LIMITED, None)
    assert json.loads(plain["response"]) == PLAIN.response.body.json_
    assert json.loads(streamed["response"]) == STREAM_WITH_USAGE.response.completion
    assert json.loads(failed["response"])["error"]["code"] == "rate_limit_exceeded"


def test_cassette_is_none_when_unknown() -> None:
    row, _ = interaction_rows(PLAIN, None)
    assert row["cassette"] is None


def test_a_refusal_is_flagged() -> None:
    refused = make_interaction(
        body=make_completion(choices=[make_choice(content=None, refusal="I can't help with that.")])
    )
    _, choices = interaction_rows(refused, None)
    assert choices[0]["refusal"] is True


def test_a_text_body_is_kept_as_a_json_string() -> None:
    interaction = make_interaction(status=500)
    interaction.response.body = Body(text="<html>Bad gateway</html>")
    row, _ = interaction_rows(interaction, None)
    assert json.loads(row["response"]) == "<html>Bad gateway</html>"
    assert row["error"] is None  # no OpenAI-style message to take


def test_rows_module_imports_neither_duckdb_nor_pyarrow() -> None:
    code = "import sys, analytics.rows; print(sorted({'duckdb', 'pyarrow'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_the_recording_workers_database_sink_does_not_import_pyarrow(tmp_path: Path) -> None:
    # pyarrow is about 30 MB of a process's memory: the worker writes its rows without it.
    code = (
        "import sys; from analytics.sinks import database_sink; "
        f"database_sink({str(tmp_path / 'traffic.duckdb')!r}, 0.5, {{}}).close(); "
        "print(sorted({'duckdb', 'pyarrow'} & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "['duckdb']"
