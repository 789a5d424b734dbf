"""The stored Chat Completions API over the recordings: five aiohttp handlers and the routes' wiring.

    GET    /v1/chat/completions                      list (model, metadata[K]=V, after, limit, order)
    GET    /v1/chat/completions/{id}                 get
    POST   /v1/chat/completions/{id}                 update the metadata
    DELETE /v1/chat/completions/{id}                 delete
    GET    /v1/chat/completions/{id}/messages        the request's input messages (after, limit, order)

The index follows the replay index (every cassette at startup, and in auto mode each new recording); updates
and deletes go to the overlay file, never to a cassette. A recording's body is read from its cassette the first
time it is served (in a thread, off the event loop), then kept. Anything refused is an OpenAI-style error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import BaseModel, ConfigDict, Field

from proxy.cassettes import CassetteError, load_cassette
from proxy.errors import error_response
from proxy.interaction import CASSETTE_VERSION
from proxy.replay import ReplayIndex
from proxy.stored import StoredCompletion, StoredIndex, message_page
from proxy.stored_models import (
    ChatCompletionDeleted,
    completion_list,
    message_list,
    served_completion,
    store_message,
)
from proxy.stored_overlay import Overlay
from proxy.stored_query import StoredError, parse_list_query, parse_update
from proxy.trafficlog import STORED as STORED_OUTCOME
from proxy.trafficlog import TRAFFIC, Exchange

__all__ = ["STORED", "StoredCompletions", "StoredSlot", "add_stored_routes", "stored_completions"]

log = logging.getLogger("proxy.stored")


@dataclass(slots=True)
class StoredCompletions:
    index: StoredIndex
    overlay: Overlay


@dataclass(slots=True)
class StoredSlot:
    """The stored completions this proxy answers from now, or None when these calls go on to `fallback` (record
    mode forwards and records them; `stored_completions = "forward"` sends them through replay matching)."""

    fallback: Handler
    current: StoredCompletions | None = None


STORED = web.AppKey("stored_completions", StoredSlot)


def stored_completions(replay_index: ReplayIndex, cassettes: Path, *, store_all: bool) -> StoredCompletions:
    """The stored completions among the recordings the replay index will hold. Call it before the index is
    loaded: the index keeps only what matching needs, so this one listens and keeps its own."""
    index = StoredIndex(store_all=store_all)
    replay_index.listeners.append(index.add)
    return StoredCompletions(index, Overlay(cassettes))


def add_stored_routes(app: web.Application, slot: StoredSlot) -> None:
    """The five routes, before the catch-all route; a create (POST /v1/chat/completions) goes to the fallback."""
    app[STORED] = slot
    app.router.add_get("/v1/chat/completions", _answered(list_completions, slot), allow_head=False)
    # The create on the same resource: the router finds it at its first try instead of after every stored route.
    app.router.add_post("/v1/chat/completions", slot.fallback)
    app.router.add_get("/v1/chat/completions/{completion_id}", _answered(get_completion, slot), allow_head=False)
    app.router.add_post("/v1/chat/completions/{completion_id}", _answered(update_completion, slot))
    app.router.add_delete("/v1/chat/completions/{completion_id}", _answered(delete_completion, slot))
    app.router.add_get(
        "/v1/chat/completions/{completion_id}/messages", _answered(list_messages, slot), allow_head=False
    )


def _answered(handler: Handler, slot: StoredSlot) -> Handler:
    """The handler when this proxy answers stored-API calls now, with the proxy's one line per request
    (outcome `stored`); else the fallback."""

    async def answered(request: web.Request) -> web.StreamResponse:
        if slot.current is None:
            return await slot.fallback(request)
        started = time.perf_counter()
        response = await handler(request)
        traffic = request.app[TRAFFIC]
        traffic.stored += 1
        if traffic.wanted():
            took = (time.perf_counter() - started) * 1000
            traffic.report(
                Exchange(STORED_OUTCOME, request.method, request.path, None, response.status, took, None), None
            )
        return response

    return answered


def _current(request: web.Request) -> StoredCompletions:
    stored = request.app[STORED].current
    assert stored is not None  # _answered checked
    return stored


def _json(model: BaseModel) -> web.Response:
    return web.Response(body=model.model_dump_json(exclude_unset=True), content_type="application/json")


def _refused(error: StoredError) -> web.Response:
    return error_response(error.status, error.message, error.type, error.code, error.param)


def _not_found(completion_id: str) -> StoredError:
    return StoredError(404, f"No chat completion found with id '{completion_id}'.", code="not_found")


async def _read_bodies(completions: list[StoredCompletion]) -> None:
    """Give each completion its recorded body, reading the cassettes that are not read yet in a thread."""
    unread = [completion for completion in completions if completion.body is None]
    if unread:
        await asyncio.to_thread(_read_bodies_blocking, unread)


class _BodyPart(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    json_: object = Field(default=None, alias="json")


class _AnswerPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    body: _BodyPart = Field(default_factory=_BodyPart)
    completion: dict[str, object] | None = None


class _CompletionFile(BaseModel):
    """What serving needs of a cassette: the answer's JSON body or reassembled completion, no events."""

    model_config = ConfigDict(extra="ignore")
    version: int
    response: _AnswerPart


def _read_bodies_blocking(completions: list[StoredCompletion]) -> None:
    for completion in completions:
        if completion.path is None:
            raise CassetteError(f"recording of {completion.id} has no cassette file")
        try:
            loaded = _CompletionFile.model_validate_json(completion.path.read_bytes())
            if loaded.version != CASSETTE_VERSION:
                raise ValueError("an older format: read it in full, converted")
            part = loaded.response
            answer = part.completion if part.completion is not None else part.body.json_
        except (OSError, ValueError):
            try:
                full = load_cassette(completion.path).response
            except CassetteError as exc:
                raise CassetteError(f"{completion.path}: {exc}") from None
            answer = full.completion if full.completion is not None else full.body.json_
        if not isinstance(answer, dict):
            raise CassetteError(f"{completion.path} no longer holds a chat completion")
        completion.body = answer


async def _served(stored: StoredCompletions, completion_id: str) -> StoredCompletion:
    """A completion that exists and was not deleted, with its body read; else a 404."""
    completion = stored.index.find(completion_id, stored.overlay.changes())
    if completion is None:
        raise _not_found(completion_id)
    await _read_bodies([completion])
    return completion


async def list_completions(request: web.Request) -> web.StreamResponse:
    stored = _current(request)
    try:
        query = parse_list_query(request.query.items())
        changes = stored.overlay.changes()
        page = stored.index.page(query, changes)
        await _read_bodies(page.items)
    except StoredError as error:
        return _refused(error)
    except CassetteError as exc:
        return _broken(exc)
    served = [served_completion(c, c.metadata_with(changes)) for c in page.items]
    return _json(completion_list(served, page.has_more))


async def get_completion(request: web.Request) -> web.StreamResponse:
    completion_id = request.match_info["completion_id"]
    stored = _current(request)
    try:
        completion = await _served(stored, completion_id)
    except StoredError as error:
        return _refused(error)
    except CassetteError as exc:
        return _broken(exc)
    return _json(served_completion(completion, completion.metadata_with(stored.overlay.changes())))


async def update_completion(request: web.Request) -> web.StreamResponse:
    completion_id = request.match_info["completion_id"]
    stored = _current(request)
    try:
        metadata = parse_update(await request.read())
        completion = await _served(stored, completion_id)
        if not await asyncio.to_thread(stored.overlay.set_metadata, completion_id, metadata):
            raise _not_found(completion_id)  # deleted meanwhile, perhaps by another proxy
    except StoredError as error:
        return _refused(error)
    except CassetteError as exc:
        return _broken(exc)
    except OSError as exc:
        return _unwritable(stored.overlay, exc)
    return _json(served_completion(completion, metadata))


async def delete_completion(request: web.Request) -> web.StreamResponse:
    completion_id = request.match_info["completion_id"]
    stored = _current(request)
    try:
        if stored.index.find(completion_id, stored.overlay.changes()) is None:
            raise _not_found(completion_id)
        if not await asyncio.to_thread(stored.overlay.delete, completion_id):
            raise _not_found(completion_id)
    except StoredError as error:
        return _refused(error)
    except OSError as exc:
        return _unwritable(stored.overlay, exc)
    return _json(ChatCompletionDeleted(object="chat.completion.deleted", id=completion_id, deleted=True))


async def list_messages(request: web.Request) -> web.StreamResponse:
    completion_id = request.match_info["completion_id"]
    stored = _current(request)
    try:
        query = parse_list_query(request.query.items(), filters=False)
        completion = stored.index.find(completion_id, stored.overlay.changes())
        if completion is None:
            raise _not_found(completion_id)
        page = message_page(completion, query)
    except StoredError as error:
        return _refused(error)
    messages = [store_message(completion.id, index, message) for index, message in page.items]
    return _json(message_list(messages, page.has_more))


def _broken(exc: CassetteError) -> web.Response:
    log.warning("cannot serve a stored completion: %s", exc)
    response = error_response(500, f"cannot read the recording: {exc}", "proxy_error", "bad_cassette")
    response.headers["x-should-retry"] = "false"
    return response


def _unwritable(overlay: Overlay, exc: OSError) -> web.Response:
    log.warning("cannot write %s: %s", overlay.path, exc)
    response = error_response(
        500, f"cannot write {overlay.path}: {exc.strerror or exc}", "proxy_error", "overlay_not_writable"
    )
    response.headers["x-should-retry"] = "false"
    return response
