"""One INFO line per request, so a user sees what the proxy did while it runs (`--quiet` turns it off).

    12:00:01,123 INFO proxy.traffic: replayed POST /v1/chat/completions gpt-4o-mini 200 3.1ms 20261201/x.json

An embedding program (the pytest plugin) can also watch every exchange: `Traffic.observers` get an `Exchange`
per request, with the cassette's full path and, for a miss, the message that explains it.

The outcome word is one of `recorded`, `replayed`, `forwarded` (sent upstream, but no cassette was written),
`miss`, `stored` (answered by the stored Chat Completions API from the recordings). Nothing secret is in it:
no headers, no bodies, no query string.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

log = logging.getLogger("proxy.traffic")

RECORDED = "recorded"
REPLAYED = "replayed"
FORWARDED = "forwarded"
MISS = "miss"
STORED = "stored"


def enabled() -> bool:
    return log.isEnabledFor(logging.INFO)


def line(
    outcome: str, method: str, path: str, model: str | None, status: int, total_ms: float | None, cassette: str | None
) -> None:
    """Log one request; the caller checks `enabled()` first when building the fields costs anything."""
    took = "-" if total_ms is None else f"{total_ms:.1f}ms"
    log.info("%s %s %s %s %s %s %s", outcome, method, path, model or "-", status, took, cassette or "-")


def quiet() -> None:
    log.setLevel(logging.WARNING)


@dataclass(frozen=True, slots=True)
class Exchange:
    outcome: str
    method: str
    path: str
    model: str | None
    status: int
    total_ms: float | None
    cassette: Path | None  # the cassette file that answered or was written
    message: str | None = None  # for a miss: which recording came closest and what differs


@dataclass(slots=True)
class Traffic:
    """Where each exchange is reported: the log line, and the observers an embedding program added."""

    observers: list[Callable[[Exchange], None]] = field(default_factory=list)
    stored: int = 0  # requests answered by the stored Chat Completions API (the others are counted by the app)

    def wanted(self) -> bool:
        """Whether reporting does anything; building the fields of a report can be skipped otherwise."""
        return bool(self.observers) or enabled()

    def report(self, exchange: Exchange, shown: str | None) -> None:
        """Log it (`shown` is the cassette as the line shows it, relative to the cassette directory) and tell
        the observers. An observer that fails is logged, never raised into the request."""
        if enabled():
            line(
                exchange.outcome,
                exchange.method,
                exchange.path,
                exchange.model,
                exchange.status,
                exchange.total_ms,
                shown,
            )
        for observer in self.observers:
            try:
                observer(exchange)
            except Exception:
                log.exception("a traffic observer failed")


TRAFFIC = web.AppKey("traffic", Traffic)
