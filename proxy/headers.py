"""Header policy as named sets, applied by small pure functions.

Four decisions live here: which headers never cross the proxy (hop-by-hop, RFC 9110 section 7.6.1), which
request headers we set ourselves for the upstream, which values are secrets that are forwarded but never
written anywhere (cassettes, tables, logs, exports), and which request headers are the proxy's own tags
(`X-Proxy-Tag-<name>: <value>`): kept in the recording's metadata, never forwarded.
"""

from __future__ import annotations

from collections.abc import Iterable

from multidict import CIMultiDict, MultiMapping

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


# What never crosses from the client to the upstream, and from the upstream to the client (besides the names a
# Connection header lists).
_NOT_FORWARDED = HOP_BY_HOP | DROPPED_FROM_REQUEST
_NOT_RETURNED = HOP_BY_HOP | DROPPED_FROM_RESPONSE

Headers = MultiMapping[str] | Iterable[tuple[str, str]]


def _multi(headers: Headers) -> MultiMapping[str]:
    return headers if isinstance(headers, MultiMapping) else CIMultiDict(headers)


def _listed_in_connection(headers: MultiMapping[str]) -> frozenset[str]:
    """Header names listed in `Connection` are hop-by-hop for this message too. Looked up, not scanned for:
    these run on every forwarded request, and one pass over the headers costs about 1 us."""
    values = headers.getall("Connection", ())
    return frozenset(token.strip().lower() for value in values for token in value.split(",") if token.strip())


def request_headers_for_upstream(headers: Headers) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """The client's headers as the upstream should see them (Host is added by the HTTP client), without the
    proxy's tag headers; and the tags those carried: `{name: value}` with the name lower-cased (header names are
    case-insensitive). A repeated tag keeps its last value; a header with an empty name (`X-Proxy-Tag-`) is
    dropped too and carries no tag."""
    multi = _multi(headers)
    dropped = _NOT_FORWARDED | _listed_in_connection(multi)
    kept: list[tuple[str, str]] = []
    tags: dict[str, str] = {}
    for name, value in multi.items():
        lower = name.lower()
        if lower in dropped:
            continue
        if lower.startswith(TAG_PREFIX):
            if tag := lower[len(TAG_PREFIX) :]:
                tags[tag] = value.strip()
            continue
        # str(): aiohttp's names are multidict's `istr`, which pickles through Python code (5x a str's cost)
        # on its way to the recording worker; these become the recording's headers
        kept.append((str(name), narrow_accept_encoding(value) if lower == "accept-encoding" else value))
    return kept, tags


def response_headers_for_client(headers: Headers) -> list[tuple[str, str]]:
    multi = _multi(headers)
    dropped = _NOT_RETURNED | _listed_in_connection(multi)
    return [(name, value) for name, value in multi.items() if name.lower() not in dropped]


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
