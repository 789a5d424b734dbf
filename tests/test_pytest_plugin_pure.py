"""The pytest plugin's pure parts, table-driven: directory names, the record mode a test runs in, the proxy
mode each record mode maps to, and the miss section's text."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.pytest_plugin.naming import cassette_dir, default_name, safe_name
from proxy.pytest_plugin.options import PROXY_MODES, PluginOptions
from proxy.pytest_plugin.report import describe_misses
from proxy.trafficlog import MISS, Exchange


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("test_plain", "test_plain"),
        ("test_x[a/b]", "test_x[a-b]"),
        ('test_x[c:d|e*f?"g"]', "test_x[c-d-e-f--g-]"),
        ("test_x[tab\there]", "test_x[tab-here]"),
        ("..", "--"),
        ("", "-"),
    ],
)
def test_safe_name_replaces_what_cannot_go_in_a_file_name(text: str, name: str) -> None:
    assert safe_name(text) == name


def test_a_long_name_is_cut_and_keeps_a_hash_that_tells_tests_apart() -> None:
    first, second = safe_name("test_x[" + "a" * 300 + "]"), safe_name("test_x[" + "a" * 299 + "b]")
    assert len(first.encode()) <= 200 and len(second.encode()) <= 200
    assert first != second


@pytest.mark.parametrize(
    ("nodeid", "name"),
    [
        ("tests/test_a.py::test_y", "test_y"),
        ("tests/test_a.py::TestX::test_y[1]", "TestX.test_y[1]"),
        ("tests/test_a.py::TestX::TestInner::test_y", "TestX.TestInner.test_y"),
    ],
)
def test_default_name_is_pytest_recordings(nodeid: str, name: str) -> None:
    assert default_name(nodeid) == name


@pytest.mark.parametrize(
    ("root", "name", "expected"),
    [
        (None, None, "/p/tests/cassettes/test_a/TestX.test_y"),
        (Path("/elsewhere"), None, "/elsewhere/test_a/TestX.test_y"),
        (None, "shared", "/p/tests/cassettes/test_a/shared"),
        (None, "../up", "/p/tests/cassettes/test_a/..-up"),
    ],
)
def test_cassette_dir(root: Path | None, name: str | None, expected: str) -> None:
    assert cassette_dir(Path("/p/tests/test_a.py"), "tests/test_a.py::TestX::test_y", root, name) == Path(expected)


def options(cli: str | None = None, ini: str | None = None) -> PluginOptions:
    return PluginOptions(cli, ini, "https://api.openai.com", None, report_unused=False)


@pytest.mark.parametrize(
    ("cli", "marker", "ini", "mode"),
    [
        (None, None, None, "none"),
        (None, None, "once", "once"),
        (None, "all", "once", "all"),  # the marker beats the ini file
        ("rewrite", "all", "once", "rewrite"),  # the command line beats everything
        ("none", "new_episodes", None, "none"),
    ],
)
def test_record_mode_precedence(cli: str | None, marker: str | None, ini: str | None, mode: str) -> None:
    assert options(cli, ini).record_mode(marker) == mode


@pytest.mark.parametrize(
    ("cli", "ini", "markers", "may"),
    [
        (None, None, set(), False),
        (None, None, {"once"}, True),
        ("none", None, {"once"}, False),  # the command line's none can never record
        (None, "new_episodes", set(), True),
    ],
)
def test_a_proxy_gets_a_recording_side_only_when_a_test_may_record(
    cli: str | None, ini: str | None, markers: set[str | None], may: bool
) -> None:
    assert options(cli, ini).may_record(markers) is may


def test_record_modes_map_to_proxy_modes_as_vcr_names_them() -> None:
    assert PROXY_MODES == {
        "none": "replay",
        "once": "once",
        "new_episodes": "auto",
        "all": "record",
        "rewrite": "record",
    }


def test_the_miss_section_names_recordings_relative_to_the_tests_directory() -> None:
    directory = Path("/p/tests/cassettes/test_a/test_y")
    message = f"no recording for POST /v1/chat/completions; closest recording: {directory}/2026/x.json, which differs"
    miss = Exchange(MISS, "POST", "/v1/chat/completions", "gpt-4o-mini", 404, None, None, message)
    text = describe_misses([miss], "tests/test_a.py::test_y", directory, Path("/p"), "none", "replay")
    assert text.splitlines() == [
        "1 request(s) found no recording in tests/cassettes/test_a/test_y/ (record mode none: the proxy replays):",
        "  - no recording for POST /v1/chat/completions; closest recording: 2026/x.json, which differs",
        "To record what is new: pytest --llm-record-mode=new_episodes 'tests/test_a.py::test_y'; "
        "to record this test again: --llm-record-mode=rewrite",
    ]
