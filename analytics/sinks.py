"""The recording sinks analytics hands to the proxy, as factories: light to import where the proxy runs.

The factory is pickled by reference into the recording worker, and only there, when it runs, are DuckDB, Arrow
and the price table imported: `proxy record` starts without them, and `proxy replay` never loads them at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from proxy.pipeline import SinkFactory
from proxy.settings import RecordMode, Settings

if TYPE_CHECKING:
    from analytics.writer import DuckDBWriter


def database_sink(db_path: str, flush_interval: float, price_overrides: Mapping[str, Any]) -> DuckDBWriter:
    """Build and start the DuckDB writer where the recording pipeline runs, priced with the config's overrides."""
    from analytics.prices import overrides_from, price_table
    from analytics.writer import DuckDBWriter

    writer = DuckDBWriter(db_path, flush_interval, prices=price_table(overrides_from(price_overrides)))
    writer.start()
    return writer


def database_sinks(settings: Settings) -> list[SinkFactory]:
    """The DuckDB sink for a proxy with these settings, when it records and the database is on."""
    if not settings.db_enabled or settings.resolved().mode is RecordMode.REPLAY:
        return []
    return [partial(database_sink, str(settings.db_path), settings.db_flush_interval, dict(settings.prices))]
