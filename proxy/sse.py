"""Server-sent events framing: an incremental decoder and a canonical encoder, pure and I/O free.

Decoding follows the HTML Living Standard's "event stream interpretation". Each event also carries
the exact bytes it was decoded from, so a recorder can store only the parsed fields when the framing
is canonical and the raw bytes when it is not, and replay either way byte for byte.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["SSEDecoder", "SSEEvent", "encode_event", "is_canonical"]

_EOL = re.compile(rb"\r\n|\r|\n")
_CR = 0x0D


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event; `raw` is the exact bytes it was decoded from (see `SSEDecoder`)."""

    data: str
    event: str | None = None
    id: str | None = None
    retry: int | None = None
    raw: bytes = b""


class SSEDecoder:
    """Incremental decoder: feed chunks split anywhere, get events as their dispatching blank line ends.

    The `raw` of an event spans everything since the previous dispatched event: comments, blocks with
    no data, and the blank line that dispatched it. So the `raw` of every event, followed by `tail`,
    is exactly the input.
    """

    def __init__(self) -> None:
        # Bytes since the last dispatched event; deleting from the front of a bytearray is cheap.
        self._buf = bytearray()
        self._line_start = 0
        # Where to resume looking for a line end, so a long line fed in small chunks is scanned once.
        self._scan = 0
        self._first_line = True
        self._data: list[str] = []
        self._event: str | None = None
        self._id: str | None = None
        self._retry: int | None = None
        self._last_event_id = ""

    @property
    def tail(self) -> bytes:
        """Bytes received but not part of any dispatched event, e.g. a stream cut mid-event."""
        return bytes(self._buf)

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if not self._buf and (event := _one_plain_event(chunk)) is not None:
            # Nothing held back and the chunk is exactly one `data: ...` event, as OpenAI sends them: the
            # general line scan below would give the same event, at three times the cost.
            self._first_line = False
            return [event]
        self._buf += chunk
        return self._drain(final=False)

    def flush(self) -> list[SSEEvent]:
        """End of stream. Only a line end still held back (a final CR) can complete an event here."""
        return self._drain(final=True)

    def _drain(self, final: bool) -> list[SSEEvent]:
        buf = self._buf
        events: list[SSEEvent] = []
        while (m := _EOL.search(buf, self._scan)) is not None:
            start, end = m.span()
            # A CR ending the buffer may be the first half of a CRLF; wait for the next byte so the
            # pair is one line end and the LF belongs to the same event's raw.
            if not final and end == len(buf) and end - start == 1 and buf[start] == _CR:
                self._scan = start
                return events
            line = buf[self._line_start : start].decode("utf-8", "replace")
            self._line_start = self._scan = end
            if self._first_line:
                self._first_line = False
                line = line.removeprefix("\ufeff")
            event = self._process_line(line, buf, end)
            if event is not None:
                events.append(event)
        self._scan = len(buf)
        return events

    def _process_line(self, line: str, buf: bytearray, end: int) -> SSEEvent | None:
        if not line:
            return self._dispatch(buf, end)
        if line[0] == ":":
            return None
        name, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._id = self._last_event_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self, buf: bytearray, end: int) -> SSEEvent | None:
        data, event, id_, retry = self._data, self._event, self._id, self._retry
        self._data, self._event, self._id, self._retry = [], None, None, None
        if not data:
            # Nothing to dispatch: these bytes become part of the next event's raw.
            return None
        raw = bytes(buf[:end])
        del buf[:end]
        self._line_start = self._scan = 0
        return SSEEvent(data="\n".join(data), event=event, id=id_, retry=retry, raw=raw)


def _one_plain_event(chunk: bytes) -> SSEEvent | None:
    """The event when `chunk` is exactly `data: <one line of UTF-8 text>\\n\\n`; None for anything else."""
    if not chunk.startswith(b"data: ") or not chunk.endswith(b"\n\n") or chunk.count(b"\n") != 2 or b"\r" in chunk:
        return None
    try:
        data = chunk[6:-2].decode("utf-8")
    except UnicodeDecodeError:
        return None
    return SSEEvent(data=data, raw=chunk)


def _check_field(name: str, value: str) -> None:
    if "\r" in value or "\n" in value:
        raise ValueError(f"SSE {name} cannot contain a line break: {value!r}")


def encode_event(event: SSEEvent) -> bytes:
    """Canonical framing of an event's fields, ignoring `raw`.

    Raises ValueError for a field that would not decode back to itself (a line break, a NUL in `id`).
    """
    parts: list[str] = []
    if event.event is not None:
        _check_field("event", event.event)
        parts.append(f"event: {event.event}\n")
    if event.id is not None:
        _check_field("id", event.id)
        if "\0" in event.id:
            raise ValueError(f"SSE id cannot contain NUL: {event.id!r}")
        parts.append(f"id: {event.id}\n")
    if event.retry is not None:
        if event.retry < 0:
            raise ValueError(f"SSE retry must be non-negative: {event.retry}")
        parts.append(f"retry: {event.retry}\n")
    if "\r" in event.data:
        raise ValueError(f"SSE data cannot contain a CR: {event.data!r}")
    parts.extend(f"data: {line}\n" for line in event.data.split("\n"))
    parts.append("\n")
    return "".join(parts).encode("utf-8")


def is_canonical(event: SSEEvent) -> bool:
    """True when `encode_event` reproduces `raw` exactly, so the raw bytes need not be stored."""
    try:
        return encode_event(event) == event.raw
    except ValueError:
        return False
