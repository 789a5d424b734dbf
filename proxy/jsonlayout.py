"""JSON text and the layout that reproduces it byte for byte.  (pure)

Cassettes keep JSON bodies and SSE event data as JSON values, so they read and diff well, and name the layout
the sender used (compact, spaced, indented by 2 or 4, ASCII-escaped or not, with a final newline or not), so
replay gives back the exact bytes. Servers differ: OpenAI's chunks are compact, its error bodies are indented
by four spaces, other servers pretty-print by two.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["JSON_LAYOUTS", "dump_json", "parse_with_layout"]

JSON_LAYOUTS: dict[str, dict[str, Any]] = {
    "compact": {"separators": (",", ":"), "ensure_ascii": False},
    "spaced": {"ensure_ascii": False},
    "indent2": {"indent": 2, "ensure_ascii": False},
    "indent4": {"indent": 4, "ensure_ascii": False},
    "compact-ascii": {"separators": (",", ":")},
    "spaced-ascii": {},
    "indent2-ascii": {"indent": 2},
    "indent4-ascii": {"indent": 4},
}


# Built once: json.dumps with any argument builds a new encoder per call, a third of the cost of a small value.
_ENCODE = {name: json.JSONEncoder(**options).encode for name, options in JSON_LAYOUTS.items()}


def dump_json(value: Any, layout: str) -> str:
    """The text of `value` in a named layout; a `+nl` suffix adds the final newline."""
    if layout.endswith("+nl"):
        return _ENCODE[layout[:-3]](value) + "\n"
    return _ENCODE[layout](value)


def parse_with_layout(text: str) -> tuple[Any, str | None] | None:
    """The JSON value of `text` and the layout that gives the same text back (None when none does);
    None when `text` is not JSON at all."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    newline = "+nl" if text.endswith("\n") else ""
    for name in JSON_LAYOUTS:
        if dump_json(value, name + newline) == text:
            return value, name + newline
    return value, None
