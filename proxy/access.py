"""Who may ask what: `/_proxy/` only from this machine, and no tunnels (CONNECT) at all.

Neither is an aiohttp middleware. With any middleware at all, aiohttp wraps the handler of every request, and
the API traffic paid for two of them: `proxy replay` spent 37.3 us of CPU per request with them and 34.6 us
without (a bare handler serving the same bytes: 33.4), in one interleaved run of 4 rounds. So the rule for
`/_proxy/` wraps the handlers of those routes (every route under it, the report's included, and a catch-all
there), and CONNECT is answered before routing.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Coroutine, Iterable, Iterator
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from aiohttp.web_urldispatcher import UrlMappingMatchInfo

from proxy.errors import error_response

PROXY_PREFIX = "/_proxy/"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def loopback_only(handler: Handler) -> Handler:
    """The handler of a `/_proxy/` route: it tells what was recorded and can reset replay, so only this machine
    may ask, whatever the listening address."""

    @functools.wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        if not is_loopback(request.remote or ""):
            return error_response(403, "/_proxy/ answers only on loopback", "invalid_request_error", "forbidden")
        return await handler(request)

    return guarded


async def _no_such_endpoint(request: web.Request) -> web.StreamResponse:
    message = f"no such proxy endpoint: {request.method} {request.path}"
    return error_response(404, message, "invalid_request_error", "not_found")


def proxy_routes(routes: Iterable[web.AbstractRouteDef]) -> Iterator[web.AbstractRouteDef]:
    """Routes of other packages (the report), those under `/_proxy/` guarded; then the catch-all under it,
    so that no other `/_proxy/` path is forwarded upstream or answered to another machine."""
    for route in routes:
        if isinstance(route, web.RouteDef) and route.path.startswith(PROXY_PREFIX):
            yield web.RouteDef(route.method, route.path, loopback_only(route.handler), route.kwargs)
        elif isinstance(route, web.StaticDef) and (route.prefix + "/").startswith(PROXY_PREFIX):
            raise ValueError(f"static files cannot be served under {PROXY_PREFIX}: {route.prefix}")
        else:
            yield route
    yield web.route("*", PROXY_PREFIX + "{tail:.*}", loopback_only(_no_such_endpoint))


async def _refuse_tunnel(request: web.Request) -> web.StreamResponse:
    return error_response(
        405,
        "CONNECT is not supported: this proxy forwards only to its upstream",
        "invalid_request_error",
        "method_not_allowed",
    )


def refuse_tunnels(router: web.UrlDispatcher) -> None:
    """Answer CONNECT before routing. A reverse proxy to one upstream: tunnelling to a host the client names
    would make it an open proxy. Its authority-form target (`host:443`) matches no route, so the router alone
    would answer a bare-text 404; the check costs other requests one comparison, not a middleware."""
    refusal = web.PlainResource("/").add_route("*", _refuse_tunnel)
    resolve = router.resolve

    async def refused() -> UrlMappingMatchInfo:
        return UrlMappingMatchInfo({}, refusal)

    def resolve_or_refuse(request: web.Request) -> Coroutine[Any, Any, UrlMappingMatchInfo]:
        return refused() if request.method == "CONNECT" else resolve(request)

    router.resolve = resolve_or_refuse  # type: ignore[method-assign]
