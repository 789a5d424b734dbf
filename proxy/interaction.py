"""The Interaction: one request/response pair as recorded, and the shape of a cassette file.

A cassette file is `Interaction.model_dump(mode="json", exclude_none=True)` written as indented JSON.
Models are lenient (`extra="allow"`) so a cassette written by a newer version still loads, and
every field a reader relies on is declared here, in one place.

Bodies are kept in the most readable faithful form: `json` when the bytes parse as JSON, `text` when
they are UTF-8 but not JSON, `base64` otherwise. Headers are `[name, value]` pairs in arrival order,
so repeated headers survive; secret values are replaced by `REDACTED` before anything is built here.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from proxy.jsonlayout import dump_json

CASSETTE_VERSION = 2
REDACTED = "<redacted>"

HeaderList = list[tuple[str, str]]


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class Body(_Lenient):
    """A message body: `json` when the bytes parse as JSON, else `text` (UTF-8), else `base64`.

    `layout` names how `json` was laid out on the wire (see jsonlayout.py), so replay gives back the same bytes;
    when no known layout does, `text` holds the exact bytes beside `json` (replay sends `text`)."""

    json_: Any = Field(default=None, alias="json")
    layout: str | None = None
    text: str | None = None
    base64: str | None = None

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class RecordedRequest(_Lenient):
    method: str
    path: str
    query: str = ""
    headers: HeaderList = Field(default_factory=list)
    body: Body = Field(default_factory=Body)


class RecordedEvent(_Lenient):
    """One SSE event. Its data is stored as `json` (a JSON value, so a re-recorded stream diffs line by line)
    when it parses as JSON and `layout` (compact when absent) gives back the same text; else as `data`.
    `raw` is kept only when the event's bytes differ from the canonical encoding (`data: ...\\n\\n`), so
    replay reproduces unusual framing exactly and ordinary streams stay tidy."""

    offset_ms: float
    data: str | None = None
    json_: Any = Field(default=None, alias="json")
    layout: str | None = None
    event: str | None = None
    id: str | None = None
    retry: int | None = None
    raw: str | None = None

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    @classmethod
    def trusted(
        cls,
        offset_ms: float,
        *,
        data: str | None = None,
        json_: Any = None,
        layout: str | None = None,
        event: str | None = None,
        id: str | None = None,
        retry: int | None = None,
        raw: str | None = None,
    ) -> RecordedEvent:
        """What `model_construct` makes of these values, without its loop over fields and aliases, which was a
        third of the recording worker's time per streamed event. Only for values from our own SSE decoder."""
        made = cls.__new__(cls)
        values = {
            "offset_ms": offset_ms,
            "data": data,
            "json_": json_,
            "layout": layout,
            "event": event,
            "id": id,
            "retry": retry,
            "raw": raw,
        }
        setattr_ = object.__setattr__
        setattr_(made, "__dict__", values)
        setattr_(made, "__pydantic_fields_set__", {name for name, value in values.items() if value is not None})
        setattr_(made, "__pydantic_extra__", {})
        setattr_(made, "__pydantic_private__", None)
        return made

    @property
    def text(self) -> str:
        """The event's data field as it was on the wire."""
        if self.data is not None:
            return self.data
        if self.json_ is None:
            return ""
        return dump_json(self.json_, self.layout or "compact")

    @property
    def payload(self) -> Any:
        """The data parsed as JSON (None when it is not JSON, e.g. `[DONE]`)."""
        if self.json_ is not None or self.data is None:
            return self.json_
        try:
            return json.loads(self.data)
        except ValueError:
            return None


class RecordedResponse(_Lenient):
    status: int
    headers: HeaderList = Field(default_factory=list)
    body: Body = Field(default_factory=Body)
    stream: bool = False
    events: list[RecordedEvent] | None = None
    # bytes after the last complete event (a stream cut mid-event); replayed as they came
    tail: str | None = None
    # the content coding the recorder removed from `body`/`events` (headers keep the original value)
    decoded_from: str | None = None
    # for a chat.completion.chunk stream: the reassembled ChatCompletion
    completion: dict[str, Any] | None = None


class Timings(_Lenient):
    ttfb_ms: float | None = None
    total_ms: float | None = None


class Outcome(_Lenient):
    """How the exchange ended. `complete` is False for streams cut short and upstream failures."""

    complete: bool = True
    error: str | None = None
    incomplete_reason: str | None = None
    usage_missing: bool = False
    notes: list[str] = Field(default_factory=list)


class Metadata(_Lenient):
    recorded_at: str
    upstream: str
    proxy_version: str
    mode: str = "record"
    # from the request's `X-Proxy-Tag-<name>` headers (which were not forwarded); absent when there were none
    tags: dict[str, str] | None = None


class Interaction(_Lenient):
    version: int = CASSETTE_VERSION
    id: str
    metadata: Metadata
    request: RecordedRequest
    response: RecordedResponse
    timings: Timings = Field(default_factory=Timings)
    outcome: Outcome = Field(default_factory=Outcome)

    @property
    def requested_model(self) -> str | None:
        """The model the client asked for."""
        body = self.request.body.json_
        model = body.get("model") if isinstance(body, dict) else None
        return model if isinstance(model, str) else None

    @property
    def model(self) -> str | None:
        """The model that answered (from the response), else the one asked for."""
        for source in (self.response.completion, self.response.body.json_, self.request.body.json_):
            if isinstance(source, dict) and isinstance(source.get("model"), str):
                return str(source["model"])
        return None
