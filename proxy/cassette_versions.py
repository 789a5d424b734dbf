"""Older cassette formats, converted on read: one small function per version step, as VCR.py does.  (pure)

A converter takes the parsed JSON of a cassette at version N and returns it at version N + 1. Files on disk are
never rewritten by reading them; `proxy import` and replay see the current shape.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from proxy.jsonlayout import parse_with_layout

__all__ = ["upgrade"]

Cassette = dict[str, Any]


def _body_v1_to_v2(body: Any) -> None:
    """Version 1 kept JSON in no known layout (an API error indented by four) as text; version 2 keeps the value."""
    if not isinstance(body, dict) or body.get("json") is not None or not isinstance(body.get("text"), str):
        return
    parsed = parse_with_layout(body["text"])
    if parsed is None or parsed[0] is None:
        return
    value, layout = parsed
    body["json"] = value
    if layout is not None:
        body["layout"] = layout
        del body["text"]


def _event_v1_to_v2(event: Any) -> None:
    """Version 1 kept each event's data as a string; version 2 keeps JSON data as a value."""
    if not isinstance(event, dict) or not isinstance(event.get("data"), str) or event["data"] == "[DONE]":
        return
    parsed = parse_with_layout(event["data"])
    if parsed is None or parsed[0] is None or parsed[1] is None:
        return
    del event["data"]
    event["json"] = parsed[0]
    if parsed[1] != "compact":
        event["layout"] = parsed[1]


def _v1_to_v2(data: Cassette) -> Cassette:
    request, response = data.get("request"), data.get("response")
    if isinstance(request, dict):
        _body_v1_to_v2(request.get("body"))
    if isinstance(response, dict):
        _body_v1_to_v2(response.get("body"))
        for event in response.get("events") or ():
            _event_v1_to_v2(event)
    data["version"] = 2
    return data


CONVERTERS: dict[int, Callable[[Cassette], Cassette]] = {1: _v1_to_v2}


def upgrade(data: Cassette, current: int) -> Cassette | None:
    """The cassette brought to version `current`, or None when its version is not one we can convert."""
    version = data.get("version")
    while isinstance(version, int) and version in CONVERTERS and version < current:
        data = CONVERTERS[version](data)
        version = data.get("version")
    return data if version == current else None
