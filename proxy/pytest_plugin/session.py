"""The session's proxy: started once (in-process, on a free loopback port), switched to each test's cassette
directory and mode, and the exchanges each test saw.

The proxy runs on its own event loop in a daemon thread (`ProxyThread`); its observers are called there, so
what a test saw is kept under a lock. A test's recordings are all written when `end` returns (it settles).
"""

from __future__ import annotations

import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path

from proxy.cassettes import iter_cassette_paths
from proxy.embed import EmbeddedProxy, ProxyThread
from proxy.settings import Settings
from proxy.state import LoadReport
from proxy.trafficlog import MISS, Exchange


@dataclass
class TestTraffic:
    """What one test's requests did, in order (appended on the proxy's thread)."""

    __test__ = False  # not a test class, whatever pytest thinks of its name

    nodeid: str
    directory: Path
    proxy_mode: str  # as decided for this test: replay, record or auto (`once` resolved)
    loaded: list[Path] = field(default_factory=list)  # the recordings it could replay
    exchanges: list[Exchange] = field(default_factory=list)
    misses_reported: int = 0


class SessionProxy:
    """One proxy for the session; `begin`/`end` bracket each test that uses it."""

    def __init__(self, upstream: str, may_record: bool) -> None:
        settings = Settings.model_validate(
            {
                "mode": "replay",
                "upstream": upstream,
                "host": "127.0.0.1",
                "port": 0,
                "cassettes": Path(".llm-cassette-proxy-unused"),  # replaced by each test's directory
                "record_workers": "in-process",
                "db_enabled": False,
            }
        )
        self.may_record = may_record
        self._thread = ProxyThread(settings, may_record=may_record)
        self._lock = threading.Lock()
        self._current: TestTraffic | None = None
        self._rewritten: set[Path] = set()
        self.proxy: EmbeddedProxy = self._thread.start()
        self._thread.call(self.proxy.observe, self._observe)

    @property
    def base_url(self) -> str:
        return self.proxy.base_url

    def _observe(self, exchange: Exchange) -> None:
        with self._lock:
            if self._current is not None:
                self._current.exchanges.append(exchange)

    def begin(self, nodeid: str, directory: Path, mode: str, *, rewrite: bool = False) -> TestTraffic:
        """Serve the test from `directory` in the proxy's `mode` (record, replay, auto, once). With `rewrite`,
        the directory is deleted first, once per session (tests sharing it keep each other's recordings)."""
        directory = directory.resolve()
        if rewrite and directory not in self._rewritten:
            self._rewritten.add(directory)
            shutil.rmtree(directory, ignore_errors=True)
        proxy = self.proxy

        def switch() -> tuple[str, LoadReport]:
            report = proxy.retarget(directory, mode, default_tags={"test": nodeid})
            return proxy.settings.mode.value, report

        resolved, _ = self._thread.call(switch)
        traffic = TestTraffic(nodeid, directory, resolved)
        if resolved != "record" and directory.is_dir():
            traffic.loaded = list(iter_cassette_paths(directory))
        with self._lock:
            self._current = traffic
        return traffic

    def settle(self) -> None:
        """Return once every recording made so far is written (and reported to the test)."""
        self._thread.settle()

    def snapshot(self, traffic: TestTraffic) -> list[Exchange]:
        with self._lock:
            return list(traffic.exchanges)

    def take_misses(self, traffic: TestTraffic) -> list[Exchange]:
        """The test's misses not taken before."""
        with self._lock:
            misses = [e for e in traffic.exchanges if e.outcome == MISS]
            new = misses[traffic.misses_reported :]
            traffic.misses_reported = len(misses)
            return new

    def end(self) -> None:
        """The test is over: its recordings written, later exchanges no longer its own."""
        try:
            self.settle()
        finally:
            with self._lock:
                self._current = None

    def stop(self) -> None:
        self._thread.stop()
