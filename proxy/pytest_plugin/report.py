"""What the plugin tells: the section of a test whose requests missed, and the recordings no test used.

A miss is described by the proxy itself (`Exchange.message`: the request, the closest recording, the
differing fields with both values); the section adds where the test looked and how to record it. The usage of
each test's directory travels on the teardown report (plain strings, so pytest-xdist carries it from the
workers), and the summary is drawn where the reports arrive.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import pytest

from proxy.trafficlog import REPLAYED, Exchange

SECTION = "llm-cassette"
USAGE_ATTRIBUTE = "llm_cassette_usage"


def shown(path: Path, base: Path) -> str:
    """A path relative to the rootdir when it is under it, else as it is."""
    try:
        return os.fspath(path.relative_to(base))
    except ValueError:
        return os.fspath(path)


def describe_misses(
    misses: list[Exchange], nodeid: str, directory: Path, base: Path, mode: str, proxy_mode: str
) -> str:
    """The section of a test whose requests missed; recordings named relative to the test's directory."""
    lines = [
        f"{len(misses)} request(s) found no recording in {shown(directory, base)}/"
        f" (record mode {mode}: the proxy {proxy_mode}s):"
    ]
    for exchange in misses:
        message = exchange.message or f"no recording for {exchange.method} {exchange.path}"
        lines.append("  - " + message.replace(f"{os.fspath(directory)}{os.sep}", ""))
    lines.append(
        f"To record what is new: pytest --llm-record-mode=new_episodes '{nodeid}'; "
        f"to record this test again: --llm-record-mode=rewrite"
    )
    return "\n".join(lines)


def usage_of(loaded: list[Path], exchanges: list[Exchange], directory: Path, base: Path) -> dict[str, object]:
    """Which of the recordings a test could replay it replayed."""
    used = sorted({shown(e.cassette, base) for e in exchanges if e.outcome == REPLAYED and e.cassette is not None})
    return {"directory": shown(directory, base), "loaded": [shown(path, base) for path in loaded], "used": used}


class UnusedRecordings:
    """Collects the usage reports; a recording is unused when no test serving its directory replayed it."""

    def __init__(self) -> None:
        self._loaded: dict[str, set[str]] = defaultdict(set)
        self._used: dict[str, set[str]] = defaultdict(set)

    def add(self, report: pytest.TestReport) -> None:
        usage = getattr(report, USAGE_ATTRIBUTE, None)
        if not isinstance(usage, dict):
            return
        directory = str(usage["directory"])
        self._loaded[directory].update(usage["loaded"])
        self._used[directory].update(usage["used"])

    def unused(self) -> dict[str, list[str]]:
        found = {directory: sorted(paths - self._used[directory]) for directory, paths in self._loaded.items()}
        return {directory: paths for directory, paths in sorted(found.items()) if paths}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.add(report)

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        unused = self.unused()
        terminal = terminalreporter
        count = sum(len(paths) for paths in unused.values())
        terminal.write_sep("=", f"llm-cassette: {count} recording(s) no test used")
        for paths in unused.values():
            for path in paths:
                terminal.write_line(path)
