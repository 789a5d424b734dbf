"""The hooks and fixtures (the `pytest11` entry point `llm_cassette_proxy`).

- `llm_proxy_session` (session scope): the proxy, started the first time a test asks for it, stopped at the
  end of the session (each pytest-xdist worker has its own).
- `llm_proxy` (function scope): switches the proxy to the test's cassette directory and record mode, points
  `OPENAI_BASE_URL` at it (and sets a placeholder `OPENAI_API_KEY` when the test only replays and none is
  set), and after the test waits until its recordings are written.
- `@pytest.mark.llm_cassette("name", record_mode=...)`: names (or shares) the directory, sets the mode; a
  marked test gets `llm_proxy` without asking for it.
- A request that missed fails its test, even when the code under test swallowed the SDK's error, with a
  section naming the request, the closest recording and what differs.

Nothing here starts or sets anything for a test that uses neither the fixture nor the marker.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from proxy.pytest_plugin.naming import cassette_dir
from proxy.pytest_plugin.options import PROXY_MODES, RECORD_MODES, PluginOptions, add_options
from proxy.pytest_plugin.report import SECTION, USAGE_ATTRIBUTE, UnusedRecordings, describe_misses, usage_of

if TYPE_CHECKING:
    from proxy.pytest_plugin.fixture import LLMProxy
    from proxy.pytest_plugin.session import SessionProxy, TestTraffic

MARKER = "llm_cassette"
FIXTURE = "llm_proxy"
PLACEHOLDER_KEY = "sk-llm-cassette-placeholder"


@dataclass
class _Active:
    proxy: LLMProxy
    session: SessionProxy
    traffic: TestTraffic


OPTIONS = pytest.StashKey[PluginOptions]()
MARKER_MODES = pytest.StashKey[set[str | None]]()
ACTIVE = pytest.StashKey[_Active]()
USAGE = pytest.StashKey[dict[str, object]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(name=None, *, record_mode=None): the test's LLM cassette directory (shared by the tests that "
        f"name it) and record mode ({', '.join(RECORD_MODES)}); the command line's --llm-record-mode wins",
    )
    options = PluginOptions.of(config)
    config.stash[OPTIONS] = options
    if options.report_unused and not hasattr(config, "workerinput"):  # the summary is drawn where reports arrive
        config.pluginmanager.register(UnusedRecordings(), "llm_cassette_unused")


def marker_of(item: pytest.Item) -> tuple[str | None, str | None]:
    """The directory name (closest marker that gives one) and record mode (the narrowest marker wins); a bad
    marker is a usage error naming the test."""
    markers = list(item.iter_markers(MARKER))  # closest first
    name: str | None = None
    mode: str | None = None
    for marker in reversed(markers):
        unknown = set(marker.kwargs) - {"name", "record_mode"}
        given = marker.args[0] if marker.args else marker.kwargs.get("name")
        if unknown or len(marker.args) > 1 or (given is not None and not isinstance(given, str)):
            raise pytest.UsageError(f"{item.nodeid}: use @pytest.mark.{MARKER}('name', record_mode='...')")
        if marker.kwargs.get("record_mode") not in (None, *RECORD_MODES):
            raise pytest.UsageError(
                f"{item.nodeid}: record_mode={marker.kwargs['record_mode']!r} must be one of {', '.join(RECORD_MODES)}"
            )
        name = given if given is not None else name
        mode = marker.kwargs.get("record_mode") or mode
    return name, mode


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Check every marker at startup, and note the modes they ask for (may the proxy ever record?)."""
    config.stash[MARKER_MODES] = {marker_of(item)[1] for item in items if item.get_closest_marker(MARKER)}


@pytest.fixture(scope="session")
def llm_proxy_session(pytestconfig: pytest.Config) -> Iterator[SessionProxy]:
    """The session's proxy (one per xdist worker), started when a test first needs it."""
    from proxy.pytest_plugin.session import SessionProxy

    options = pytestconfig.stash[OPTIONS]
    session = SessionProxy(options.upstream, options.may_record(pytestconfig.stash.get(MARKER_MODES, set())))
    try:
        yield session
    finally:
        session.stop()


@pytest.fixture
def llm_proxy(request: pytest.FixtureRequest, llm_proxy_session: SessionProxy) -> Iterator[LLMProxy]:
    """The proxy switched to this test's cassettes; `OPENAI_BASE_URL` points at it during the test."""
    from proxy.pytest_plugin.fixture import LLMProxy

    item = request.node
    assert isinstance(item, pytest.Item)
    options = request.config.stash[OPTIONS]
    name, marker_mode = marker_of(item)
    mode = options.record_mode(marker_mode)
    directory = cassette_dir(item.path, item.nodeid, options.root, name)
    session = llm_proxy_session
    traffic = session.begin(item.nodeid, directory, PROXY_MODES[mode], rewrite=mode == "rewrite")
    proxy = LLMProxy(session.base_url, traffic.directory, mode, traffic.proxy_mode, session, traffic)
    item.stash[ACTIVE] = _Active(proxy, session, traffic)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("OPENAI_BASE_URL", proxy.base_url)
            if traffic.proxy_mode == "replay" and not os.environ.get("OPENAI_API_KEY"):
                patch.setenv("OPENAI_API_KEY", PLACEHOLDER_KEY)
            try:
                yield proxy
            finally:
                session.end()
    finally:
        active = item.stash[ACTIVE]
        del item.stash[ACTIVE]
    if options.report_unused:
        exchanges = session.snapshot(traffic)
        item.stash[USAGE] = usage_of(traffic.loaded, exchanges, traffic.directory, request.config.rootpath)
    late = _miss_text(item, active, "teardown")
    if late:
        pytest.fail(late, pytrace=False)


@pytest.fixture(autouse=True)
def _llm_cassette_marker(request: pytest.FixtureRequest) -> None:
    """A test marked `llm_cassette` gets the proxy as if it asked for `llm_proxy` (as `vcr` does)."""
    if FIXTURE not in request.fixturenames and request.node.get_closest_marker(MARKER) is not None:
        request.getfixturevalue(FIXTURE)


def _miss_text(item: pytest.Item, active: _Active, when: str) -> str | None:
    """The misses not reported yet, described in a section of the report of `when`."""
    misses = active.session.take_misses(active.traffic)
    if not misses:
        return None
    traffic = active.traffic
    text = describe_misses(
        misses, item.nodeid, traffic.directory, item.config.rootpath, active.proxy.mode, traffic.proxy_mode
    )
    item.add_report_section(when, SECTION, text)
    return text


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    """After the test: a miss fails it, even when the code under test swallowed the SDK's error."""
    active = item.stash.get(ACTIVE, None)
    if active is None:
        return (yield)
    try:
        result = yield
    except BaseException:
        _miss_text(item, active, "call")  # it fails already: the section tells why the request had no answer
        raise
    text = _miss_text(item, active, "call")
    if text:
        pytest.fail(text, pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, object, object]:
    """The teardown report carries which recordings the test could replay and which it did (--llm-report-unused)."""
    report = yield
    usage = item.stash.get(USAGE, None)
    if usage is not None and call.when == "teardown":
        setattr(report, USAGE_ATTRIBUTE, usage)
    return report
