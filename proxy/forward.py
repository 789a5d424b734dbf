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


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:300]


async def forward(
    request: web.Request,
    session: aiohttp.ClientSession,
    config: ForwardConfig,
    recorder: Recorder | None,
    body: bytes,
) -> web.StreamResponse:
    loop = asyncio.get_running_loop()
    upstream_headers, tags = headers.split_tags(headers.request_headers_for_upstream(request.headers.items()))
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
    url = URL(str(URL(config.upstream)) + request.rel_url.raw_path_qs, encoded=True)
    timeout = aiohttp.ClientTimeout(total=None, connect=config.connect_timeout, sock_read=config.first_byte_timeout)
    response: web.StreamResponse | None = None
    chunk = b""
    # Set once the upstream body has ended: a client that leaves after that (while the end is written, or an
    # SDK closing at [DONE]) left nothing unrecorded, so the exchange is complete.
    finished = False
    try:
        try:
            upstream = await session.request(
                request.method,
                url,
                headers=upstream_headers,
                data=body if body or request.method not in ("GET", "HEAD") else None,
                allow_redirects=False,
                timeout=timeout,
            )
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
            recording.response_headers = list(upstream.headers.items())
            response = web.StreamResponse(
                status=upstream.status,
                reason=upstream.reason,
                headers=CIMultiDict(headers.response_headers_for_client(upstream.headers.items())),
            )
            if upstream.content_length is not None and request.method != "HEAD":
                response.content_length = upstream.content_length
            await response.prepare(request)
            # Between chunks the read timeout is the chunk timeout, not the first-byte one. aiohttp re-arms its
            # socket read timer on every arrival, with the value set here; but the timer running now was armed
            # with the first-byte timeout, so until something new arrives each read gets its own bound (not
            # needed when the whole body is in already, as a short answer's usually is). After that the
            # per-chunk path is a read, a write and an append.
            content = upstream.content
            if upstream.connection is not None and upstream.connection.protocol is not None:
                upstream.connection.protocol.read_timeout = config.chunk_timeout
            switched_at = content.total_bytes
            try:
                while True:
                    if content.total_bytes == switched_at and not content.is_eof():
                        async with asyncio.timeout(config.chunk_timeout):
                            chunk = await content.readany()
                    else:
                        chunk = await content.readany()
                    if not chunk:
                        finished = True
                        break
                    await response.write(chunk)
                    recording.add(chunk, loop.time())
            except (TimeoutError, aiohttp.ServerTimeoutError):
                recording.error = f"upstream {config.upstream} stalled for {config.chunk_timeout:g}s mid-response"
                recording.incomplete_reason = "upstream timeout mid-response"
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
