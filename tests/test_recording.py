"""A Recording crosses to the recording worker (as marshal data, worker_wire.py), and a Written comes back
pickled: every field must arrive as it left."""

from __future__ import annotations

import pickle
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from multidict import istr

from proxy.interaction import RecordedEvent
from proxy.pipeline import Written
from proxy.recording import Recording
from proxy.worker_wire import batch_payload, recordings_of


def test_a_recording_survives_the_crossing_field_for_field() -> None:
    recording = Recording(
        "POST",
        "/v1/chat/completions",
        "a=1",
        [("content-type", "application/json"), ("x-repeated", "1"), ("x-repeated", "2")],
        b'{"model":"m"}',
        "http://upstream",
        12.5,
        recorded_at=datetime(2026, 11, 30, 12, 0, 1, 999_999, tzinfo=UTC),
        mode="auto",
        status=502,
        response_headers=[("content-type", "text/event-stream")],
        headers_at=12.75,
        ended=13.0,
        error="upstream reset",
        incomplete_reason="upstream_reset",
        error_body=b'{"error":{}}',
        error_status=502,
        tags={"feature": "search"},
        directory=Path("elsewhere/cassettes"),
    )
    recording.add(b"data: 1\n\n", 12.8)
    recording.add(b"data: 2\n\n", 12.9)

    [copy] = recordings_of(batch_payload([recording]))

    assert copy == recording
    defaults = Recording("GET", "/", "", [], b"", "", 0.0)
    left_at_default = [f.name for f in fields(Recording) if getattr(recording, f.name) == getattr(defaults, f.name)]
    assert left_at_default == [], "every field is set apart from its default, so a field lost or swapped shows"


def test_a_recording_with_header_names_that_are_not_plain_strings_still_crosses() -> None:
    # marshal takes builtins only; multidict's istr (aiohttp's header names) is a str subclass
    recording = Recording("POST", "/v1", "", [(istr("Content-Type"), "application/json")], b"{}", "http://u", 1.0)
    recording.response_headers = [(istr("X-Request-Id"), "req_1")]
    [copy] = recordings_of(batch_payload([recording]))
    assert copy == recording
    assert type(copy.request_headers[0][0]) is str


def test_the_recordings_of_a_batch_share_their_directory_as_they_did_before_crossing() -> None:
    # Each Written carries it back: pickle sends a shared Path once per frame, and the proxy builds it once.
    first, second = (Recording("POST", "/v1", "", [], b"{}", "http://u", 1.0) for _ in range(2))
    one, two = recordings_of(batch_payload([first, second]))
    assert one.directory is two.directory


def test_what_comes_back_of_a_recording_survives_pickling_field_for_field() -> None:
    written = Written(Path("cassettes"), "2026-12-01/x.json", "disk full", ("POST", "/v1", "m", 200, 1.5, False), None)
    copy = pickle.loads(pickle.dumps(written, protocol=pickle.HIGHEST_PROTOCOL))
    assert copy == written
    assert [f.name for f in fields(Written)] == ["directory", "cassette", "error", "summary", "head"], (
        "Written.__reduce__ names every field in this order"
    )


@pytest.mark.parametrize(
    "values",
    [
        {"json_": {"a": [1, None]}},
        {"data": "[DONE]"},
        {"json_": {"a": 1}, "layout": "spaced", "event": "delta", "id": "7", "retry": 10, "raw": "x"},
    ],
)
def test_a_trusted_event_is_what_model_construct_makes(values: dict[str, Any]) -> None:
    # RecordedEvent.trusted skips pydantic's model_construct for speed; it must build the very same model.
    trusted = RecordedEvent.trusted(2.5, **values)
    constructed = RecordedEvent.model_construct(offset_ms=2.5, **values)
    assert trusted == constructed
    assert trusted.model_fields_set == constructed.model_fields_set
    assert trusted.model_extra == constructed.model_extra == {}
    assert trusted.model_dump_json(by_alias=True) == constructed.model_dump_json(by_alias=True)
