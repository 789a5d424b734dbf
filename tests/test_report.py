"""`proxy report` and `/_proxy/report`: a self-contained page over real DuckDB data, served by the real app.

The browser test drives Debian's Chromium with playwright (no browser download): the page loads with no console
errors and no request but itself, its charts have data, and an interaction's view opens, from the file and from
the running proxy (where an interaction not embedded in the page is fetched from `/_proxy/report/interaction/`).
Outside CI it is skipped, with the reason, when Chromium or playwright is missing; in CI (CI=true) it fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from analytics.query import import_directory
from analytics.report import write_report
from analytics.report_routes import report_routes
from proxy.access import loopback_only, proxy_routes
from proxy.app import create_app
from proxy.interaction import Interaction, RecordedEvent
from proxy.settings import Settings
from tests.chunks import content_delta, make_choice, make_chunk, role_delta
from tests.test_analytics_store import make_interaction, write_cassettes

CHART_NAMES = ("requests", "tokens", "cost", "latency", "ttft", "finish", "statuses")


def streamed(n: int) -> Interaction:
    interaction = make_interaction(n, stream=True, latency=900.0 + n, ttfb=50.0)
    interaction.response.events = [
        RecordedEvent(offset_ms=50.0, json=make_chunk([make_choice(role_delta())])),
        RecordedEvent(offset_ms=400.0, json=make_chunk([make_choice(content_delta(f"Streamed answer {n}"))])),
        RecordedEvent(offset_ms=880.0, json=make_chunk([make_choice(finish_reason="stop")])),
        RecordedEvent(offset_ms=900.0, data="[DONE]"),
    ]
    return interaction


def traffic() -> list[Interaction]:
    items = [make_interaction(n, latency=100.0 + n, prompt=1000 * n) for n in range(1, 40)]
    items += [streamed(n) for n in range(40, 45)]
    items += [make_interaction(50, status=429), make_interaction(51, model="my-local-llama", day="2026-11-21")]
    items[0].request.body.json_["messages"][0]["content"] = "<script>alert(1)</script> hello"
    return items


@pytest.fixture
def recorded(tmp_path: Path) -> tuple[Path, Path]:
    cassettes, db = tmp_path / "cassettes", tmp_path / "traffic.duckdb"
    write_cassettes(cassettes, traffic())
    import_directory(db, cassettes)
    return db, cassettes


def test_the_report_is_one_self_contained_file(recorded: tuple[Path, Path], tmp_path: Path) -> None:
    db, cassettes = recorded
    out = tmp_path / "report.html"
    assert write_report(out, db, cassettes=cassettes, prices="test prices") == len(traffic())
    html = out.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)  # nothing loaded from elsewhere
    assert "default-src 'none'" in html  # and the browser is told to refuse any other request
    for name in CHART_NAMES:
        match = re.search(rf'data-chart="{name}">(.*?)</figure>', html, re.S)
        assert match and 'class="bar"' in match.group(1), name
    assert "<script>alert(1)</script>" not in html  # user text is escaped, even inside the embedded JSON
    assert "20261122/" in html  # cassette paths of the top requests
    embedded = json.loads(re.search(r'id="interaction-data">(.*?)</script>', html, re.S).group(1))  # type: ignore[union-attr]
    slowest = max(traffic(), key=lambda i: i.timings.total_ms or 0)
    assert embedded[slowest.id]["timeline_svg"].count('class="tick"') == 4


async def test_the_proxy_serves_the_report_and_any_interaction(
    recorded: tuple[Path, Path], aiohttp_client: Any
) -> None:
    db, cassettes = recorded
    settings = Settings(mode="replay", cassettes=cassettes, db=db)
    client = await aiohttp_client(create_app(settings, extra_routes=report_routes(settings)))
    page = await client.get("/_proxy/report")
    assert page.status == 200 and page.content_type == "text/html"
    assert 'data-chart="latency"' in await page.text()
    cheapest = min(traffic(), key=lambda i: i.timings.total_ms or 0)
    detail = await client.get(f"/_proxy/report/interaction/{cheapest.id}")
    assert detail.status == 200
    body = await detail.json()
    assert body["conversation"][0]["text"].startswith("Q") or "hello" in body["conversation"][0]["text"]
    assert (await client.get("/_proxy/report/interaction/nope")).status == 404


async def test_proxy_paths_answer_loopback_clients_only() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    guarded = loopback_only(handler)
    for remote, status in (("10.1.2.3", 403), ("192.168.0.7", 403), ("127.0.0.1", 200), ("::1", 200)):
        request = make_mocked_request("GET", "/_proxy/report", transport=_Transport(remote))
        assert (await guarded(request)).status == status, remote


async def test_routes_of_other_packages_under_proxy_are_guarded_and_the_rest_left_alone() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    report, api, catch_all = proxy_routes([web.get("/_proxy/report", handler), web.get("/v1/models", handler)])
    assert isinstance(report, web.RouteDef) and isinstance(api, web.RouteDef) and isinstance(catch_all, web.RouteDef)
    outside = make_mocked_request("GET", "/_proxy/report", transport=_Transport("10.1.2.3"))
    assert (await report.handler(outside)).status == 403
    assert api.handler is handler  # the API itself is not restricted
    assert catch_all.path == "/_proxy/{tail:.*}"
    assert (await catch_all.handler(outside)).status == 403
    unknown = await catch_all.handler(make_mocked_request("GET", "/_proxy/nope", transport=_Transport("127.0.0.1")))
    assert unknown.status == 404
    with pytest.raises(ValueError, match="static files"):
        list(proxy_routes([web.static("/_proxy/files", ".")]))


class _Transport:
    def __init__(self, remote: str) -> None:
        self.remote = remote

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return (self.remote, 40000) if name == "peername" else default

    def is_closing(self) -> bool:
        return False


# --- in a real browser ---

CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip


def _chromium() -> str:
    """The system's Chromium; outside CI a missing browser or driver skips with the reason, in CI it fails."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    problem = None
    if path is None:
        problem = "no chromium on PATH (apt-get install chromium; .ci/run does)"
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        problem = "playwright is not installed (pip install -e '.[dev]')"
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the browser test must run in CI: {problem}")
        pytest.skip(problem)
    assert path is not None
    return path


async def _open_page(browser: Any, url: str) -> tuple[Any, list[str], list[str]]:
    page = await browser.new_page()
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("request", lambda request: requests.append(request.url))
    await page.goto(url)
    await page.wait_for_load_state("load")
    return page, errors, requests


async def _charts_have_data(page: Any) -> None:
    for name in CHART_NAMES:
        bars = await page.locator(f'figure[data-chart="{name}"] svg rect.bar').count()
        assert bars > 0, name


async def test_the_report_in_a_real_browser(recorded: tuple[Path, Path], tmp_path: Path, aiohttp_server: Any) -> None:
    chromium = _chromium()
    from playwright.async_api import async_playwright

    db, cassettes = recorded
    out = tmp_path / "report.html"
    write_report(out, db, cassettes=cassettes, prices="test prices")
    settings = Settings(mode="replay", cassettes=cassettes, db=db)
    server = await aiohttp_server(create_app(settings, extra_routes=report_routes(settings)))
    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
        try:
            # From the file: no request but the page, no console error, charts with data, a view that opens.
            page, errors, requests = await _open_page(browser, out.as_uri())
            await _charts_have_data(page)
            first = page.locator("a.open").first
            opened = await first.get_attribute("data-id")
            await first.click()
            view = page.locator("#interaction")
            await view.wait_for(state="visible")
            assert await page.locator("#interaction-id").text_content() == opened
            assert await page.locator("#interaction-conversation .message").count() >= 2
            assert await page.locator("#interaction-timeline svg rect.tick").count() == 4  # the slowest is a stream
            assert requests == [out.as_uri()]
            assert errors == []
            await page.close()

            # From the proxy: an interaction that is not in the page's lists is fetched on demand.
            origin = str(server.make_url("")).rstrip("/")
            page, errors, requests = await _open_page(browser, f"{origin}/_proxy/report")
            await _charts_have_data(page)
            await page.fill("#open-id", traffic()[1].id)  # a fast, cheap one: not embedded
            await page.click("#open-form button")
            await page.locator("#interaction").wait_for(state="visible")
            assert "Q2" in (await page.locator("#interaction-conversation").text_content() or "")
            assert all(url.startswith(origin + "/_proxy/report") for url in requests), requests
            assert any("/_proxy/report/interaction/" in url for url in requests)
            assert errors == []
        finally:
            await browser.close()
