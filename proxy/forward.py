"""The record path: send the request upstream, tee each chunk to the client first and to a Recording second.

Transparency decisions:
- Bytes pass through as they arrive (`iter_any`), never parsed or buffered on the way.
- Compressed bodies pass through compressed: the upstream session does not decompress, and Content-Length
  and Content-Encoding stay consistent with the bytes. The recorder decodes its own copy later.
- A client that goes away cancels the handler (aiohttp's handler_cancellation); the upstream response is
  closed at once and the recording is still handed to the Recorder with what arrived.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from proxy import headers
from proxy.errors import error_body, error_response
from proxy.recorder import Recorder
from proxy.recording import CLIENT_LEFT, Recording
from proxy.silence import SilenceWatch, Waiting

log = logging.getLogger("proxy.forward")


@dataclass(frozen=True, slots=True)
class ForwardConfig:
    upstream: str
    connect_timeout: float
    first_byte_timeout: float
    chunk_timeout: float
    mode: str = "record"
    cassettes: Path = Path("cassettes")
    default_tags: dict[str, str] = field(default_factory=dict)  # lower-case names; a tag header overrides


class _UpstreamFailed(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@functools.lru_cache(maxsize=16)
def _base(upstream: str) -> str:
    """The upstream URL as yarl writes it, parsed once rather than per request."""
    return str(URL(upstream))


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:300]


async def forward(
    request: web.Request,
    session: aiohttp.ClientSession,
    config: ForwardConfig,
    recorder: Recorder | None,
    body: bytes,
    silence: SilenceWatch,
) -> web.StreamResponse:
    loop = asyncio.get_running_loop()
    upstream_headers, tags = headers.request_headers_for_upstream(request.headers)
    recording = Recording(
        method=request.method,
        path=request.path,
        query=request.rel_url.raw_query_string,
        request_headers=upstream_headers,
        request_body=body,
        upstream=config.upstream,
        started=loop.time(),
        mode=config.mode,
        tags={**config.default_tags, **tags} or None,
        directory=config.cassettes,
    )
    # encoded=True: the path and query go out byte for byte as the client sent them (yarl would otherwise
    # re-quote them, turning `%2F` in a query into `/`).
    url = URL(_base(config.upstream) + request.rel_url.raw_path_qs, encoded=True)
    response: web.StreamResponse | None = None
    chunk = b""
    # Set once the upstream body has ended: a client that leaves after that (while the end is written, or an
    # SDK closing at [DONE]) left nothing unrecorded, so the exchange is complete.
    finished = False
    # From the request's start until the answer's head is in, then for each next chunk: `silence` watches
    # (silence.py says why that is not a timer per request, nor aiohttp's per chunk).
    waiting = Waiting(config.first_byte_timeout, recording.started, config.chunk_timeout)
    token = silence.watch(waiting)
    try:
        try:
            upstream = await session.request(
                request.method,
                url,
                headers=upstream_headers,
                data=body if body or request.method not in ("GET", "HEAD") else None,
                allow_redirects=False,
            )
        except asyncio.CancelledError:
            if not waiting.was_cut():
                raise
            raise _UpstreamFailed(
                504,
                "upstream_timeout",
                f"upstream {config.upstream} did not answer in time: "
                f"no answer within first_byte_timeout ({config.first_byte_timeout:g} s)",
            ) from None
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise _UpstreamFailed(
                504,
                "upstream_timeout",
                f"upstream {config.upstream} did not answer in time: {_describe(exc)}",
            ) from exc
        except aiohttp.ClientError as exc:
            raise _UpstreamFailed(
                502, "upstream_unreachable", f"cannot reach upstream {config.upstream}: {_describe(exc)}"
            ) from exc
        async with upstream:
            recording.status = upstream.status
            recording.headers_at = loop.time()
            recording.response_headers = [(str(name), value) for name, value in upstream.headers.items()]  # no istr
            response = web.StreamResponse(
                status=upstream.status,
                reason=upstream.reason,
                headers=CIMultiDict(headers.response_headers_for_client(upstream.headers)),
            )
            if upstream.content_length is not None and request.method != "HEAD":
                response.content_length = upstream.content_length
            # From here on the chunk timeout bounds each wait for the next chunk (from the head's arrival for the
            # first); the per-chunk path is a read, a write and an append.
            content = upstream.content
            waiting.reading(content, recording.headers_at)
            await response.prepare(request)
            try:
                while True:
                    chunk = await content.readany()
                    waiting.since = None  # a client slow to take the chunk is not a silent upstream
                    if not chunk:
                        finished = True
                        break
                    await response.write(chunk)
                    at = loop.time()
                    recording.add(chunk, at)
                    waiting.since = at
            except (TimeoutError, aiohttp.ServerTimeoutError):
                recording.error = f"upstream {config.upstream} stalled for {config.chunk_timeout:g}s mid-response"
                recording.incomplete_reason = "upstream timeout mid-response"
                upstream.close()  # its connection is not reused: the rest of that answer may still come
                _abort(request)
                return response
            except aiohttp.ClientError as exc:
                recording.error = f"upstream {config.upstream} failed mid-response: {_describe(exc)}"
                recording.incomplete_reason = "upstream reset mid-response"
                _abort(request)
                return response
            except ConnectionResetError:
                recording.incomplete_reason = CLIENT_LEFT
                _keep_unsent(recording, chunk, loop.time())
                upstream.close()
                return response
            await response.write_eof()
            return response
    except _UpstreamFailed as failure:
        recording.error = failure.message
        recording.error_body = error_body(failure.message, "proxy_error", failure.code)
        recording.error_status = failure.status
        log.warning("%s %s: %s", request.method, request.path, failure.message)
        return error_response(failure.status, failure.message, "proxy_error", failure.code)
    except asyncio.CancelledError:
        if not finished:
            recording.incomplete_reason = CLIENT_LEFT
            _keep_unsent(recording, chunk, loop.time())
        raise
    finally:
        silence.forget(token)
        recording.ended = loop.time()
        if recorder is not None:
            recorder.submit(recording)


def _keep_unsent(recording: Recording, chunk: bytes, at: float) -> None:
    """A chunk that arrived from upstream but could not reach the client (it left) is still part of what
    upstream sent: record it too, so nothing that crossed the proxy is lost."""
    if chunk and (not recording.chunks or recording.chunks[-1] is not chunk):
        recording.add(chunk, at)


def _abort(request: web.Request) -> None:
    """Mirror an upstream failure mid-body to the client: the connection is cut, not ended cleanly,
    so the client sees a truncated response rather than a short but seemingly complete one."""
    if request.transport is not None:
        request.transport.abort()
