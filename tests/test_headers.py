"""The header rules of proxy/headers.py, as pure functions: what crosses the proxy each way."""

from __future__ import annotations

from multidict import CIMultiDict, CIMultiDictProxy, istr

from proxy.headers import request_headers_for_upstream, response_headers_for_client

CLIENT = [
    ("Host", "127.0.0.1:8080"),
    ("Connection", "keep-alive, X-Private"),
    ("Connection", "Upgrade"),
    ("Content-Length", "12"),
    ("Accept-Encoding", "gzip, br;q=0.9, zstd"),
    ("Authorization", "Bearer sk-forwarded-not-recorded"),
    ("X-Private", "hop"),
    ("Upgrade", "h2c"),
    ("TE", "trailers"),
    ("X-Proxy-Tag-Feature", " search "),
    ("Content-Type", "application/json"),
]


def test_the_upstream_gets_the_end_to_end_headers_and_no_tags() -> None:
    kept, tags = request_headers_for_upstream(CLIENT)
    assert kept == [
        ("Accept-Encoding", "gzip"),  # narrowed to codings the recorder can decode
        ("Authorization", "Bearer sk-forwarded-not-recorded"),
        ("Content-Type", "application/json"),
    ]
    assert tags == {"feature": "search"}


def test_aiohttp_headers_and_a_plain_list_give_the_same_answer() -> None:
    as_received = CIMultiDictProxy(CIMultiDict((istr(name), value) for name, value in CLIENT))
    assert request_headers_for_upstream(as_received) == request_headers_for_upstream(CLIENT)
    assert response_headers_for_client(as_received) == response_headers_for_client(CLIENT)


def test_the_client_gets_the_end_to_end_headers_whatever_the_case_of_connection() -> None:
    upstream = [
        ("Content-Type", "application/json"),
        ("Content-Length", "800"),
        ("connection", "close, x-upstream-hop"),
        ("X-Upstream-Hop", "1"),
        ("Keep-Alive", "timeout=5"),
        ("Transfer-Encoding", "chunked"),
        ("Set-Cookie", "a=b"),
        ("x-request-id", "req-1"),
    ]
    assert response_headers_for_client(upstream) == [
        ("Content-Type", "application/json"),
        ("Set-Cookie", "a=b"),
        ("x-request-id", "req-1"),
    ]


def test_the_names_handed_on_are_plain_strings() -> None:
    # aiohttp's header names are multidict's `istr`, which pickles through Python code, 5x the cost of a str,
    # on its way to the recording worker with every recording.
    kept, _ = request_headers_for_upstream(CIMultiDict([(istr("Content-Type"), "application/json")]))
    assert [type(name) for name, _ in kept] == [str]
