"""What a stored-completions request asks for, checked as the API checks it.  (pure)

The list's query (`model`, `metadata[KEY]=VALUE`, `after`, `limit`, `order`), the messages' query (`after`,
`limit`, `order`) and an update's body (`{"metadata": {...}}`) become small frozen values, or a StoredError
that the route answers as a 400 in the API's error shape, worded the way the API words it and naming the
parameter, so the official SDKs raise `BadRequestError` with a useful message.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "MAX_METADATA_KEY",
    "MAX_METADATA_PAIRS",
    "MAX_METADATA_VALUE",
    "ListQuery",
    "StoredError",
    "check_metadata",
    "parse_list_query",
    "parse_update",
]

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 512

Order = Literal["asc", "desc"]


class StoredError(Exception):
    """A request the stored-completions API refuses: the status and the API's error fields."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type_: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type_


@dataclass(frozen=True, slots=True)
class ListQuery:
    """One page's worth of a list: filters (model, metadata pairs that must all match) and the cursor."""

    model: str | None = None
    metadata: tuple[tuple[str, str], ...] = ()
    after: str | None = None
    limit: int = DEFAULT_LIMIT
    order: Order = "asc"


def parse_list_query(pairs: Iterable[tuple[str, str]], *, filters: bool = True) -> ListQuery:
    """The query string's pairs (already percent-decoded) as a ListQuery. Unknown parameters are ignored, as
    the API does; `filters=False` (the messages endpoint) ignores `model` and `metadata[...]` too."""
    model: str | None = None
    metadata: list[tuple[str, str]] = []
    after: str | None = None
    limit = DEFAULT_LIMIT
    order: Order = "asc"
    for name, value in pairs:
        if name == "limit":
            limit = _limit(value)
        elif name == "order":
            order = _order(value)
        elif name == "after":
            after = value or None
        elif filters and name == "model":
            model = value or None
        elif filters and name.startswith("metadata[") and name.endswith("]"):
            metadata.append((name[len("metadata[") : -1], value))
    return ListQuery(model=model, metadata=tuple(metadata), after=after, limit=limit, order=order)


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise StoredError(
            400,
            f"Invalid 'limit': expected an integer, but got {text!r} instead.",
            param="limit",
            code="invalid_type",
        ) from None
    if value < 1:
        raise StoredError(
            400,
            f"Invalid 'limit': integer below minimum value. Expected a value >= 1, but got {value} instead.",
            param="limit",
            code="integer_below_min_value",
        )
    if value > MAX_LIMIT:
        raise StoredError(
            400,
            f"Invalid 'limit': integer above maximum value. Expected a value <= {MAX_LIMIT}, but got {value} instead.",
            param="limit",
            code="integer_above_max_value",
        )
    return value


def _order(text: str) -> Order:
    if text == "asc":
        return "asc"
    if text == "desc":
        return "desc"
    raise StoredError(
        400,
        f"Invalid value: {text!r}. Supported values are: 'asc' and 'desc'.",
        param="order",
        code="invalid_value",
    )


def check_metadata(value: Any) -> dict[str, str]:
    """Metadata as the API accepts it: an object of at most 16 string pairs, keys up to 64 characters,
    values up to 512. `null` clears it (an empty object)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise StoredError(
            400,
            f"Invalid type for 'metadata': expected an object, but got {_json_type(value)} instead.",
            param="metadata",
            code="invalid_type",
        )
    if len(value) > MAX_METADATA_PAIRS:
        raise StoredError(
            400,
            f"Invalid 'metadata': too many properties. Expected an object with at most {MAX_METADATA_PAIRS} "
            f"properties, but got an object with {len(value)} properties instead.",
            param="metadata",
            code="object_above_max_properties",
        )
    for key, item in value.items():
        if len(key) > MAX_METADATA_KEY:
            raise StoredError(
                400,
                f"Invalid 'metadata': string too long. Expected a key with maximum length {MAX_METADATA_KEY}, "
                f"but got a key with length {len(key)} instead.",
                param="metadata",
                code="string_above_max_length",
            )
        if not isinstance(item, str):
            raise StoredError(
                400,
                f"Invalid type for 'metadata.{key}': expected a string, but got {_json_type(item)} instead.",
                param=f"metadata.{key}",
                code="invalid_type",
            )
        if len(item) > MAX_METADATA_VALUE:
            raise StoredError(
                400,
                f"Invalid 'metadata.{key}': string too long. Expected a string with maximum length "
                f"{MAX_METADATA_VALUE}, but got a string with length {len(item)} instead.",
                param=f"metadata.{key}",
                code="string_above_max_length",
            )
    return dict(value)


def parse_update(body: bytes) -> dict[str, str]:
    """An update's body, `{"metadata": {...}}` and nothing else, as the new metadata."""
    try:
        data = json.loads(body) if body.strip() else None
    except (ValueError, UnicodeDecodeError):
        raise StoredError(400, "We could not parse the JSON body of your request.", code="invalid_json") from None
    if not isinstance(data, dict):
        raise StoredError(400, "The body of your request must be a JSON object.", code="invalid_type")
    for name in data:
        if name != "metadata":
            raise StoredError(
                400, f"Unrecognized request argument supplied: {name}", param=name, code="unknown_parameter"
            )
    if "metadata" not in data:
        raise StoredError(
            400, "Missing required parameter: 'metadata'.", param="metadata", code="missing_required_parameter"
        )
    return check_metadata(data["metadata"])


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
