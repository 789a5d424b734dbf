"""One INFO line per request, so a user sees what the proxy did while it runs (`--quiet` turns it off).

    12:00:01,123 INFO proxy.traffic: replayed POST /v1/chat/completions gpt-4o-mini 200 3.1ms 20261201/x.json

The outcome word is one of `recorded`, `replayed`, `forwarded` (sent upstream, but no cassette was written),
`miss`, `stored` (answered by the stored Chat Completions API from the recordings). Nothing secret is in it:
no headers, no bodies, no query string.
"""

from __future__ import annotations

import logging

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
