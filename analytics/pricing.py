"""What a request cost: token counts times per-million-token prices.  (pure)

OpenAI bills input tokens, cached input tokens (a part of the input, at a lower rate) and output tokens;
reasoning tokens are part of `completion_tokens` already, so they are billed as output and never added
again. A price is USD per 1,000,000 tokens. Some models have long-context tiers, which work as a cliff:
once the prompt reaches a tier's start, all tokens of the request pay that tier's rates.

`PriceTable` picks a price for a model: the overrides from the config first (exact model name, case
ignored), then a lookup (the maintained table in prices.py). No price means the cost is unknown: NULL,
never 0.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date

MILLION = 1_000_000


@dataclass(frozen=True, slots=True)
class Tier:
    """Rates that apply to a whole request once its prompt has at least `start` tokens."""

    start: int
    input: float
    output: float
    cached_input: float | None = None


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens. `cached_input` None: cached input costs as much as input."""

    input: float
    output: float
    cached_input: float | None = None
    tiers: tuple[Tier, ...] = ()

    def for_prompt(self, prompt_tokens: int) -> Price:
        """The rates for a request with this many prompt tokens (the highest tier reached, else the base)."""
        chosen: Price = self
        for tier in sorted(self.tiers, key=lambda t: t.start):
            if prompt_tokens >= tier.start:
                chosen = Price(tier.input, tier.output, tier.cached_input)
        return chosen


def cost_usd(
    price: Price | None, prompt_tokens: int | None, cached_tokens: int | None, completion_tokens: int | None
) -> float | None:
    """The cost in USD, or None when there is no price or no token count at all. A count that is missing
    while the other is known counts as 0 (a request that never produced output costs its input)."""
    if price is None or (prompt_tokens is None and completion_tokens is None):
        return None
    prompt = max(prompt_tokens or 0, 0)
    cached = min(max(cached_tokens or 0, 0), prompt)
    output = max(completion_tokens or 0, 0)
    rates = price.for_prompt(prompt)
    cached_rate = rates.input if rates.cached_input is None else rates.cached_input
    total = (prompt - cached) * rates.input + cached * cached_rate + output * rates.output
    return round(total / MILLION, 12)


Lookup = Callable[[str, str | None, date], Price | None]  # (model, upstream URL, day) -> price


def _no_lookup(model: str, upstream: str | None, day: date) -> Price | None:
    return None


class PriceTable:
    """Overrides by model name (from the config), then `lookup`. Cheap to call once per row."""

    def __init__(self, overrides: Mapping[str, Price] | None = None, lookup: Lookup = _no_lookup) -> None:
        self.overrides = {name.lower(): price for name, price in (overrides or {}).items()}
        self.lookup = lookup

    def price(self, models: tuple[str | None, ...], upstream: str | None, day: date) -> Price | None:
        """The price of the first of `models` (the model that answered, then the one asked for) that has one;
        every override is tried before the lookup."""
        names = [model for model in models if model]
        for name in names:
            found = self.overrides.get(name.lower())
            if found is not None:
                return found
        for name in names:
            found = self.lookup(name, upstream, day)
            if found is not None:
                return found
        return None
