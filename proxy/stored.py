"""The stored chat completions: which recordings count, their order, and cursor pages over them.  (pure)

A recording is a stored completion when it is a chat completion the upstream answered (`POST
/v1/chat/completions`, status 200, a complete answer) whose request said `store: true`, as the real API
decides; `store_all` counts every such recording, for browsing. Each is known by its completion id; when
several recordings carry the same id, the one recorded last is kept.

Lists are ordered by `created`, then by when the recording was made, then by id: a total order, so any item's
id is a cursor (`after`) that starts the next page exactly after it, in either direction. Updates and deletes
are not here: they come in as `Changes` (see stored_overlay.py), applied on top at every read.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from proxy.cassettes import CassetteHead
from proxy.interaction import Interaction
from proxy.stored_query import ListQuery, StoredError

__all__ = [
    "NO_CHANGES",
    "Changes",
    "MessagePage",
    "Page",
    "StoredCompletion",
    "StoredIndex",
    "message_page",
    "stored_completion",
]

CHAT_COMPLETIONS = "/v1/chat/completions"


@dataclass(frozen=True, slots=True)
class Changes:
    """Updates and deletes made through the API: new metadata by completion id, and the deleted ids."""

    metadata: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    deleted: frozenset[str] = frozenset()


NO_CHANGES = Changes()


@dataclass(slots=True)
class StoredCompletion:
    id: str
    created: int
    recorded_at: str
    models: tuple[str, ...]  # the model that answered, and the one asked for
    metadata: dict[str, str]  # as the request set it
    request: dict[str, Any]  # the request body
    path: Path | None
    stored: bool  # the request said store: true
    body: dict[str, Any] | None = None  # the completion as recorded; read from `path` on first use

    @property
    def key(self) -> tuple[int, str, str]:
        return (self.created, self.recorded_at, self.id)

    def metadata_with(self, changes: Changes) -> Mapping[str, str]:
        return changes.metadata.get(self.id, self.metadata)

    @property
    def messages(self) -> list[Any]:
        messages = self.request.get("messages")
        return messages if isinstance(messages, list) else []


def stored_completion(record: Interaction | CassetteHead, path: Path | None) -> StoredCompletion | None:
    """The chat completion a recording holds, or None when it holds none (another endpoint, an error, a stream
    cut short, a request that is not a JSON object with messages)."""
    request, response = record.request, record.response
    if request.method != "POST" or request.path.rstrip("/") != CHAT_COMPLETIONS:
        return None
    if response.status != 200 or not record.outcome.complete:
        return None
    asked = request.body.json_
    if not isinstance(asked, dict) or not isinstance(asked.get("messages"), list):
        return None
    body: dict[str, Any] | None = None
    if isinstance(record, Interaction):
        answer = response.completion if response.completion is not None else response.body.json_
        if not isinstance(answer, dict):
            return None
        body = answer
        head: Mapping[str, Any] = answer
    else:
        found = record.response.completion_head
        if found is None:
            return None
        head = found.model_dump()
    completion_id, created, model = head.get("id"), head.get("created"), head.get("model")
    if not isinstance(completion_id, str) or not completion_id or not isinstance(created, int):
        return None
    asked_model = asked.get("model")
    models = tuple(m for m in (model, asked_model) if isinstance(m, str))
    metadata = asked.get("metadata")
    return StoredCompletion(
        id=completion_id,
        created=created,
        recorded_at=record.metadata.recorded_at,
        models=models,
        metadata={k: v for k, v in metadata.items() if isinstance(v, str)} if isinstance(metadata, dict) else {},
        request=asked,
        path=path,
        stored=asked.get("store") is True,
        body=body,
    )


@dataclass(frozen=True, slots=True)
class Page:
    items: list[StoredCompletion]
    has_more: bool


@dataclass(frozen=True, slots=True)
class MessagePage:
    items: list[tuple[int, Any]]  # (index in the request's messages, the message)
    has_more: bool


class StoredIndex:
    """The stored completions by id, sorted on demand (once after each batch of additions)."""

    def __init__(self, *, store_all: bool = False) -> None:
        self.store_all = store_all
        self._by_id: dict[str, StoredCompletion] = {}
        self._sorted: list[StoredCompletion] | None = None
        self._keys: list[tuple[int, str, str]] = []

    def __len__(self) -> int:
        return len(self._by_id)

    def add(self, record: Interaction | CassetteHead, path: Path | None) -> None:
        completion = stored_completion(record, path)
        if completion is None or not (completion.stored or self.store_all):
            return
        known = self._by_id.get(completion.id)
        if known is not None and known.recorded_at > completion.recorded_at:
            return
        self._by_id[completion.id] = completion
        self._sorted = None

    def find(self, completion_id: str, changes: Changes) -> StoredCompletion | None:
        """A stored completion that exists and has not been deleted."""
        if completion_id in changes.deleted:
            return None
        return self._by_id.get(completion_id)

    def _order(self) -> list[StoredCompletion]:
        if self._sorted is None:
            self._sorted = sorted(self._by_id.values(), key=lambda c: c.key)
            self._keys = [c.key for c in self._sorted]
        return self._sorted

    def page(self, query: ListQuery, changes: Changes) -> Page:
        """One page of the completions that pass the filters, in the query's order, after its cursor."""
        ordered = self._order()
        ascending = query.order == "asc"
        if query.after is None:
            start = 0 if ascending else len(ordered) - 1
        else:
            cursor = self._by_id.get(query.after)  # a deleted one still knows its place
            if cursor is None:
                raise StoredError(
                    400, f"Invalid 'after': no stored chat completion with id {query.after!r}.", param="after"
                )
            start = bisect_right(self._keys, cursor.key) if ascending else bisect_left(self._keys, cursor.key) - 1
        step = 1 if ascending else -1
        wanted = query.limit + 1  # one more than the page, to know whether there is more
        found: list[StoredCompletion] = []
        position = start
        while 0 <= position < len(ordered) and len(found) < wanted:
            completion = ordered[position]
            position += step
            if completion.id in changes.deleted:
                continue
            if query.model is not None and query.model not in completion.models:
                continue
            if query.metadata:
                metadata = completion.metadata_with(changes)
                if any(metadata.get(key) != value for key, value in query.metadata):
                    continue
            found.append(completion)
        return Page(found[: query.limit], len(found) > query.limit)


def message_page(completion: StoredCompletion, query: ListQuery) -> MessagePage:
    """One page of a stored completion's input messages. A message's id is `<completion id>-<index>`."""
    messages = completion.messages
    indexes = list(range(len(messages)))
    if query.order == "desc":
        indexes.reverse()
    if query.after is not None:
        prefix = f"{completion.id}-"
        number = query.after.removeprefix(prefix)
        if not query.after.startswith(prefix) or not number.isdigit() or int(number) >= len(messages):
            raise StoredError(
                400,
                f"Invalid 'after': no message with id {query.after!r} in chat completion {completion.id!r}.",
                param="after",
            )
        indexes = indexes[indexes.index(int(number)) + 1 :]
    chosen = indexes[: query.limit]
    return MessagePage([(i, messages[i]) for i in chosen], len(indexes) > query.limit)
