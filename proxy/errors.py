"""OpenAI-style error responses, and the exceptions the proxy raises on purpose.

    ProxyError                  base: an error with a one-line message for the user
    ├── ConfigError             a bad setting: names the key and the bad value (startup fails)
    └── CassetteDirError        replay's cassette directory is missing or empty (exit code 2)

HTTP clients never see a traceback: every failure the proxy answers itself is the API's error shape,
`{"error": {"message", "type", "code", "param"}}`, so the official SDKs raise their usual exceptions.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiohttp import web


class ProxyError(Exception):
    """An error whose message is meant for the user as it is."""


class ConfigError(ProxyError):
    pass


class CassetteDirError(ProxyError):
    pass


def error_body(message: str, type_: str, code: str | None, param: str | None = None) -> bytes:
    return json.dumps({"error": {"message": message, "type": type_, "code": code, "param": param}}).encode()


def error_response(status: int, message: str, type_: str, code: str | None, param: str | None = None) -> web.Response:
    from aiohttp import web  # late: the analytics commands import this module and need no aiohttp

    return web.Response(
        status=status,
        body=error_body(message, type_, code, param),
        content_type="application/json",
        headers={"x-proxy-error": code or type_},
    )
