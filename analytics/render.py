"""Query results as lines of text: an aligned table for a terminal, CSV, or one JSON array.  (pure)

One function, `render`, yields lines for every format, so the CLI stays a loop that prints them. A table
never cuts a value unless asked to (`max_width`): cassette paths and error messages are there to be copied.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from analytics.db import AnalyticsError

FORMATS = ("table", "csv", "json")


class JSONText(str):
    """A value of a JSON-typed column: nested by `render(..., "json")`, shown as its text elsewhere."""

    __slots__ = ()


# --- rendering ---


def render(
    columns: Sequence[str], rows: Iterable[Sequence[Any]], fmt: str = "table", max_width: int | None = None
) -> Iterator[str]:
    """Lines of output (without newlines): `table` aligned for a terminal, `csv` with a header row, `json`
    one array of objects keyed by column name (JSON columns nested, timestamps as ISO strings).
    `max_width` (tables only) cuts cells longer than that many characters with "…"; None keeps every value."""
    if max_width is not None and max_width < 1:
        raise AnalyticsError(f"--max-width {max_width}: must be at least 1")
    if fmt == "table":
        return _table(columns, rows, max_width)
    if fmt == "csv":
        return _csv(columns, rows)
    if fmt == "json":
        return _json(columns, rows)
    raise AnalyticsError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _text(value: Any) -> str:
    """A value as csv and table show it (no cutting)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, bytes):
        return "\\x" + value.hex()
    if isinstance(value, dict | list | tuple):
        return json.dumps(_plain(value), ensure_ascii=False)
    return str(value)


def _table_cell(value: Any, max_width: int | None) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        short = math.isfinite(value) and abs(value) < 1e15
        # small values (costs in USD) keep up to 6 decimals, and a value that is not 0 is never shown as 0
        digits = 6 if abs(value) < 1 else 3
        text = f"{value:.{digits}f}".rstrip("0").rstrip(".") if short else repr(value)
        if short and value != 0 and text in ("0", "-0"):
            text = f"{value:.3g}"
    elif isinstance(value, datetime):
        text = value.isoformat(sep=" ")
    else:
        text = _text(value)
    text = text.replace("\r", "\\r").replace("\n", "\\n").replace("\t", "\\t")
    return text if max_width is None or len(text) <= max_width else text[: max_width - 1] + "…"


def _table(columns: Sequence[str], rows: Iterable[Sequence[Any]], max_width: int | None) -> Iterator[str]:
    materialized = [tuple(row) for row in rows]
    cells = [[_table_cell(value, max_width) for value in row] for row in materialized]
    widths = [len(name) for name in columns]
    for row_cells in cells:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row_cells, strict=True)]
    numeric = [
        any(row[i] is not None for row in materialized)
        and all(row[i] is None or _is_number(row[i]) for row in materialized)
        for i in range(len(columns))
    ]

    def line(values: Sequence[str]) -> str:
        parts = (
            value.rjust(width) if right else value.ljust(width)
            for value, width, right in zip(values, widths, numeric, strict=True)
        )
        return "  ".join(parts).rstrip()

    yield line(columns)
    yield "  ".join("-" * width for width in widths)
    for row_cells in cells:
        yield line(row_cells)


def _csv(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for record in ([*columns], *([_text(value) for value in row] for row in rows)):
        writer.writerow(record)
        yield buffer.getvalue().removesuffix("\n")
        buffer.seek(0)
        buffer.truncate()


def _plain(value: Any) -> Any:
    """A value as JSON sees it: JSON columns parsed, times as ISO strings, decimals as numbers."""
    if isinstance(value, JSONText):
        try:
            return json.loads(value)
        except ValueError:
            return str(value)
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, bytes):
        return "\\x" + value.hex()
    return str(value)


def _unique_names(columns: Sequence[str]) -> list[str]:
    seen: dict[str, int] = {}
    names = []
    for name in columns:
        seen[name] = seen.get(name, 0) + 1
        names.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return names


def _json(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    names = _unique_names(columns)
    previous: str | None = None
    for row in rows:
        if previous is not None:
            yield previous + ","
        else:
            yield "["
        record = {name: _plain(value) for name, value in zip(names, row, strict=True)}
        previous = json.dumps(record, ensure_ascii=False)
    if previous is None:
        yield "[]"
    else:
        yield previous
        yield "]"


def records(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[dict[str, Any]]:
    """Rows as JSON-ready objects keyed by column name (the values `render(..., "json")` writes)."""
    names = _unique_names(columns)
    return [{name: _plain(value) for name, value in zip(names, row, strict=True)} for row in rows]
