"""Tests for proxy.matching (canonical request keys, the matchers one by one, closest-miss diagnosis) and for
how the replay index sees a recorded request."""

from __future__ import annotations

import json
from typing import Any

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from proxy.matching import MatchPolicy, RequestFacts, closest, differences, request_key
from proxy.recording import Recording, Redaction, build_interaction
from proxy.replay import ReplayIndex

PATH = "/v1/chat/completions"
BODY: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "Say hello to the proxy"}],
    "temperature": 0.2,
}


def facts(
    body: bytes | dict[str, Any] | None = None,
    *,
    method: str = "POST",
    path: str = PATH,
    query: str = "",
    headers: dict[str, str] | None = None,
) -> RequestFacts:
    raw = json.dumps(BODY if body is None else body).encode() if not isinstance(body, bytes) else body
    return RequestFacts.from_parts(method, path, query, headers or {}, raw)


def with_body(**changes: Any) -> dict[str, Any]:
    return {**BODY, **changes}


DEFAULT = MatchPolicy()


def same_key(a: RequestFacts, b: RequestFacts, policy: MatchPolicy = DEFAULT) -> bool:
    return request_key(a, policy) == request_key(b, policy)


# --- what makes two requests the same -----------------------------------------------------------------

SAME: list[tuple[str, RequestFacts, RequestFacts, MatchPolicy]] = [
    (
        "json key order does not matter",
        facts(b'{"model":"gpt-4o-mini","temperature":0.2,"messages":[{"role":"user","content":"Hi"}]}'),
        facts(b'{"messages":[{"content":"Hi","role":"user"}],"temperature":0.2,"model":"gpt-4o-mini"}'),
        MatchPolicy(),
    ),
    (
        "json whitespace does not matter",
        facts(b'{"model":"gpt-4o-mini","n":1}'),
        facts(b'{\n  "model": "gpt-4o-mini",\n  "n": 1\n}\n'),
        MatchPolicy(),
    ),
    (
        "ignored body fields do not matter",
        facts(with_body(user="alice", seed=1)),
        facts(with_body(user="bob", seed=2)),
        MatchPolicy(ignore_body_fields=frozenset({"user", "seed"})),
    ),
    (
        "an ignored field may be absent on one side",
        facts(with_body(user="alice")),
        facts(BODY),
        MatchPolicy(ignore_body_fields=frozenset({"user"})),
    ),
    (
        "query parameter order does not matter",
        facts(query="api-version=2024-06-01&deployment=a"),
        facts(query="deployment=a&api-version=2024-06-01"),
        MatchPolicy(),
    ),
    (
        "headers are not matched unless named",
        facts(headers={"x-team": "red"}),
        facts(headers={"x-team": "blue"}),
        MatchPolicy(),
    ),
    (
        "a matched header's name is case-insensitive",
        facts(headers={"X-Team": "red"}),
        facts(headers={"x-team": "red"}),
        MatchPolicy(match_headers=("x-team",)),
    ),
    (
        "method case does not matter",
        facts(method="post"),
        facts(method="POST"),
        MatchPolicy(),
    ),
]


@pytest.mark.parametrize(("a", "b", "policy"), [case[1:] for case in SAME], ids=[case[0] for case in SAME])
def test_requests_that_match(a: RequestFacts, b: RequestFacts, policy: MatchPolicy) -> None:
    assert same_key(a, b, policy)
    assert differences(a, b, policy) == []


DIFFERENT: list[tuple[str, RequestFacts, RequestFacts, MatchPolicy, list[str]]] = [
    ("body field value", facts(with_body(temperature=0.9)), facts(), MatchPolicy(), ["body.temperature"]),
    ("body field only live", facts(with_body(seed=7)), facts(), MatchPolicy(), ["body.seed"]),
    ("body field only recorded", facts(), facts(with_body(seed=7)), MatchPolicy(), ["body.seed"]),
    (
        "a field not ignored still counts",
        facts(with_body(user="a", seed=1)),
        facts(with_body(user="b", seed=2)),
        MatchPolicy(ignore_body_fields=frozenset({"user"})),
        ["body.seed"],
    ),
    (
        "several body fields, named in order",
        facts(with_body(temperature=1.0, model="gpt-4o")),
        facts(),
        MatchPolicy(),
        ["body.model", "body.temperature"],
    ),
    ("nested change named by its top field", facts(with_body(messages=[])), facts(), MatchPolicy(), ["body.messages"]),
    ("non-json bodies", facts(b"hello"), facts(b"hullo"), MatchPolicy(), ["body"]),
    ("json number vs string", facts(with_body(n=1)), facts(with_body(n="1")), MatchPolicy(), ["body.n"]),
    (
        "matched header value",
        facts(headers={"x-team": "red"}),
        facts(headers={"x-team": "blue"}),
        MatchPolicy(match_headers=("x-team",)),
        ["header x-team"],
    ),
    (
        "matched header missing",
        facts(headers={}),
        facts(headers={"x-team": "blue"}),
        MatchPolicy(match_headers=("x-team",)),
        ["header x-team"],
    ),
    ("query value", facts(query="a=1&b=2"), facts(query="a=1&b=3"), MatchPolicy(), ["query"]),
    ("path", facts(path="/v1/embeddings"), facts(), MatchPolicy(), ["path"]),
    ("method", facts(method="PUT"), facts(), MatchPolicy(), ["method"]),
]


@pytest.mark.parametrize(
    ("live", "recorded", "policy", "expected"),
    [case[1:] for case in DIFFERENT],
    ids=[case[0] for case in DIFFERENT],
)
def test_differences_name_what_differs(
    live: RequestFacts, recorded: RequestFacts, policy: MatchPolicy, expected: list[str]
) -> None:
    assert not same_key(live, recorded, policy)
    assert differences(live, recorded, policy) == expected


# --- closest recordings --------------------------------------------------------------------------------


def test_closest_ranks_same_method_and_path_first() -> None:
    live = facts()
    other_route = facts(path="/v1/embeddings")  # body identical: fewer differences, but another route
    same_route_far = facts(with_body(temperature=1.0, seed=3, model="gpt-4o"))
    near = closest(live, [(other_route, "embeddings"), (same_route_far, "chat")], MatchPolicy())
    assert [n.label for n in near] == ["chat", "embeddings"]
    assert near[0].differing == ["body.model", "body.seed", "body.temperature"]


def test_closest_ranks_fewer_differences_first_within_a_route() -> None:
    live = facts()
    two = facts(with_body(temperature=1.0, seed=3))
    one = facts(with_body(temperature=1.0))
    three = facts(with_body(temperature=1.0, seed=3, n=2))
    near = closest(live, [(three, "three"), (two, "two"), (one, "one")], MatchPolicy(), limit=2)
    assert [n.label for n in near] == ["one", "two"]
    assert near[0].differing == ["body.temperature"]


def test_closest_of_nothing_is_empty() -> None:
    assert closest(facts(), [], MatchPolicy()) == []


# --- a recording's request matches the live request it was made from ------------------------------------

ROUND_TRIP: list[tuple[str, bytes, str]] = [
    ("compact json", b'{"model":"gpt-4o-mini","n":1}', ""),
    ("indented json", b'{\n  "model": "gpt-4o-mini"\n}', ""),
    ("json in a layout no writer uses", b'{"model" :"gpt-4o-mini"}', ""),
    ("text", b"plain words", ""),
    ("binary", b"\xff\xfe\x00raw", ""),
    ("empty", b"", "stream=true"),
    ("secret query parameter", b"{}", "key=AIza-secret&api-version=1"),
]


@pytest.mark.parametrize(("body", "query"), [case[1:] for case in ROUND_TRIP], ids=[case[0] for case in ROUND_TRIP])
def test_recorded_request_matches_the_live_request_it_came_from(body: bytes, query: str) -> None:
    headers = [("Content-Type", "application/json"), ("Authorization", "Bearer sk-secret")]
    recording = Recording("POST", PATH, query, headers, body, "http://upstream", started=0.0, status=200)
    recording.response_headers = [("Content-Type", "application/json")]
    interaction = build_interaction(recording, Redaction(secret_query_params=frozenset({"key"})))
    index = ReplayIndex(MatchPolicy(on_exhausted="fail"))
    index.add(interaction, None)
    hit, _ = index.lookup("POST", PATH, query, CIMultiDictProxy(CIMultiDict(headers)), body)
    assert hit is not None
