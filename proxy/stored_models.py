"""The objects the stored Chat Completions API answers with, as pydantic models, and how they are built.  (pure)

Fields follow the API reference (and openai-python's `ChatCompletionStoreMessage`, `ChatCompletionDeleted`,
`CursorPage`): a list page has all five of `object`, `data`, `first_id`, `last_id`, `has_more`; a store message
is an input message of the original request with its `id` (`<completion id>-<index>`) and `content_parts`.
Like the completion models in models.py they accept and keep keys they don't declare.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from proxy.models import ChatCompletion, Lenient
from proxy.stored import StoredCompletion

__all__ = [
    "ECHOED_REQUEST_FIELDS",
    "ChatCompletionDeleted",
    "ChatCompletionList",
    "ContentPart",
    "StoreMessage",
    "StoreMessageList",
    "completion_list",
    "message_list",
    "served_completion",
    "store_message",
]

# Request parameters the reference's stored completions echo, when the request had them.
ECHOED_REQUEST_FIELDS = (
    "seed",
    "temperature",
    "top_p",
    "presence_penalty",
    "frequency_penalty",
    "tools",
    "tool_choice",
    "response_format",
)


class ContentPart(Lenient):
    """A part of a message's content: `text`, `image_url`, `input_audio` or `file`, kept as sent."""

    type: str | None = None


class StoreMessage(Lenient):
    """An input message of a stored completion. Fields of the message we don't declare (`name`,
    `tool_calls`, `tool_call_id`, ...) are kept as they were sent."""

    id: str
    role: str | None
    content: str | None
    content_parts: list[ContentPart] | None


class _List(BaseModel):
    model_config = ConfigDict(extra="forbid")

    object: Literal["list"]
    first_id: str | None
    last_id: str | None
    has_more: bool


class ChatCompletionList(_List):
    data: list[ChatCompletion]


class StoreMessageList(_List):
    data: list[StoreMessage]


class ChatCompletionDeleted(BaseModel):
    model_config = ConfigDict(extra="forbid")

    object: Literal["chat.completion.deleted"]
    id: str
    deleted: bool


def served_completion(completion: StoredCompletion, metadata: Mapping[str, str]) -> ChatCompletion:
    """The completion as the API returns it: the recorded one (the reassembled one for a stream), the request
    parameters the reference echoes, and its current metadata. Its body must have been read."""
    assert completion.body is not None, "read the recording's body first"
    data = dict(completion.body)
    for name in ECHOED_REQUEST_FIELDS:
        if name in completion.request and name not in data:
            data[name] = completion.request[name]
    data["metadata"] = dict(metadata)
    return ChatCompletion.model_validate(data)


def completion_list(completions: list[ChatCompletion], has_more: bool) -> ChatCompletionList:
    return ChatCompletionList.model_validate(
        {
            "object": "list",
            "data": completions,
            "first_id": completions[0].id if completions else None,
            "last_id": completions[-1].id if completions else None,
            "has_more": has_more,
        }
    )


def store_message(completion_id: str, index: int, message: Any) -> StoreMessage:
    """An input message as the messages endpoint returns it. A string content stays the content and
    `content_parts` is null; an array of parts becomes `content_parts`, and `content` is the text of its
    text parts joined by newlines (null when it has none)."""
    fields: dict[str, Any] = dict(message) if isinstance(message, dict) else {}
    content = fields.pop("content", None)
    parts: list[Any] | None = None
    if isinstance(content, list):
        parts = content
        texts = [p["text"] for p in content if isinstance(p, dict) and p.get("type") == "text" and "text" in p]
        content = "\n".join(texts) if texts else None
    elif content is not None and not isinstance(content, str):
        content = None
    fields.update(id=f"{completion_id}-{index}", role=fields.get("role"), content=content, content_parts=parts)
    return StoreMessage.model_validate(fields)


def message_list(messages: list[StoreMessage], has_more: bool) -> StoreMessageList:
    return StoreMessageList.model_validate(
        {
            "object": "list",
            "data": messages,
            "first_id": messages[0].id if messages else None,
            "last_id": messages[-1].id if messages else None,
            "has_more": has_more,
        }
    )
