"""No open proxy, no SSRF, no secret on disk: the proxy reaches only its upstream and writes no secret."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import duckdb
import pytest

from analytics.query import export_parquet
from proxy.access import is_loopback
from tests.chunks import MODEL, make_completion, make_completion_choice, make_message
from tests.conftest import API_KEY, RunningProxy, RunningUpstream, StartProxy, wait_for_cassettes


async def raw_exchange(proxy: RunningProxy, request: bytes) -> bytes:
    """Send request bytes as they are (forms no HTTP client library would produce) and read the answer."""
    host, port = proxy.server.host, proxy.server.port
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(request)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(65536), timeout=10)
    writer.close()
    await writer.wait_closed()
    return data


@pytest.fixture
def completion_upstream(upstream: RunningUpstream) -> RunningUpstream:
    upstream.fake.completions["default"] = make_completion([make_completion_choice(make_message("ok"))])
    return upstream


@pytest.mark.parametrize(
    ("raw", "status", "says"),
    [
        # a tunnel to a host the client names would make the proxy an open one
        (b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", b"405", b'"method_not_allowed"'),
        # a path under /_proxy/ that the proxy does not know is never forwarded
        (
            b"GET /_proxy/nothing-here HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            b"404",
            b"no such proxy endpoint: GET /_proxy/nothing-here",
        ),
    ],
)
async def test_the_proxy_answers_these_itself_and_nothing_reaches_the_upstream(
    completion_upstream: RunningUpstream, start_proxy: StartProxy, raw: bytes, status: bytes, says: bytes
) -> None:
    proxy = await start_proxy(completion_upstream.url)
    answer = await raw_exchange(proxy, raw)
    assert answer.startswith(b"HTTP/1.1 " + status)
    assert says in answer
    assert completion_upstream.fake.received == []


async def test_absolute_form_uri_still_goes_to_the_configured_upstream(
    completion_upstream: RunningUpstream, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(completion_upstream.url)
    answer = await raw_exchange(
        proxy,
        b"GET http://169.254.169.254/v1/models?x=1 HTTP/1.1\r\nHost: 169.254.169.254\r\nConnection: close\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 200")
    [received] = completion_upstream.fake.received
    assert received.path == "/v1/models"
    assert received.query == "x=1"
    assert received.headers["Host"] == f"{completion_upstream.server.host}:{completion_upstream.server.port}"


async def test_a_spoofed_host_header_does_not_change_where_requests_go(
    completion_upstream: RunningUpstream, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(completion_upstream.url)
    answer = await raw_exchange(
        proxy, b"GET /v1/models HTTP/1.1\r\nHost: internal.example:22\r\nConnection: close\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 200")
    assert completion_upstream.fake.received[0].headers["Host"].startswith(completion_upstream.server.host)


async def test_configured_secret_headers_query_params_and_body_fields_are_written_nowhere(
    completion_upstream: RunningUpstream, start_proxy: StartProxy, tmp_path: Path
) -> None:
    proxy = await start_proxy(
        completion_upstream.url,
        secret_headers=["x-team-token"],
        secret_body_fields=["api_token"],
        db_enabled=True,
    )
    client = proxy.client()
    await client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"x-team-token": "TEAM-SECRET-9911", "api-key": API_KEY},
        extra_query={"api_key": "QUERY-SECRET-7788"},
        extra_body={"api_token": "BODY-SECRET-5566"},
    )
    await client.close()
    await wait_for_cassettes(proxy.settings.cassettes, 1)
    sent = completion_upstream.fake.received[0]
    assert sent.headers["x-team-token"] == "TEAM-SECRET-9911"
    assert json.loads(sent.body)["api_token"] == "BODY-SECRET-5566"
    assert "QUERY-SECRET-7788" in sent.query
    await proxy.server.close()  # a clean stop flushes the database too
    export_parquet(proxy.settings.db_path, tmp_path / "export")
    assert list((tmp_path / "export").rglob("*.parquet"))
    written = b"".join(path.read_bytes() for path in tmp_path.rglob("*") if path.is_file())
    # Parquet pages may be compressed, so the export is also read back as text.
    with duckdb.connect() as con:
        pattern = f"{tmp_path / 'export'}/**/*.parquet"
        exported = str(con.execute(f"SELECT * FROM read_parquet('{pattern}', union_by_name=true)").fetchall())
    for secret in (API_KEY, "TEAM-SECRET-9911", "QUERY-SECRET-7788", "BODY-SECRET-5566"):
        assert secret.encode() not in written
        assert secret not in exported


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("192.168.1.10", False),
        ("example.com", False),
    ],
)
def test_only_loopback_addresses_count_as_local(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
