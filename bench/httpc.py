"""Blocking HTTP helpers for the orchestrator's checks (urllib; the load itself goes through load.py)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    body: bytes
    # every response header but those aiohttp writes itself (a static handler sending these sends the same bytes)
    headers: tuple[tuple[str, str], ...] = ()


_WRITTEN_BY_THE_SERVER = frozenset({"content-length", "date", "server", "connection", "transfer-encoding"})


def _own(headers: Any) -> tuple[tuple[str, str], ...]:
    return tuple((name, value) for name, value in headers.items() if name.lower() not in _WRITTEN_BY_THE_SERVER)


def post(url: str, body: bytes, headers: dict[str, str], timeout: float = 15.0) -> Answer:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            content_type = response.headers.get("content-type", "")
            return Answer(response.status, content_type, response.read(), _own(response.headers))
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, exc.headers.get("content-type", ""), exc.read(), _own(exc.headers))


def get_json(url: str, timeout: float = 5.0) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        data: dict[str, Any] = json.loads(response.read())
        return data
