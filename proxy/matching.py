"""Which recording answers a request: canonical request keys, tiny matchers, closest-miss diagnosis. (pure)

A request matches a recording on method, path, query (parameters in any order) and the body: JSON compared
canonically (key order and whitespace don't matter), with configured body fields ignored; plus any headers
named in the policy. Each part is a matcher with a name, so a miss can say exactly which part differed,
the way VCR.py does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qsl

_NO_JSON = object()


@dataclass(frozen=True, slots=True)
class MatchPolicy:
    ignore_body_fields: frozenset[str] = frozenset()
    match_headers: tuple[str, ...] = ()  # lower-case names
    on_exhausted: Literal["repeat", "fail"] = "repeat"


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What matching sees of a request, recorded or live."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    headers: tuple[tuple[str, str], ...]  # lower-case names
    body_json: Any  # parsed JSON body, or _NO_JSON
    body_text: str  # the raw body, for bodies that are not JSON

    @classmethod
    def from_parts(
        cls,
        method: str,
        path: str,
        query: str,
        headers: Iterable[tuple[str, str]] | Mapping[str, str],
        body: bytes,
    ) -> RequestFacts:
        items = headers.items() if isinstance(headers, Mapping) else headers
        text = body.decode("utf-8", "replace")
        return cls.build(method, path, query, items, parse_json(text), text)

    @classmethod
    def build(
        cls,
        method: str,
        path: str,
        query: str,
        headers: Iterable[tuple[str, str]],
        body_json: Any,
        text: str = "",
    ) -> RequestFacts:
        return cls(
            method=method.upper(),
            path=path,
            query=tuple(sorted(parse_qsl(query, keep_blank_values=True))),
            headers=tuple((name.lower(), value) for name, value in headers),
            body_json=body_json,
            body_text=text,
        )

    @property
    def model(self) -> str | None:
        body = self.body_json
        return body.get("model") if isinstance(body, dict) and isinstance(body.get("model"), str) else None

    def header(self, name: str) -> str | None:
        values = [value for key, value in self.headers if key == name]
        return ", ".join(values) if values else None


def parse_json(text: str) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return _NO_JSON


def canonical_body(facts: RequestFacts, ignore: frozenset[str]) -> str:
    body = facts.body_json
    if body is _NO_JSON:
        return "text:" + facts.body_text
    if isinstance(body, dict) and ignore:
        body = {key: value for key, value in body.items() if key not in ignore}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


Matcher = Callable[[RequestFacts, MatchPolicy], Any]

MATCHERS: dict[str, Matcher] = {
    "method": lambda facts, policy: facts.method,
    "path": lambda facts, policy: facts.path,
    "query": lambda facts, policy: facts.query,
    "body": lambda facts, policy: canonical_body(facts, policy.ignore_body_fields),
    "headers": lambda facts, policy: tuple(facts.header(name) for name in policy.match_headers),
}


def request_key(facts: RequestFacts, policy: MatchPolicy) -> str:
    """One string per distinct request under the policy: a hash over every matcher's value."""
    digest = hashlib.sha256()
    for name, matcher in MATCHERS.items():
        digest.update(name.encode())
        digest.update(repr(matcher(facts, policy)).encode())
    return digest.hexdigest()


def differences(live: RequestFacts, recorded: RequestFacts, policy: MatchPolicy) -> list[str]:
    """Which parts differ, in words a developer can act on (body differences are named by field)."""
    found: list[str] = []
    for name, matcher in MATCHERS.items():
        if matcher(live, policy) == matcher(recorded, policy):
            continue
        if name == "body":
            found.extend(body_differences(live.body_json, recorded.body_json, policy.ignore_body_fields))
        elif name == "headers":
            for header in policy.match_headers:
                if live.header(header) != recorded.header(header):
                    found.append(f"header {header}")
        else:
            found.append(name)
    return found


def body_differences(live: Any, recorded: Any, ignore: frozenset[str]) -> list[str]:
    if not (isinstance(live, dict) and isinstance(recorded, dict)):
        return ["body"]
    fields = sorted((set(live) | set(recorded)) - ignore)
    return [f"body.{key}" for key in fields if live.get(key, _NO_JSON) != recorded.get(key, _NO_JSON)]


# What a side of a difference shows when the field is not there at all.
ABSENT = object()
_SHOWN_CHARS = 80


@dataclass(frozen=True, slots=True)
class Difference:
    """One differing field with both values, for a miss that says what to change (or to re-record)."""

    field: str  # "body.messages[1].content", "query", "header x-team", "method", "path"
    recorded: Any = ABSENT
    requested: Any = ABSENT

    def describe(self) -> str:
        if self.recorded is ABSENT:
            return f"{self.field} (requested {shorten(self.requested)}, absent in the recording)"
        if self.requested is ABSENT:
            return f"{self.field} (recorded {shorten(self.recorded)}, absent in the request)"
        return f"{self.field} (recorded {shorten(self.recorded)}, requested {shorten(self.requested)})"


def shorten(value: Any) -> str:
    text = value if isinstance(value, str) and value.startswith("text:") else None
    if text is None:
        text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 1] + "…"


def _first_difference(path: str, recorded: Any, live: Any) -> Difference:
    """The deepest place where two JSON values part, so a long prompt's one changed word is named exactly."""
    while True:
        if isinstance(recorded, dict) and isinstance(live, dict):
            keys = sorted(set(recorded) | set(live))
            key = next(k for k in keys if recorded.get(k, ABSENT) != live.get(k, ABSENT))
            path, recorded, live = f"{path}.{key}", recorded.get(key, ABSENT), live.get(key, ABSENT)
        elif isinstance(recorded, list) and isinstance(live, list) and len(recorded) == len(live):
            index = next(i for i, (a, b) in enumerate(zip(recorded, live, strict=True)) if a != b)
            path, recorded, live = f"{path}[{index}]", recorded[index], live[index]
        else:
            return Difference(path, recorded, live)


def difference_details(live: RequestFacts, recorded: RequestFacts, policy: MatchPolicy) -> list[Difference]:
    """`differences` with the values on both sides."""
    found: list[Difference] = []
    for name in differences(live, recorded, policy):
        if name.startswith("body."):
            key = name.removeprefix("body.")
            found.append(_first_difference(name, recorded.body_json.get(key, ABSENT), live.body_json.get(key, ABSENT)))
        elif name == "body":
            found.append(Difference("body", _body_shown(recorded), _body_shown(live)))
        elif name.startswith("header "):
            header = name.removeprefix("header ")
            found.append(Difference(name, _or_absent(recorded.header(header)), _or_absent(live.header(header))))
        elif name == "query":
            found.append(_first_difference("query", _query_dict(recorded), _query_dict(live)))
        else:
            found.append(Difference(name, getattr(recorded, name), getattr(live, name)))
    return found


def _query_dict(facts: RequestFacts) -> dict[str, Any]:
    values: dict[str, list[str]] = {}
    for name, value in facts.query:
        values.setdefault(name, []).append(value)
    return {name: found[0] if len(found) == 1 else found for name, found in values.items()}


def _or_absent(value: str | None) -> Any:
    return ABSENT if value is None else value


def _body_shown(facts: RequestFacts) -> Any:
    if facts.body_json is _NO_JSON:
        return "text:" + facts.body_text
    return ABSENT if facts.body_json is None else facts.body_json


@dataclass(frozen=True, slots=True)
class Near:
    facts: RequestFacts
    label: str
    differing: list[str]


def closest(
    live: RequestFacts, candidates: Iterable[tuple[RequestFacts, str]], policy: MatchPolicy, limit: int = 3
) -> list[Near]:
    """The recordings that differ from the request in the fewest parts, same method and path first."""
    scored: list[tuple[tuple[int, int], Near]] = []
    for facts, label in candidates:
        diff = differences(live, facts, policy)
        same_route = facts.method == live.method and facts.path == live.path
        scored.append(((0 if same_route else 1, len(diff)), Near(facts, label, diff)))
    scored.sort(key=lambda pair: pair[0])
    return [near for _, near in scored[:limit]]
