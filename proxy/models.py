"""Lenient pydantic models of Chat Completions objects, the whole response and the streamed chunk.

They follow the API reference and openai-python's `openai.types.chat`, but every model allows extra
keys and nearly every field is optional: a recording proxy must accept what OpenAI adds tomorrow and
what OpenAI-compatible servers send today, and must not lose any of it when it dumps the model again.
For the same reason enumerations (role, finish_reason, tool type, service_tier) are plain strings.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Annotation",
    "AnnotationURLCitation",
    "ChatCompletion",
    "ChatCompletionAudio",
    "ChatCompletionChunk",
    "ChatCompletionMessage",
    "ChatCompletionMessageToolCall",
    "ChatCompletionTokenLogprob",
    "Choice",
    "ChoiceDelta",
    "ChoiceDeltaAudio",
    "ChoiceDeltaFunctionCall",
    "ChoiceDeltaToolCall",
    "ChoiceDeltaToolCallFunction",
    "ChoiceLogprobs",
    "ChunkChoice",
    "CompletionTokensDetails",
    "CompletionUsage",
    "CustomToolCall",
    "Function",
    "FunctionCall",
    "PromptTokensDetails",
    "TopLogprob",
]


class Lenient(BaseModel):
    """Base of every model here: unknown keys are accepted and kept on dump."""

    model_config = ConfigDict(extra="allow")


# --- usage ---------------------------------------------------------------------------------------


class PromptTokensDetails(Lenient):
    audio_tokens: int | None = None
    cached_tokens: int | None = None
    cache_write_tokens: int | None = None
    image_tokens: int | None = None
    text_tokens: int | None = None


class CompletionTokensDetails(Lenient):
    accepted_prediction_tokens: int | None = None
    audio_tokens: int | None = None
    reasoning_tokens: int | None = None
    rejected_prediction_tokens: int | None = None
    text_tokens: int | None = None


class CompletionUsage(Lenient):
    # Required by the API, optional here: some compatible servers report only part of it.
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None


# --- logprobs ------------------------------------------------------------------------------------


class TopLogprob(Lenient):
    token: str | None = None
    logprob: float | None = None
    bytes: list[int] | None = None


class ChatCompletionTokenLogprob(Lenient):
    token: str | None = None
    logprob: float | None = None
    bytes: list[int] | None = None
    top_logprobs: list[TopLogprob] = []


class ChoiceLogprobs(Lenient):
    content: list[ChatCompletionTokenLogprob] | None = None
    refusal: list[ChatCompletionTokenLogprob] | None = None


# --- the complete response -----------------------------------------------------------------------


class AnnotationURLCitation(Lenient):
    url: str | None = None
    title: str | None = None
    start_index: int | None = None
    end_index: int | None = None


class Annotation(Lenient):
    type: str | None = None  # "url_citation"
    url_citation: AnnotationURLCitation | None = None


class ChatCompletionAudio(Lenient):
    id: str | None = None
    data: str | None = None
    expires_at: int | None = None
    transcript: str | None = None


class FunctionCall(Lenient):
    """Deprecated `message.function_call`."""

    name: str | None = None
    arguments: str | None = None


class Function(Lenient):
    """The function a `type: "function"` tool call invokes."""

    name: str | None = None
    arguments: str | None = None


class CustomToolCall(Lenient):
    """The payload of a `type: "custom"` tool call."""

    name: str | None = None
    input: str | None = None


class ChatCompletionMessageToolCall(Lenient):
    """A function or a custom tool call; one model with both payloads, told apart by `type`.

    A discriminated union would reject a tool call of a type we don't know yet.
    """

    id: str | None = None
    type: str | None = None  # "function" or "custom"
    function: Function | None = None
    custom: CustomToolCall | None = None


class ChatCompletionMessage(Lenient):
    role: str | None = "assistant"
    content: str | None = None
    refusal: str | None = None
    annotations: list[Annotation] | None = None
    audio: ChatCompletionAudio | None = None
    function_call: FunctionCall | None = None
    tool_calls: list[ChatCompletionMessageToolCall] | None = None


class Choice(Lenient):
    index: int = 0
    message: ChatCompletionMessage = Field(default_factory=ChatCompletionMessage)
    finish_reason: str | None = None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletion(Lenient):
    id: str | None = None
    object: str | None = "chat.completion"
    created: int | None = None
    model: str | None = None
    choices: list[Choice] = []
    usage: CompletionUsage | None = None
    service_tier: str | None = None
    system_fingerprint: str | None = None
    # A stored completion's tags (the stored Chat Completions API serves it); absent from a create's answer.
    metadata: dict[str, str] | None = None
    # Also in the API, kept as extras: `moderation`.


# --- streaming -----------------------------------------------------------------------------------


class ChoiceDeltaFunctionCall(Lenient):
    name: str | None = None
    arguments: str | None = None


class ChoiceDeltaToolCallFunction(Lenient):
    name: str | None = None
    arguments: str | None = None


class ChoiceDeltaToolCall(Lenient):
    # `index` is what fragments of one tool call share; a few servers omit it.
    index: int | None = None
    id: str | None = None
    type: str | None = None
    function: ChoiceDeltaToolCallFunction | None = None


class ChoiceDeltaAudio(Lenient):
    """Audio arrives in parts: the id, pieces of `data` and `transcript`, and at last `expires_at`."""

    id: str | None = None
    data: str | None = None
    expires_at: int | None = None
    transcript: str | None = None


class ChoiceDelta(Lenient):
    role: str | None = None
    content: str | None = None
    refusal: str | None = None
    audio: ChoiceDeltaAudio | None = None
    function_call: ChoiceDeltaFunctionCall | None = None
    tool_calls: list[ChoiceDeltaToolCall] | None = None


class ChunkChoice(Lenient):
    index: int = 0
    delta: ChoiceDelta = Field(default_factory=ChoiceDelta)
    finish_reason: str | None = None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionChunk(Lenient):
    id: str | None = None
    object: str | None = "chat.completion.chunk"
    created: int | None = None
    model: str | None = None
    # Empty on the final usage chunk of `stream_options.include_usage`.
    choices: list[ChunkChoice] = []
    usage: CompletionUsage | None = None
    service_tier: str | None = None
    system_fingerprint: str | None = None
    # Padding against length side channels; meaningless once the stream is reassembled.
    obfuscation: str | None = None
