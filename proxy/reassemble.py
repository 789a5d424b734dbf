"""Fold a stream of `chat.completion.chunk` objects back into the `chat.completion` it stands for.

Pure and dict based: chunks are the plain JSON objects of the stream, so keys we don't know survive
without a model that names them. The result matches openai-python's own stream accumulator for
streams shaped as OpenAI sends them, and stays sane for OpenAI-compatible servers that repeat the role
or the tool call id on every chunk (where naive accumulation gives "assistantassistant").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ChunkAccumulator", "Reassembly", "reassemble"]

# Keys whose string fragments are appended; every other string keeps its first non-empty value.
# `reasoning_content` / `reasoning` are what DeepSeek, vLLM and OpenRouter stream their thinking in.
_MESSAGE_CONCAT = frozenset({"content", "refusal", "reasoning_content", "reasoning"})
_FUNCTION_CONCAT = frozenset({"arguments"})
_AUDIO_CONCAT = frozenset({"data", "transcript"})
# Objects inside a delta merged key by key rather than replaced, with their own concatenated keys.
_MESSAGE_NESTED = {"function_call": _FUNCTION_CONCAT, "audio": _AUDIO_CONCAT}
_TOOL_NESTED = {"function": _FUNCTION_CONCAT}
_DROPPED = frozenset({"obfuscation"})
_MESSAGE_SKIP = _DROPPED | {"tool_calls"}  # merged per tool call, by index
_TOOL_SKIP = _DROPPED | {"index"}
_CHUNK_KNOWN = frozenset({"id", "object", "created", "model", "choices", "usage", *_DROPPED})
# Top-level fields whose last non-null value wins; `moderation` arrives on one late chunk.
_CHUNK_LAST = ("model", "service_tier", "system_fingerprint", "moderation")
_CHOICE_KNOWN = frozenset({"index", "delta", "finish_reason", "logprobs"})


@dataclass
class Reassembly:
    completion: dict[str, Any] | None  # the ChatCompletion as a JSON-able dict; None if no chunk was seen
    chunk_count: int
    usage_seen: bool  # some chunk carried a non-null usage
    id_changed: bool  # a later chunk had a different non-empty id than the first
    notes: list[str]  # human-readable anomalies (id change, chunk not an object, ...)


class _Merged:
    """Successive fragments of one JSON object, merged by the rules of `reassemble`."""

    __slots__ = ("_concat", "_nested", "_parts", "_skip", "_values")

    def __init__(self, concat: frozenset[str], nested: Mapping[str, frozenset[str]], skip: frozenset[str]) -> None:
        self._concat, self._nested, self._skip = concat, nested, skip
        self._values: dict[str, Any] = {}  # also fixes the output order of keys
        self._parts: dict[str, list[str]] = {}  # appended, joined only on dump

    def merge(self, fragment: Mapping[str, Any]) -> None:
        values = self._values
        for key, value in fragment.items():
            if value is None or key in self._skip:
                continue
            if key in self._concat and isinstance(value, str):
                parts = self._parts.get(key)
                if parts is None:
                    self._parts[key] = [value]
                    values.setdefault(key, None)
                else:
                    parts.append(value)
            elif key in self._nested and isinstance(value, dict):
                child = values.get(key)
                if not isinstance(child, _Merged):
                    child = values[key] = _Merged(self._nested[key], {}, _DROPPED)
                child.merge(value)
            elif isinstance(value, str):
                # Role, ids, names and unknown strings: the first value counts, repeats are echoes.
                if values.get(key) in (None, ""):
                    values[key] = value
            else:
                values[key] = value

    def get(self, key: str) -> Any:
        return self._values.get(key)

    def dump(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in self._values.items():
            parts = self._parts.get(key)
            if parts is not None:
                out[key] = "".join(parts)
            else:
                out[key] = value.dump() if isinstance(value, _Merged) else value
        return out


class _Choice:
    __slots__ = ("extra", "finish_reason", "logprobs", "message", "tools")

    def __init__(self) -> None:
        self.message = _Merged(_MESSAGE_CONCAT, _MESSAGE_NESTED, _MESSAGE_SKIP)
        self.tools: dict[int, _Merged] = {}
        self.finish_reason: Any = None
        self.logprobs: dict[str, Any] | None = None
        self.extra: dict[str, Any] = {}

    def add_logprobs(self, logprobs: Mapping[str, Any]) -> None:
        # As openai-python: the first logprobs object sets the lists (an empty one too), later ones extend.
        first = self.logprobs is None
        if self.logprobs is None:
            self.logprobs = {"content": None, "refusal": None}
        for key, value in logprobs.items():
            if not isinstance(value, list):
                if value is not None:
                    self.logprobs[key] = value
            elif value or first:
                current = self.logprobs.get(key)
                if isinstance(current, list):
                    current.extend(value)
                else:
                    self.logprobs[key] = list(value)  # our own list: we extend it

    def dump(self, index: int) -> dict[str, Any]:
        fields = self.message.dump()
        message = {
            "role": fields.pop("role", "assistant"),
            "content": fields.pop("content", None),
            "refusal": fields.pop("refusal", None),
        }
        if self.tools:
            message["tool_calls"] = [_dump_tool(self.tools[i]) for i in sorted(self.tools)]
        message.update(fields)
        # Copies, as the accumulator may go on extending its lists after this snapshot.
        logprobs = self.logprobs and {k: list(v) if isinstance(v, list) else v for k, v in self.logprobs.items()}
        out = {"index": index, "message": message, "finish_reason": self.finish_reason, "logprobs": logprobs}
        out.update(self.extra)
        return out


def _dump_tool(tool: _Merged) -> dict[str, Any]:
    fields = tool.dump()
    # A ChatCompletion tool call has id and type first; some servers never send the type.
    tool_type = fields.pop("type", None) or ("function" if "function" in fields else None)
    head = {"id": fields.pop("id", None), "type": tool_type}
    return {**{k: v for k, v in head.items() if v is not None}, **fields}


class ChunkAccumulator:
    """Folds chunks one at a time; `result()` may be called at any point and does not consume."""

    def __init__(self) -> None:
        self._count = 0
        self._id: Any = None
        self._created: Any = None
        self._last: dict[str, Any] = {}  # _CHUNK_LAST fields and unknown top-level keys
        self._usage: Any = None
        self._choices: dict[int, _Choice] = {}
        self._other_ids = 0
        self._first_other_id: Any = None
        self._notes: dict[str, int] = {}  # note -> how often, so a bad stream gives one line per problem

    def _note(self, note: str) -> None:
        self._notes[note] = self._notes.get(note, 0) + 1

    def add(self, chunk: dict[str, Any]) -> None:
        if not isinstance(chunk, dict):
            self._note(f"skipped a chunk that is not a JSON object ({type(chunk).__name__})")
            return
        self._count += 1
        chunk_id = chunk.get("id")
        if self._id is None:
            self._id = chunk_id or None
        elif chunk_id and chunk_id != self._id:
            self._other_ids += 1
            if self._first_other_id is None:
                self._first_other_id = (self._count, chunk_id)
        if self._created is None:
            self._created = chunk.get("created")
        for key, value in chunk.items():
            if key in _CHUNK_LAST:
                if value is not None:
                    self._last[key] = value
            elif key not in _CHUNK_KNOWN:
                self._last[key] = value  # unknown top-level keys: the last value, null too
        if chunk.get("usage") is not None:
            self._usage = chunk["usage"]
        choices = chunk.get("choices")
        if choices is None:
            return
        if not isinstance(choices, list):
            self._note("a chunk's choices is not a list")
            return
        for choice in choices:
            if isinstance(choice, dict):
                self._add_choice(choice)
            else:
                self._note("skipped a choice that is not a JSON object")

    def _add_choice(self, choice: dict[str, Any]) -> None:
        index = choice.get("index")
        if not isinstance(index, int):
            self._note("a choice without an integer index was taken as index 0")
            index = 0
        state = self._choices.get(index)
        if state is None:
            state = self._choices[index] = _Choice()
        delta = choice.get("delta")
        if isinstance(delta, dict):
            state.message.merge(delta)
            tool_calls = delta.get("tool_calls")
            if isinstance(tool_calls, list):
                for tool_call in tool_calls:
                    if isinstance(tool_call, dict):
                        self._add_tool_call(state, tool_call)
                    else:
                        self._note("skipped a tool call delta that is not a JSON object")
        elif delta is not None:
            self._note("skipped a delta that is not a JSON object")
        if choice.get("finish_reason") is not None:
            state.finish_reason = choice["finish_reason"]
        logprobs = choice.get("logprobs")
        if isinstance(logprobs, dict):
            state.add_logprobs(logprobs)
        for key, value in choice.items():
            if key not in _CHOICE_KNOWN and value is not None:
                state.extra[key] = value

    def _add_tool_call(self, state: _Choice, tool_call: dict[str, Any]) -> None:
        index = tool_call.get("index")
        if not isinstance(index, int):
            # Servers that omit the index send each call whole: a new id starts a new call.
            self._note("a tool call delta without an integer index was placed by its id")
            call_id = tool_call.get("id")
            if call_id and all(t.get("id") != call_id for t in state.tools.values()):
                index = max(state.tools, default=-1) + 1
            else:
                index = max(state.tools, default=0)
        tool = state.tools.get(index)
        if tool is None:
            tool = state.tools[index] = _Merged(frozenset(), _TOOL_NESTED, _TOOL_SKIP)
        tool.merge(tool_call)

    def result(self) -> Reassembly:
        notes = [note if n == 1 else f"{note} ({n} times)" for note, n in self._notes.items()]
        if self._first_other_id is not None:
            at, other = self._first_other_id
            changed = f"id changed mid-stream: chunk {at} has {other!r}, the first had {self._id!r}"
            notes.insert(0, f"{changed} ({self._other_ids} chunks differ)")
        if self._count == 0:
            return Reassembly(None, 0, False, False, notes)
        last = dict(self._last)
        completion: dict[str, Any] = {
            "id": self._id,
            "object": "chat.completion",
            "created": self._created,
            "model": last.pop("model", None),
            "choices": [self._choices[i].dump(i) for i in sorted(self._choices)],
            "usage": self._usage,
            "service_tier": last.pop("service_tier", None),
            "system_fingerprint": last.pop("system_fingerprint", None),
        }
        completion.update(last)
        return Reassembly(completion, self._count, self._usage is not None, self._other_ids > 0, notes)


def reassemble(chunks: Iterable[dict[str, Any]]) -> Reassembly:
    accumulator = ChunkAccumulator()
    for chunk in chunks:
        accumulator.add(chunk)
    return accumulator.result()
