"""What a test gets from the `llm_proxy` fixture: where its client goes, where its cassettes are, what its
requests did.

    def test_answer(llm_proxy):
        client = openai.OpenAI()                  # OPENAI_BASE_URL points at the proxy during the test
        client.chat.completions.create(...)
        assert [e.outcome for e in llm_proxy.interactions] == ["replayed"]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from proxy.cassettes import load_cassette
from proxy.interaction import Interaction
from proxy.pytest_plugin.session import SessionProxy, TestTraffic
from proxy.trafficlog import MISS, RECORDED, REPLAYED, Exchange


@dataclass(frozen=True)
class LLMProxy:
    """The session's proxy as one test sees it. `mode` is the record mode the test runs in (`none`, `once`,
    `new_episodes`, `all`, `rewrite`); `proxy_mode` what the proxy does for it (`replay`, `record`, `auto`:
    `once` is decided by whether the directory held recordings when the test began)."""

    base_url: str  # what an OpenAI client takes as base_url (ends in /v1)
    cassette_dir: Path
    mode: str
    proxy_mode: str
    _session: SessionProxy = field(repr=False)
    _traffic: TestTraffic = field(repr=False)

    @property
    def url(self) -> str:
        """The proxy without `/v1`, for clients that add the path themselves."""
        return self.base_url.removesuffix("/v1")

    def settle(self) -> None:
        """Wait until every recording made so far is written (done for you after the test)."""
        self._session.settle()

    @property
    def exchanges(self) -> list[Exchange]:
        """Every request of this test so far, in order: recorded, replayed, missed, answered from storage."""
        self._session.settle()
        return self._session.snapshot(self._traffic)

    @property
    def interactions(self) -> list[Exchange]:
        """The requests of this test that were recorded or replayed, each with its cassette file."""
        return [e for e in self.exchanges if e.outcome in (RECORDED, REPLAYED)]

    @property
    def misses(self) -> list[Exchange]:
        """The requests of this test that found no recording (each fails the test after it ends)."""
        return [e for e in self._session.snapshot(self._traffic) if e.outcome == MISS]

    @staticmethod
    def load(exchange: Exchange) -> Interaction:
        """The recorded interaction behind an exchange (its cassette, read back)."""
        if exchange.cassette is None:
            raise ValueError(f"{exchange.outcome} {exchange.method} {exchange.path} has no cassette")
        return load_cassette(exchange.cassette)
