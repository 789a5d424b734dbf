"""The maintained price table: pydantic's `genai-prices` package, read from the data it ships.

`genai-prices` (https://github.com/pydantic/genai-prices) is a table of LLM API prices kept up to date by
its maintainers and released often; its Python package bundles a snapshot of the data, so nothing is
fetched at run time (its optional auto-update is never started here). The dependency is pinned to one
release: the snapshot's date is that release's date (PRICE_DATA_DATE), and raising the pin is how prices are
updated (a test checks the installed version is the pinned one, so the date cannot go stale silently).

A model is looked up with the provider guessed from the upstream URL (`api.openai.com`, `api.deepseek.com`,
...), else as an OpenAI model: the proxy speaks the OpenAI API. A model genai-prices does not know has no
price (its cost is NULL). Lookups are cached per (model, upstream, day).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from decimal import Decimal
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from analytics.pricing import Price, PriceTable, Tier

PRICE_PACKAGE = "genai-prices"
PINNED_VERSION = "0.2.3"
PRICE_DATA_DATE = "2026-11"  # the pinned release's month (PyPI); update with PINNED_VERSION


def installed_version() -> str | None:
    try:
        return version(PRICE_PACKAGE)
    except PackageNotFoundError:
        return None


def source_description(overrides: Mapping[str, Price] | None = None) -> str:
    """One line for `proxy stats` and the report: where prices come from, and their date."""
    installed = installed_version()
    if installed is None:
        text = f"no price table ({PRICE_PACKAGE} is not installed): only prices from the config"
    elif installed == PINNED_VERSION:
        text = f"{PRICE_PACKAGE} {installed} (bundled price data of {PRICE_DATA_DATE})"
    else:
        text = f"{PRICE_PACKAGE} {installed} (bundled price data; date not known to this proxy)"
    if overrides:
        text += "; config overrides for " + ", ".join(sorted(overrides))
    return text


def _rate(value: Any) -> float | None:
    if isinstance(value, Decimal):
        return float(value)
    base = getattr(value, "base", None)  # TieredPrices
    return float(base) if isinstance(base, Decimal) else None


def _tiers(model_price: Any) -> tuple[Tier, ...]:
    """genai-prices' tiers (by input tokens) as ours; the output and cached rates follow their own tiers."""
    input_price = getattr(model_price, "input_mtok", None)
    starts = sorted({tier.start for tier in getattr(input_price, "tiers", None) or ()})

    def at(value: Any, start: int) -> float | None:
        rate = _rate(value)
        for tier in getattr(value, "tiers", None) or ():
            if start >= tier.start:
                rate = float(tier.price)
        return rate

    tiers = []
    for start in starts:
        tier_input = at(input_price, start)
        tier_output = at(getattr(model_price, "output_mtok", None), start)
        if tier_input is not None and tier_output is not None:
            tiers.append(Tier(start, tier_input, tier_output, at(getattr(model_price, "cache_read_mtok", None), start)))
    return tuple(tiers)


@lru_cache(maxsize=4096)
def genai_price(model: str, upstream: str | None, day: date) -> Price | None:
    """The price genai-prices has for this model on this day, or None."""
    try:
        from genai_prices import data_snapshot
    except ImportError:
        return None
    snapshot = data_snapshot.get_snapshot()
    found = None
    if upstream:
        try:
            found = snapshot.find_provider_model(model, None, None, upstream)
        except LookupError:
            found = None
    if found is None:
        try:
            found = snapshot.find_provider_model(model, None, "openai", None)
        except LookupError:
            return None
    _, info = found
    model_price = info.get_prices(datetime.combine(day, time(12), tzinfo=UTC))
    input_rate = _rate(getattr(model_price, "input_mtok", None))
    output_rate = _rate(getattr(model_price, "output_mtok", None))
    if input_rate is None or output_rate is None:
        return None
    cached = _rate(getattr(model_price, "cache_read_mtok", None))
    return Price(input_rate, output_rate, cached, _tiers(model_price))


def price_table(overrides: Mapping[str, Price] | None = None) -> PriceTable:
    return PriceTable(overrides, genai_price)


def overrides_from(settings: Mapping[str, Any]) -> dict[str, Price]:
    """The config's `[prices."MODEL"]` tables (proxy.settings.PriceSetting) as Prices."""
    return {name: Price(item.input, item.output, item.cached_input) for name, item in settings.items()}
