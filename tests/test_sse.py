"""Tests for the incremental SSE decoder and canonical encoder in proxy.sse."""

from __future__ import annotations

import json

import pytest

from proxy.sse import SSEDecoder, SSEEvent, encode_event, is_canonical


def decode(chunks: list[bytes]) -> tuple[list[SSEEvent], bytes]:
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    events.extend(decoder.flush())
    return events, decoder.tail


def fields(event: SSEEvent) -> tuple[str, str | None, str | None, int | None]:
    return (event.data, event.event, event.id, event.retry)


F = tuple[str, str | None, str | None, int | None]


def d(data: str, event: str | None = None, id: str | None = None, retry: int | None = None) -> F:
    return (data, event, id, retry)


RULES: list[tuple[str, bytes, list[F]]] = [
    ("lf", b"data: a\n\ndata: b\n\n", [d("a"), d("b")]),
    ("crlf", b"data: a\r\n\r\ndata: b\r\n\r\n", [d("a"), d("b")]),
    ("cr", b"data: a\r\rdata: b\r\r", [d("a"), d("b")]),
    ("mixed line ends", b"data: a\r\ndata: b\rdata: c\n\r\n", [d("a\nb\nc")]),
    ("comment", b": keep-alive\ndata: a\n: inside\n\n", [d("a")]),
    ("comment only line colon", b":\ndata: a\n\n", [d("a")]),
    ("no space after colon", b"data:a\n\n", [d("a")]),
    ("two spaces, one removed", b"data:  a\n\n", [d(" a")]),
    ("tab is not stripped", b"data:\ta\n\n", [d("\ta")]),
    ("only first colon splits", b"data: a: b\n\n", [d("a: b")]),
    ("multi-line data", b"data: a\ndata: b\ndata: c\n\n", [d("a\nb\nc")]),
    ("event field", b"event: delta\ndata: a\n\n", [d("a", event="delta")]),
    ("last event field wins", b"event: x\nevent: y\ndata: a\n\n", [d("a", event="y")]),
    ("event reset after dispatch", b"event: x\ndata: a\n\ndata: b\n\n", [d("a", event="x"), d("b")]),
    ("id field", b"id: 42\ndata: a\n\n", [d("a", id="42")]),
    ("empty id", b"id\ndata: a\n\n", [d("a", id="")]),
    ("id with NUL ignored", b"id: 4\x002\ndata: a\n\n", [d("a")]),
    ("id only in its block", b"id: 1\ndata: a\n\ndata: b\n\n", [d("a", id="1"), d("b")]),
    ("retry valid", b"retry: 3000\ndata: a\n\n", [d("a", retry=3000)]),
    ("retry not digits", b"retry: 3s\ndata: a\n\n", [d("a")]),
    ("retry negative", b"retry: -1\ndata: a\n\n", [d("a")]),
    ("retry empty", b"retry:\ndata: a\n\n", [d("a")]),
    ("retry non-ascii digits", "retry: ١٢\ndata: a\n\n".encode(), [d("a")]),
    ("field without colon", b"data\n\n", [d("")]),
    ("unknown field ignored", b"foo: bar\ndata: a\n\n", [d("a")]),
    ("field names are case sensitive", b"Data: a\ndata: b\n\n", [d("b")]),
    ("empty data line", b"data:\n\n", [d("")]),
    ("empty data lines make newlines", b"data\ndata\n\n", [d("\n")]),
    ("empty line inside data", b"data: a\ndata:\ndata: b\n\n", [d("a\n\nb")]),
    ("block without data not dispatched", b"event: x\nid: 1\n\ndata: a\n\n", [d("a")]),
    ("blank lines alone", b"\n\n\r\n\r", []),
    ("bom ignored", b"\xef\xbb\xbfdata: a\n\n", [d("a")]),
    ("bom only at stream start", b"data: a\n\n\xef\xbb\xbfdata: b\n\n", [d("a")]),
    ("invalid utf-8 replaced", b"data: \xff\n\n", [d("\ufffd")]),
    ("incomplete event at eof dropped", b"data: a\n\ndata: b\n", [d("a")]),
    ("final cr completes event at eof", b"data: a\n\r", [d("a")]),
]


@pytest.mark.parametrize(("stream", "expected"), [r[1:] for r in RULES], ids=[r[0] for r in RULES])
def test_rules(stream: bytes, expected: list[F]) -> None:
    events, tail = decode([stream])
    assert [fields(e) for e in events] == expected
    assert b"".join(e.raw for e in events) + tail == stream
    # Fed one byte at a time, the result must not change.
    assert decode([stream[i : i + 1] for i in range(len(stream))]) == (events, tail)


@pytest.mark.parametrize(
    ("stream", "raws", "tail"),
    [
        (b"data: a\n\n", [b"data: a\n\n"], b""),
        (b": c\n\nevent: x\n\ndata: a\r\n\r\nda", [b": c\n\nevent: x\n\ndata: a\r\n\r\n"], b"da"),
        (b"\xef\xbb\xbfdata: a\n\ndata: b\n\n", [b"\xef\xbb\xbfdata: a\n\n", b"data: b\n\n"], b""),
        (b"data: a\n\n: trailing comment\n", [b"data: a\n\n"], b": trailing comment\n"),
    ],
    ids=["plain", "comments and empty blocks go to next event", "bom kept in raw", "tail after last event"],
)
def test_raw_and_tail(stream: bytes, raws: list[bytes], tail: bytes) -> None:
    events, got_tail = decode([stream])
    assert [e.raw for e in events] == raws
    assert got_tail == tail


def openai_stream(eol: bytes) -> bytes:
    pieces = ["", "héllo", " wörld", " 🌍", "!"]
    out = bytearray()
    for i, piece in enumerate(pieces):
        chunk = {
            "id": "chatcmpl-abc",
            "object": "chat.completion.chunk",
            "model": "gpt-4o-mini",
            "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
        }
        if i == 0:
            chunk["choices"] = [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]
        out += b"data: " + json.dumps(chunk, ensure_ascii=False).encode() + eol + eol
    out += b": keep-alive" + eol + eol
    out += b"data: [DONE]" + eol + eol
    return bytes(out)


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"], ids=["lf", "crlf", "cr"])
def test_openai_stream_any_split(eol: bytes) -> None:
    stream = openai_stream(eol)
    whole, whole_tail = decode([stream])
    assert len(whole) == 6
    assert whole_tail == b""
    assert whole[-1].data == "[DONE]"
    text = "".join(json.loads(e.data)["choices"][0]["delta"].get("content", "") for e in whole[:-1])
    assert text == "héllo wörld 🌍!"
    assert all(is_canonical(e) for e in whole[:-1]) == (eol == b"\n")

    for cut in range(len(stream) + 1):
        events, tail = decode([stream[:cut], stream[cut:]])
        assert events == whole, cut
        assert b"".join(e.raw for e in events) + tail == stream, cut

    assert decode([stream[i : i + 1] for i in range(len(stream))]) == (whole, whole_tail)


@pytest.mark.parametrize("eol", [b"\n", b"\r\n"], ids=["lf", "crlf"])
def test_event_dispatched_by_the_byte_that_completes_it(eol: bytes) -> None:
    stream = openai_stream(eol)
    decoder = SSEDecoder()
    consumed = 0
    for i in range(len(stream)):
        for event in decoder.feed(stream[i : i + 1]):
            consumed += len(event.raw)
            assert consumed == i + 1
    assert consumed == len(stream)


def test_lone_cr_at_chunk_end_waits_for_next_byte() -> None:
    # The CR might be half of a CRLF; only the next byte (or flush) can tell.
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r\r") == []
    assert [e.raw for e in decoder.feed(b"d")] == [b"data: a\r\r"]
    assert decoder.tail == b"d"


def test_openai_stream_cut_at_every_offset_keeps_every_byte() -> None:
    stream = openai_stream(b"\n")
    for cut in range(len(stream) + 1):
        events, tail = decode([stream[:cut]])
        assert b"".join(e.raw for e in events) + tail == stream[:cut], cut


def test_cr_then_lf_in_next_chunk_is_one_line_end() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\ndata: b\r") == []
    assert decoder.feed(b"\n\r") == []
    events = decoder.feed(b"\n")
    assert [fields(e) for e in events] == [d("a\nb")]
    assert events[0].raw == b"data: a\r\ndata: b\r\n\r\n"
    assert decoder.flush() == []
    assert decoder.tail == b""


def test_cr_then_other_byte_in_next_chunk_ends_line() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert [fields(e) for e in decoder.feed(b"\rdata: b\r")] == [d("a")]
    assert [fields(e) for e in decoder.feed(b"\r")] == []
    assert [fields(e) for e in decoder.flush()] == [d("b")]


def test_tail_holds_event_cut_midway() -> None:
    decoder = SSEDecoder()
    events = decoder.feed(b'data: {"a": 1}\n\ndata: {"b": "h\xc3')
    assert [fields(e) for e in events] == [d('{"a": 1}')]
    assert decoder.flush() == []
    assert decoder.tail == b'data: {"b": "h\xc3'


def test_utf8_char_split_across_chunks() -> None:
    encoded = "data: 🌍\n\n".encode()
    split = encoded.index(b"\xf0") + 2
    events, _ = decode([encoded[:split], encoded[split:]])
    assert [fields(e) for e in events] == [d("🌍")]


ROUND_TRIP = [
    SSEEvent(data="x"),
    SSEEvent(data="[DONE]"),
    SSEEvent(data=""),
    SSEEvent(data="\n"),
    SSEEvent(data=" leading space\nsecond line"),
    SSEEvent(data="héllo wörld 🌍", event="delta", id="7", retry=1500),
    SSEEvent(data="a", event="", id=""),
]


@pytest.mark.parametrize("event", ROUND_TRIP, ids=[repr(e.data) for e in ROUND_TRIP])
def test_encode_round_trip(event: SSEEvent) -> None:
    encoded = encode_event(event)
    events, tail = decode([encoded])
    assert [fields(e) for e in events] == [fields(event)]
    assert tail == b""
    assert events[0].raw == encoded
    assert is_canonical(events[0])


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (SSEEvent(data="[DONE]"), b"data: [DONE]\n\n"),
        (SSEEvent(data="a\nb"), b"data: a\ndata: b\n\n"),
        (SSEEvent(data="a", event="e", id="1", retry=5), b"event: e\nid: 1\nretry: 5\ndata: a\n\n"),
    ],
    ids=["done", "multi-line", "all fields"],
)
def test_encode_event(event: SSEEvent, expected: bytes) -> None:
    assert encode_event(event) == expected


@pytest.mark.parametrize(
    ("stream", "canonical"),
    [
        (b"data: x\n\n", True),
        (b"data:x\r\n\r\n", False),
        (b"data:x\n\n", False),
        (b": ping\ndata: x\n\n", False),
        (b"\xef\xbb\xbfdata: x\n\n", False),
        (b"id: 1\ndata: x\n\n", True),
        (b"data: x\nid: 1\n\n", False),
    ],
)
def test_is_canonical(stream: bytes, canonical: bool) -> None:
    (event,), _ = decode([stream])
    assert is_canonical(event) is canonical


@pytest.mark.parametrize(
    "event",
    [SSEEvent(data="a\rb"), SSEEvent(data="a", event="x\ny"), SSEEvent(data="a", id="1\x002")],
    ids=["cr in data", "newline in event", "nul in id"],
)
def test_encode_rejects_fields_that_cannot_round_trip(event: SSEEvent) -> None:
    with pytest.raises(ValueError):
        encode_event(event)
    assert not is_canonical(event)


@pytest.mark.parametrize(
    "chunks",
    [
        [b"data: a\n\n", b"data: b\n\n"],
        [b"data: \n\n", b"data: [DONE]\n\n"],
        [b": keep-alive\n\n", b"data: a\n\n", b"data: b\n\n"],  # the comment's bytes join the next event's raw
        [b"id: 7\n", b"data: a\n\n", b"data: b\n\n"],  # a block begun in an earlier chunk
        [b"data: a\n", b"data: b\n\n", b"data: c\n\n"],
        [b"data: \xff\n\n", b"data: a\n\n"],  # not UTF-8: replaced, and raw kept
        [b"\xef\xbb\xbfdata: a\n\n", b"data: b\n\n"],
        [b"data: a\n\ndata: b\n\n", b"data: c\n\n"],
        [b"data: a\r\n\r\n", b"data: b\n\n"],
    ],
)
def test_one_chunk_per_event_decodes_as_byte_by_byte(chunks: list[bytes]) -> None:
    # OpenAI sends one event per chunk, and the decoder takes a shortcut for that shape: it must give the
    # same events, raws and tail as the general path (one byte at a time never takes the shortcut).
    stream = b"".join(chunks)
    assert decode(chunks) == decode([stream[i : i + 1] for i in range(len(stream))])
