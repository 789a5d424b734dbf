"""Header policy as named sets, applied by small pure functions.

Four decisions live here: which headers never cross the proxy (hop-by-hop, RFC 9110 section 7.6.1), which
request headers we set ourselves for the upstream, which values are secrets that are forwarded but never
written anywhere (cassettes, tables, logs, exports), and which request headers are the proxy's own tags
(`X-Proxy-Tag-<name>: <value>`): kept in the recording's metadata, never forwarded.
"""

from __future__ import annotations

from collections.abc import Iterable

from proxy.interaction import REDACTED, HeaderList

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)

# Set by the proxy (Host for the upstream) or by aiohttp from the body it actually sends.
DROPPED_FROM_REQUEST = frozenset({"host", "content-length"})

# Re-computed by aiohttp for the body it actually writes to the client.
DROPPED_FROM_RESPONSE = frozenset({"content-length"})

SECRET = frozenset(
    {
        "authorization",
        "api-key",
        "x-api-key",
        "cookie",
        "set-cookie",
        "proxy-authorization",
        "openai-organization",
        "openai-project",
    }
)

# `X-Proxy-Tag-<name>: <value>` labels an interaction (feature, test, user): stored as a tag, not forwarded.
TAG_PREFIX = "x-proxy-tag-"

# Content codings the recorder can decode; others are narrowed away from Accept-Encoding so that
# the bytes a client gets are always bytes we can also record (see forward.py).
DECODABLE_CODINGS = frozenset({"gzip", "deflate", "identity"})


def _connection_tokens(headers: Iterable[tuple[str, str]]) -> set[str]:
    """Header names listed in `Connection` are hop-by-hop for this message too."""
    tokens: set[str] = set()
    for name, value in headers:
        if name.lower() == "connection":
            tokens.update(t.strip().lower() for t in value.split(",") if t.strip())
    return tokens


def request_headers_for_upstream(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The client's headers as the upstream should see them (Host is added by the HTTP client)."""
    pairs = list(headers)
    extra = _connection_tokens(pairs)
    out: list[tuple[str, str]] = []
    for name, value in pairs:
        lower = name.lower()
        if lower in HOP_BY_HOP or lower in DROPPED_FROM_REQUEST or lower in extra:
            continue
        if lower == "accept-encoding":
            value = narrow_accept_encoding(value)
        out.append((name, value))
    return out


def response_headers_for_client(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    pairs = list(headers)
    extra = _connection_tokens(pairs)
    return [
        (name, value)
        for name, value in pairs
        if (lower := name.lower()) not in HOP_BY_HOP and lower not in DROPPED_FROM_RESPONSE and lower not in extra
    ]


def narrow_accept_encoding(value: str) -> str:
    kept = [part.strip() for part in value.split(",") if part.split(";")[0].strip().lower() in DECODABLE_CODINGS]
    return ", ".join(kept) if kept else "identity"


def redact(headers: Iterable[tuple[str, str]], extra_secret: frozenset[str] = frozenset()) -> HeaderList:
    """Headers safe to write anywhere: secret values replaced by a fixed marker, names kept."""
    return [
        (name, REDACTED if (lower := name.lower()) in SECRET or lower in extra_secret else value)
        for name, value in headers
    ]


def get(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    lower = name.lower()
    for key, value in headers:
        if key.lower() == lower:
            return value
    return None


def split_tags(headers: Iterable[tuple[str, str]]) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """Headers without the proxy's tag headers, and the tags they carried: `{name: value}` with the name
    lower-cased (header names are case-insensitive). A repeated tag keeps its last value; a header with an
    empty name (`X-Proxy-Tag-`) is dropped too and carries no tag."""
    kept: list[tuple[str, str]] = []
    tags: dict[str, str] = {}
    for name, value in headers:
        lower = name.lower()
        if lower.startswith(TAG_PREFIX):
            tag = lower[len(TAG_PREFIX) :]
            if tag:
                tags[tag] = value.strip()
            continue
        kept.append((name, value))
    return kept, tags
