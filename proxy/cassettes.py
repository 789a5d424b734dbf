"""Cassette files: one indented JSON file per interaction, written atomically, read back leniently.

Files are named so a person can find them: `YYYYMMDD/HHMMSSfff-<endpoint>-<model>-<hash>.json` under the
cassette directory. Writes go to a temporary file in the same directory and are renamed into place, so a
crashed or killed proxy never leaves a half-written cassette behind. They are not fsynced one by one (nor are
VCR.py's or mitmproxy's): a power cut may lose the last seconds of recordings, and a sync per file cost more
CPU than everything else the recording worker does for a short answer.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import to_json

from proxy.cassette_versions import upgrade
from proxy.interaction import CASSETTE_VERSION, HeaderList, Interaction, Metadata, Outcome, RecordedRequest

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class CassetteError(Exception):
    """A cassette file that cannot be used; the message names the reason."""


@dataclass(frozen=True, slots=True)
class BadCassette:
    path: Path
    reason: str


def _slug(text: str, limit: int = 40) -> str:
    slug = _UNSAFE.sub("-", text).strip("-.")
    return slug[:limit] or "x"


def relative_path(interaction: Interaction) -> Path:
    """Where a cassette lives under the cassette directory: day folder, then a readable name with the model
    that was asked for and, when another one answered, that one too (`gpt-4o-mini--gpt-4o-mini-2024-07-18`)."""
    stamp = interaction.metadata.recorded_at  # ISO 8601, UTC
    day = stamp[0:10].replace("-", "")
    clock = stamp[11:23].replace(":", "").replace(".", "")
    endpoint = _slug(interaction.request.path.removeprefix("/v1/").replace("/", "-"), 30)
    asked, answered = interaction.requested_model, interaction.model
    model = _slug(asked or answered or "no-model", 40)
    if answered and asked and answered != asked:
        model = f"{model}--{_slug(answered, 40)}"
    return Path(day) / f"{clock}-{endpoint}-{model}-{interaction.id[-8:]}.json"


def dumps(interaction: Interaction) -> str:
    """Indented JSON for people: short lists of scalars (header pairs) stay on one line, and so does each SSE
    event, compact as on the wire, so a re-recorded stream diffs event by event. A regex pass folds the short
    lists (JSON strings hold no raw newline, and a list whose items hold brackets or braces is left as it is),
    and the events, set aside under a marker no JSON value can equal, go back in one per line.
    pydantic-core does the serializing, in Rust: with an indent, json.dumps runs its pure-Python encoder,
    which took most of the worker's time for a short answer, and per event it is about four times faster."""
    events = interaction.response.events
    data = interaction.model_dump(mode="json", by_alias=True, exclude_none=True, exclude=_EVENTS)
    marker = f"@events-{uuid.uuid4().hex}@"
    if events:
        data["response"] = _with_events_at_their_place(data["response"], marker)
    text = _SHORT_LIST.sub(_fold, to_json(data, indent=2).decode("utf-8"))
    if events:
        lines = ",\n      ".join(to_json(event, by_alias=True, exclude_none=True).decode("utf-8") for event in events)
        text = text.replace(f'"{marker}"', "[\n      " + lines + "\n    ]", 1)
    return text + "\n"


_EVENTS: Any = {"response": {"events"}}


def _with_events_at_their_place(response: dict[str, Any], value: str) -> dict[str, Any]:
    """The response with `events` back where the model declares it, right after `stream`."""
    placed: dict[str, Any] = {}
    for key, item in response.items():
        placed[key] = item
        if key == "stream":
            placed["events"] = value
    return placed


_SHORT_LIST = re.compile(r"\[\n\s+([^\[\]{}\n]+(?:,\n\s+[^\[\]{}\n]+){0,3})\n\s*\]")


def _fold(match: re.Match[str]) -> str:
    return "[" + ", ".join(item.strip() for item in match.group(1).split(",\n")) + "]"


_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


def write_cassette(directory: Path, interaction: Interaction) -> Path:
    """Write atomically and return the final path. Blocking: call it off the event loop."""
    target = directory / relative_path(interaction)
    data = dumps(interaction).encode("utf-8")
    # The interaction id is unique, so is the temporary name; its folder is made only when it is missing.
    temporary = target.parent / f".tmp-{interaction.id}.json"
    try:
        fd = os.open(temporary, _NEW_FILE, 0o666)
    except FileNotFoundError:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(temporary, _NEW_FILE, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return target


def load_cassette(path: Path) -> Interaction:
    """Read one cassette; raise CassetteError naming the reason when it can't be used."""
    return _load(path, Interaction)


def _load(path: Path, model: type[_Loaded]) -> _Loaded:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CassetteError(f"cannot read: {exc.strerror or exc}") from None
    try:
        # One pass in pydantic-core (parse and validate together) is about twice as fast as json.loads
        # followed by model_validate; it matters when replay indexes tens of thousands of cassettes.
        loaded = model.model_validate_json(raw)
    except ValidationError as exc:
        upgraded = _upgraded(raw)
        if upgraded is None:
            raise _explain(raw, exc) from None
        return _validate(upgraded, model)
    if loaded.version != CASSETTE_VERSION:
        upgraded = _upgraded(raw)
        if upgraded is None:
            raise CassetteError(_version_message(loaded.version))
        return _validate(upgraded, model)
    return loaded


def _upgraded(raw: bytes) -> dict[str, Any] | None:
    """An older cassette converted to the current version; None when it is not one (or not JSON at all)."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or data.get("version") == CASSETTE_VERSION:
        return None
    return upgrade(data, CASSETTE_VERSION)


def _validate(data: dict[str, Any], model: type[_Loaded]) -> _Loaded:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise CassetteError(f"missing or invalid {where}: {first['msg']}") from None


class CompletionHead(BaseModel):
    """The fields of a recorded chat completion that the stored-completions index sorts and filters on.
    Typed loosely so that any JSON object validates (a body that is not a completion is not a bad cassette);
    the reader checks the types."""

    model_config = ConfigDict(extra="ignore")
    id: Any = None
    object: Any = None
    created: Any = None
    model: Any = None


class _BodyHead(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    # A JSON object body is read only for the completion's few head fields; any other JSON value is kept as is.
    json_: CompletionHead | Any = Field(default=None, alias="json", union_mode="left_to_right")


class _ResponseHead(BaseModel):
    model_config = ConfigDict(extra="ignore")
    status: int
    headers: HeaderList = Field(default_factory=list)
    body: _BodyHead = Field(default_factory=_BodyHead)
    completion: CompletionHead | None = None  # of a reassembled stream

    @property
    def completion_head(self) -> CompletionHead | None:
        """The head of the chat completion this response carries, for a plain or a streamed answer."""
        if self.completion is not None:
            return self.completion
        return self.body.json_ if isinstance(self.body.json_, CompletionHead) else None


class CassetteHead(BaseModel):
    """What replay needs to index a cassette: everything but the response body and events, which are read
    (and fully validated) only when the recording is first replayed. Indexing 10,000 streams stays fast."""

    model_config = ConfigDict(extra="ignore")
    version: int
    id: str
    metadata: Metadata
    request: RecordedRequest
    response: _ResponseHead
    outcome: Outcome = Field(default_factory=Outcome)


def head_of(interaction: Interaction) -> CassetteHead:
    """The index's view of an interaction just recorded; its full file is read on first replay."""
    return CassetteHead(
        version=interaction.version,
        id=interaction.id,
        metadata=interaction.metadata,
        request=interaction.request,
        response=_ResponseHead.model_validate(
            {
                "status": interaction.response.status,
                "headers": interaction.response.headers,
                "body": {"json": _head_fields(interaction.response.body.json_)},
                "completion": _head_fields(interaction.response.completion),
            }
        ),
        outcome=interaction.outcome,
    )


def _head_fields(value: Any) -> Any:
    """Only what a head keeps of a JSON body: the completion's head fields of an object, nothing of the rest."""
    if not isinstance(value, dict):
        return None
    return {key: value[key] for key in ("id", "object", "created", "model") if key in value}


def load_head(path: Path) -> CassetteHead:
    """Like load_cassette, for the parts an index needs; raise CassetteError naming the reason."""
    return _load(path, CassetteHead)


_Loaded = TypeVar("_Loaded", Interaction, CassetteHead)


def _version_message(version: object) -> str:
    return f"unknown format version {version!r} (this proxy reads versions 1 to {CASSETTE_VERSION})"


def _explain(raw: bytes, exc: ValidationError) -> CassetteError:
    """The most useful reason for a file that failed: not JSON, then the version, then the missing part."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        return CassetteError(f"not valid JSON: {error}")
    if not isinstance(data, dict):
        return CassetteError("not a JSON object")
    if data.get("version") != CASSETTE_VERSION:
        return CassetteError(_version_message(data.get("version")))
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return CassetteError(f"missing or invalid {where}: {first['msg']}")


def iter_cassette_paths(directory: Path) -> Iterator[Path]:
    """Every cassette file under directory, recursively, in a stable (sorted) order."""
    paths = [p for p in directory.rglob("*.json") if not p.name.startswith(".")]
    yield from sorted(paths)
