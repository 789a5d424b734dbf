"""The stored-completions core, table-driven: which recordings count, order and cursors, filters, query and
metadata checks, the served objects. No I/O: recordings are built in memory."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.cassettes import CassetteHead, head_of
from proxy.interaction import Interaction
from proxy.stored import Changes, StoredIndex, message_page, stored_completion
from proxy.stored_models import completion_list, served_completion, store_message
from proxy.stored_query import (
    MAX_METADATA_KEY,
    MAX_METADATA_VALUE,
    ListQuery,
    StoredError,
    check_metadata,
    parse_list_query,
    parse_update,
)
from tests.chunks import make_completion, make_completion_choice, make_message


def recording(
    completion_id: str,
    created: int = 1_700_000_000,
    *,
    model: str = "gpt-4o-mini",
    metadata: dict[str, str] | None = None,
    store: Any = True,
    stream: bool = False,
    recorded_at: str = "2026-12-01T10:00:00.000Z",
    **changes: Any,
) -> Interaction:
    """An Interaction holding one chat completion; `changes` overrides a part (`method`, `path`, `status`...)."""
    request: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": f"question {completion_id}"}]}
    if store is not None:
        request["store"] = store
    if metadata is not None:
        request["metadata"] = metadata
    if stream:
        request["stream"] = True
    completion = make_completion(
        [make_completion_choice(make_message(f"answer {completion_id}"))],
        id=completion_id,
        created=created,
        model=f"{model}-2024-07-18",
    )
    response: dict[str, Any] = {"status": changes.pop("status", 200), "headers": [["content-type", "x"]]}
    if stream:
        response.update(stream=True, events=[], completion=completion)
    else:
        response["body"] = {"json": changes.pop("answer", completion)}
    data: dict[str, Any] = {
        "id": f"rec-{completion_id}",
        "metadata": {"recorded_at": recorded_at, "upstream": "http://u", "proxy_version": "0"},
        "request": {
            "method": changes.pop("method", "POST"),
            "path": changes.pop("path", "/v1/chat/completions"),
            "body": {"json": changes.pop("request_body", request)},
        },
        "response": response,
        "outcome": {"complete": changes.pop("complete", True)},
    }
    assert not changes, changes
    return Interaction.model_validate(data)


# --- which recordings are stored completions -------------------------------------------------------------


@pytest.mark.parametrize("as_head", [False, True], ids=["interaction", "head"])
@pytest.mark.parametrize(
    ("changes", "counts"),
    [
        ({}, True),
        ({"stream": True}, True),
        ({"method": "GET"}, False),
        ({"path": "/v1/embeddings"}, False),
        ({"status": 500}, False),
        ({"complete": False}, False),
        ({"request_body": {"model": "m"}}, False),
        ({"answer": {"object": "chat.completion", "created": 1}}, False),  # no id
        ({"answer": {"id": "c", "created": "yesterday"}}, False),
        ({"answer": ["not", "an", "object"]}, False),
    ],
)
def test_which_recordings_hold_a_chat_completion(changes: dict[str, Any], counts: bool, as_head: bool) -> None:
    interaction = recording("chatcmpl-1", **changes)
    record: Interaction | CassetteHead = head_of(interaction) if as_head else interaction
    found = stored_completion(record, None)
    assert (found is not None) == counts
    if found is not None:
        assert (found.id, found.created) == ("chatcmpl-1", 1_700_000_000)
        assert found.models == ("gpt-4o-mini-2024-07-18", "gpt-4o-mini")


@pytest.mark.parametrize(
    ("store", "store_all", "listed"),
    [(True, False, True), (False, False, False), (None, False, False), ("yes", False, False), (False, True, True)],
)
def test_only_store_true_counts_unless_store_all(store: Any, store_all: bool, listed: bool) -> None:
    index = StoredIndex(store_all=store_all)
    index.add(recording("chatcmpl-1", store=store), None)
    assert (index.find("chatcmpl-1", Changes()) is not None) == listed


def test_the_last_recording_of_an_id_wins_whatever_order_they_arrive_in() -> None:
    early = recording("chatcmpl-1", metadata={"v": "early"}, recorded_at="2026-12-01T10:00:00.000Z")
    late = recording("chatcmpl-1", metadata={"v": "late"}, recorded_at="2026-12-01T11:00:00.000Z")
    for order in ([early, late], [late, early]):
        index = StoredIndex()
        for item in order:
            index.add(item, None)
        found = index.find("chatcmpl-1", Changes())
        assert found is not None
        assert found.metadata == {"v": "late"}
        assert len(index) == 1


# --- order, cursors and filters ----------------------------------------------------------------------------

# id, created, recorded_at (seconds), model, metadata
ROWS = [
    ("chatcmpl-e", 300, 1, "gpt-4o-mini", {"team": "red", "env": "prod"}),
    ("chatcmpl-a", 100, 2, "gpt-4.1", {"team": "blue"}),
    ("chatcmpl-c", 200, 3, "gpt-4o-mini", {"team": "red", "env": "dev"}),
    ("chatcmpl-b", 200, 4, "gpt-4.1", {"team": "red", "env": "prod"}),  # same created as c: recorded later
    ("chatcmpl-d", 200, 4, "gpt-4o-mini", {}),  # same created and recorded_at as b: by id
    ("chatcmpl-f", 50, 5, "gpt-4o-mini", {"team": "red", "env": "prod"}),
]
ASCENDING = ["chatcmpl-f", "chatcmpl-a", "chatcmpl-c", "chatcmpl-b", "chatcmpl-d", "chatcmpl-e"]


def sample_index() -> StoredIndex:
    index = StoredIndex()
    for completion_id, created, second, model, metadata in ROWS:
        stamp = f"2026-12-01T10:00:{second:02d}.000Z"
        index.add(recording(completion_id, created, model=model, metadata=metadata, recorded_at=stamp), None)
    return index


def walk(index: StoredIndex, query: ListQuery, changes: Changes) -> list[str]:
    """Every page in turn, the way the SDKs do: the next page's `after` is the last item's id."""
    seen: list[str] = []
    while True:
        page = index.page(query, changes)
        seen += [item.id for item in page.items]
        assert len(page.items) <= query.limit
        if not page.has_more or not page.items:
            return seen
        query = ListQuery(query.model, query.metadata, page.items[-1].id, query.limit, query.order)


@pytest.mark.parametrize("limit", [1, 2, 4, 6, 100])
@pytest.mark.parametrize(
    ("model", "metadata", "expected"),
    [
        (None, (), ASCENDING),
        ("gpt-4o-mini", (), ["chatcmpl-f", "chatcmpl-c", "chatcmpl-d", "chatcmpl-e"]),
        ("gpt-4.1-2024-07-18", (), ["chatcmpl-a", "chatcmpl-b"]),  # the model that answered matches too
        (None, (("team", "red"),), ["chatcmpl-f", "chatcmpl-c", "chatcmpl-b", "chatcmpl-e"]),
        (None, (("team", "red"), ("env", "prod")), ["chatcmpl-f", "chatcmpl-b", "chatcmpl-e"]),
        ("gpt-4o-mini", (("team", "red"), ("env", "prod")), ["chatcmpl-f", "chatcmpl-e"]),
        (None, (("team", "red"), ("team", "blue")), []),
        ("o3", (), []),
    ],
)
def test_pages_walk_every_match_once_in_either_order(
    model: str | None, metadata: tuple[tuple[str, str], ...], expected: list[str], limit: int
) -> None:
    index = sample_index()
    assert walk(index, ListQuery(model, metadata, limit=limit), Changes()) == expected
    assert walk(index, ListQuery(model, metadata, limit=limit, order="desc"), Changes()) == expected[::-1]


def test_deleted_completions_are_skipped_and_still_work_as_a_cursor() -> None:
    index = sample_index()
    changes = Changes(deleted=frozenset({"chatcmpl-c"}))
    assert walk(index, ListQuery(limit=2), changes) == [i for i in ASCENDING if i != "chatcmpl-c"]
    page = index.page(ListQuery(after="chatcmpl-c", limit=2), changes)
    assert [item.id for item in page.items] == ["chatcmpl-b", "chatcmpl-d"]
    assert index.find("chatcmpl-c", changes) is None


def test_updated_metadata_replaces_the_recorded_one_in_filters() -> None:
    index = sample_index()
    changes = Changes(metadata={"chatcmpl-a": {"team": "red", "env": "prod"}, "chatcmpl-e": {}})
    query = ListQuery(metadata=(("team", "red"), ("env", "prod")))
    assert walk(index, query, changes) == ["chatcmpl-f", "chatcmpl-a", "chatcmpl-b"]


def test_an_unknown_cursor_is_a_400_naming_after() -> None:
    with pytest.raises(StoredError) as caught:
        sample_index().page(ListQuery(after="chatcmpl-zzz"), Changes())
    assert (caught.value.status, caught.value.param) == (400, "after")


def test_a_new_recording_joins_the_order() -> None:
    index = sample_index()
    assert index.page(ListQuery(limit=1), Changes()).items[0].id == "chatcmpl-f"
    index.add(recording("chatcmpl-0", 1), None)
    assert index.page(ListQuery(limit=1), Changes()).items[0].id == "chatcmpl-0"


# --- the query, the metadata, the update body ------------------------------------------------------------


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        ([], ListQuery()),
        ([("limit", "1")], ListQuery(limit=1)),
        ([("limit", "100")], ListQuery(limit=100)),
        ([("order", "desc")], ListQuery(order="desc")),
        ([("after", "chatcmpl-1")], ListQuery(after="chatcmpl-1")),
        ([("model", "gpt-4o")], ListQuery(model="gpt-4o")),
        ([("metadata[team]", "a b"), ("metadata[x]", "")], ListQuery(metadata=(("team", "a b"), ("x", "")))),
        ([("metadata[a[b]]", "1")], ListQuery(metadata=(("a[b]", "1"),))),
        ([("unknown", "1"), ("metadata", "x")], ListQuery()),
    ],
)
def test_list_query(pairs: list[tuple[str, str]], expected: ListQuery) -> None:
    assert parse_list_query(pairs) == expected


def test_messages_query_has_no_filters() -> None:
    assert parse_list_query([("model", "m"), ("metadata[a]", "b"), ("limit", "3")], filters=False) == ListQuery(limit=3)


@pytest.mark.parametrize(
    ("pairs", "param", "code"),
    [
        ([("limit", "0")], "limit", "integer_below_min_value"),
        ([("limit", "-5")], "limit", "integer_below_min_value"),
        ([("limit", "101")], "limit", "integer_above_max_value"),
        ([("limit", "ten")], "limit", "invalid_type"),
        ([("order", "up")], "order", "invalid_value"),
    ],
)
def test_bad_list_query_is_a_400(pairs: list[tuple[str, str]], param: str, code: str) -> None:
    with pytest.raises(StoredError) as caught:
        parse_list_query(pairs)
    assert (caught.value.status, caught.value.param, caught.value.code) == (400, param, code)


SIXTEEN = {f"k{i}": "v" for i in range(16)}


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({}, {}),
        (None, {}),
        (SIXTEEN, SIXTEEN),
        ({"k" * MAX_METADATA_KEY: "v" * MAX_METADATA_VALUE}, {"k" * MAX_METADATA_KEY: "v" * MAX_METADATA_VALUE}),
    ],
)
def test_metadata_within_the_limits(metadata: Any, expected: dict[str, str]) -> None:
    assert check_metadata(metadata) == expected


@pytest.mark.parametrize(
    ("metadata", "param", "code"),
    [
        ({**SIXTEEN, "k16": "v"}, "metadata", "object_above_max_properties"),
        ({"k" * (MAX_METADATA_KEY + 1): "v"}, "metadata", "string_above_max_length"),
        ({"k": "v" * (MAX_METADATA_VALUE + 1)}, "metadata.k", "string_above_max_length"),
        ({"k": 1}, "metadata.k", "invalid_type"),
        ({"k": None}, "metadata.k", "invalid_type"),
        (["k", "v"], "metadata", "invalid_type"),
        ("k=v", "metadata", "invalid_type"),
    ],
)
def test_metadata_beyond_the_limits_is_a_400(metadata: Any, param: str, code: str) -> None:
    with pytest.raises(StoredError) as caught:
        check_metadata(metadata)
    assert (caught.value.status, caught.value.param, caught.value.code) == (400, param, code)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", "invalid_type"),
        (b"{not json", "invalid_json"),
        (b"[1]", "invalid_type"),
        (b"{}", "missing_required_parameter"),
        (b'{"metadata": {}, "model": "x"}', "unknown_parameter"),
    ],
)
def test_bad_update_body_is_a_400(body: bytes, code: str) -> None:
    with pytest.raises(StoredError) as caught:
        parse_update(body)
    assert (caught.value.status, caught.value.code) == (400, code)


def test_update_body_gives_the_new_metadata() -> None:
    assert parse_update(b'{"metadata": {"team": "b"}}') == {"team": "b"}
    assert parse_update(b'{"metadata": null}') == {}


# --- messages ------------------------------------------------------------------------------------------------


def with_messages(count: int) -> Any:
    body = {"model": "m", "store": True, "messages": [{"role": "user", "content": str(i)} for i in range(count)]}
    completion = stored_completion(recording("chatcmpl-9", request_body=body), None)
    assert completion is not None
    return completion


@pytest.mark.parametrize(
    ("query", "indexes", "has_more"),
    [
        (ListQuery(), [0, 1, 2, 3, 4], False),
        (ListQuery(limit=2), [0, 1], True),
        (ListQuery(limit=2, after="chatcmpl-9-1"), [2, 3], True),
        (ListQuery(limit=2, after="chatcmpl-9-3"), [4], False),
        (ListQuery(after="chatcmpl-9-4"), [], False),
        (ListQuery(limit=2, order="desc"), [4, 3], True),
        (ListQuery(limit=2, order="desc", after="chatcmpl-9-3"), [2, 1], True),
        (ListQuery(order="desc", after="chatcmpl-9-1"), [0], False),
    ],
)
def test_message_pages(query: ListQuery, indexes: list[int], has_more: bool) -> None:
    page = message_page(with_messages(5), query)
    assert [index for index, _ in page.items] == indexes
    assert page.has_more == has_more


@pytest.mark.parametrize("after", ["chatcmpl-8-1", "chatcmpl-9-5", "chatcmpl-9-x", "1"])
def test_a_message_cursor_from_elsewhere_is_a_400(after: str) -> None:
    with pytest.raises(StoredError) as caught:
        message_page(with_messages(5), ListQuery(after=after))
    assert caught.value.param == "after"


@pytest.mark.parametrize(
    ("message", "content", "parts"),
    [
        ({"role": "user", "content": "hi"}, "hi", None),
        ({"role": "assistant", "content": None, "tool_calls": [{"id": "t"}]}, None, None),
        (
            {
                "role": "user",
                "content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "u"}}],
            },
            "a",
            [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "u"}}],
        ),
        (
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "u"}}]},
            None,
            [{"type": "image_url", "image_url": {"url": "u"}}],
        ),
    ],
)
def test_store_message_carries_id_content_and_parts(message: dict[str, Any], content: Any, parts: Any) -> None:
    dumped = store_message("chatcmpl-9", 3, message).model_dump(exclude_unset=True)
    assert dumped["id"] == "chatcmpl-9-3"
    assert dumped["role"] == message["role"]
    assert dumped["content"] == content
    assert dumped["content_parts"] == parts
    for key in message.keys() - {"content"}:
        assert dumped[key] == message[key]  # the rest of the message is kept as sent


# --- the served completion ------------------------------------------------------------------------------------


def test_served_completion_has_its_metadata_and_the_echoed_request_fields() -> None:
    body = {"model": "m", "store": True, "seed": 7, "temperature": 0.2, "messages": [], "metadata": {"a": "1"}}
    completion = stored_completion(recording("chatcmpl-9", request_body=body), None)
    assert completion is not None
    served = served_completion(completion, {"a": "2"}).model_dump(exclude_unset=True)
    assert served["metadata"] == {"a": "2"}
    assert (served["seed"], served["temperature"]) == (7, 0.2)
    assert served["choices"][0]["message"]["content"] == "answer chatcmpl-9"
    assert "messages" not in served


def test_a_list_page_always_has_its_five_fields() -> None:
    assert completion_list([], False).model_dump(exclude_unset=True) == {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": False,
    }
