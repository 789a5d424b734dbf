"""The pure cores behind cost, tags, time to first token and the report's charts: table-driven, no I/O."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

import pytest

from analytics.prices import PINNED_VERSION, genai_price, installed_version, overrides_from, source_description
from analytics.pricing import Price, PriceTable, Tier, cost_usd
from analytics.report_data import bucket_for
from analytics.stream_metrics import carries_output, stream_metrics
from analytics.svg import fmt_number, horizontal_bars, nice_max, stacked_columns, timeline
from proxy.headers import request_headers_for_upstream
from proxy.interaction import RecordedEvent
from proxy.settings import PriceSetting
from tests.chunks import content_delta, make_choice, make_chunk, make_usage, refusal_delta, role_delta, tool_call_delta

DAY = date(2026, 11, 22)
MINI = Price(input=0.15, output=0.60, cached_input=0.075)

# --- cost ---


@pytest.mark.parametrize(
    ("price", "prompt", "cached", "completion", "expected"),
    [
        (MINI, 1_000_000, None, 100_000, 0.21),  # 0.15 + 0.06
        (MINI, 1_000_000, 400_000, 100_000, 0.18),  # 600k at 0.15, 400k at 0.075, 100k at 0.60
        (Price(2.5, 10.0), 100_000, 40_000, 10_000, 0.35),  # no cached rate: cached input costs as input
        (MINI, None, None, None, None),  # no usage: unknown, not 0
        (None, 1000, None, 10, None),  # no price: unknown, not 0
        (MINI, 1_000_000, None, None, 0.15),  # output missing counts as none
        (MINI, 10, 50, 0, 10 * 0.075 / 1e6),  # cached beyond the prompt is capped at the prompt
        (Price(1.0, 2.0, tiers=(Tier(200_000, 2.0, 4.0),)), 300_000, 0, 1000, 0.604),  # cliff tier
        (Price(1.0, 2.0, tiers=(Tier(200_000, 2.0, 4.0),)), 100_000, 0, 1000, 0.102),  # below the tier
    ],
)
def test_cost_usd(price: Price | None, prompt: int | None, cached: int | None, completion: int | None,
                  expected: float | None) -> None:  # fmt: skip
    result = cost_usd(price, prompt, cached, completion)
    assert result == (None if expected is None else pytest.approx(expected))


@pytest.mark.parametrize(
    ("model", "prompt", "cached", "completion", "cents"),
    [
        ("gpt-4o-mini-2024-07-18", 1_000_000, 0, 100_000, 21.0),  # $0.15/M in, $0.60/M out
        ("gpt-4o", 100_000, 40_000, 10_000, 30.0),  # 60k x 2.50 + 40k cached x 1.25 + 10k x 10.00
        ("o3-mini", 1_000_000, 0, 500_000, 330.0),  # reasoning tokens are inside completion_tokens: not added
    ],
)
def test_the_maintained_table_prices_known_models_to_the_cent(
    model: str, prompt: int, cached: int, completion: int, cents: float
) -> None:
    price = genai_price(model, "https://api.openai.com", DAY)
    assert price is not None
    assert round(100 * (cost_usd(price, prompt, cached, completion) or 0), 4) == cents


def test_an_unknown_model_has_no_price() -> None:
    assert genai_price("my-local-llama-3", "http://127.0.0.1:11434", DAY) is None
    assert PriceTable(lookup=genai_price).price(("my-local-llama-3", None), None, DAY) is None


def test_overrides_come_first_and_add_models() -> None:
    table = PriceTable(overrides_from({"GPT-4o": PriceSetting(input=1, output=1), "local": PriceSetting(
        input=0, output=0)}), genai_price)  # fmt: skip
    assert table.price(("gpt-4o", None), None, DAY) == Price(1, 1)  # case ignored
    assert table.price(("local", None), None, DAY) == Price(0, 0)  # a free model costs 0, which is known
    assert table.price(("gpt-4o-2024-08-06", "gpt-4o"), None, DAY) == Price(1, 1)  # asked-for model's override
    assert table.price(("gpt-4o-mini", None), None, DAY) == genai_price("gpt-4o-mini", None, DAY)


def test_the_price_source_is_pinned_and_dated() -> None:
    assert installed_version() == PINNED_VERSION  # raising the pin means updating PRICE_DATA_DATE too
    line = source_description({"local": Price(0, 0)})
    assert re.search(r"genai-prices \S+ \(bundled price data of \d{4}-\d{2}(-\d{2})?\); config overrides for local",
                     line)  # fmt: skip


# --- tags ---


@pytest.mark.parametrize(
    ("headers", "kept", "tags"),
    [
        ([("X-Proxy-Tag-Feature", "search"), ("Accept", "x")], [("Accept", "x")], {"feature": "search"}),
        ([("x-proxy-tag-test", "a"), ("X-PROXY-TAG-TEST", "b")], [], {"test": "b"}),  # last wins
        ([("X-Proxy-Tag-", "orphan")], [], {}),  # no name: dropped, no tag
        ([("X-Proxy-Tagline", "keep")], [("X-Proxy-Tagline", "keep")], {}),  # not the prefix
        ([("X-Proxy-Tag-user", " alice ")], [], {"user": "alice"}),
    ],
)
def test_split_tags(headers: list[tuple[str, str]], kept: list[tuple[str, str]], tags: dict[str, str]) -> None:
    assert request_headers_for_upstream(headers) == (kept, tags)


# --- time to first token ---


def event(offset: float, payload: Any) -> RecordedEvent:
    if payload == "[DONE]":
        return RecordedEvent(offset_ms=offset, data="[DONE]")
    return RecordedEvent(offset_ms=offset, json=payload)


def chunk(delta: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return make_chunk([make_choice(delta)] if delta is not None else [], **extra)


@pytest.mark.parametrize(
    ("delta", "carries"),
    [
        (role_delta(), False),
        (content_delta(""), False),
        (content_delta("Hi"), True),
        (refusal_delta("No"), True),
        ({"tool_calls": [tool_call_delta(0, id="c1", name="f", arguments="")]}, True),
    ],
)
def test_carries_output(delta: dict[str, Any], carries: bool) -> None:
    assert carries_output(chunk(delta)) is carries


def test_stream_metrics_time_the_first_content_not_the_first_byte() -> None:
    events = [
        event(40.0, chunk(role_delta())),
        event(340.0, chunk(content_delta("Hel"))),
        event(360.0, chunk(content_delta("lo"))),
        event(840.0, chunk(content_delta("!"))),
        event(850.0, chunk(usage=make_usage(5, 50))),
        event(850.0, "[DONE]"),
    ]
    metrics = stream_metrics(events, 50)
    assert metrics.ttft_ms == 340.0
    assert metrics.chunks == 5
    assert metrics.max_chunk_gap_ms == 480.0
    assert metrics.output_tokens_per_s == pytest.approx(50 / 0.51, rel=1e-3)


@pytest.mark.parametrize(
    ("events", "tokens", "expected"),
    [
        (None, 5, (None, None, None, None)),  # not a stream
        ([event(5.0, "[DONE]")], 5, (None, None, None, None)),  # no chunk at all
        ([event(5.0, chunk(role_delta()))], 5, (None, None, 1, None)),  # no output ever came
        ([event(5.0, chunk(content_delta("x")))], None, (5.0, None, 1, None)),  # no usage: no rate
    ],
)
def test_stream_metrics_edges(events: list[RecordedEvent] | None, tokens: int | None,
                              expected: tuple[Any, ...]) -> None:  # fmt: skip
    metrics = stream_metrics(events, tokens)
    assert (metrics.ttft_ms, metrics.output_tokens_per_s, metrics.chunks, metrics.max_chunk_gap_ms) == expected


# --- charts ---


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [(None, "", "\u2013"), (1234, "", "1,234"), (25_000, "", "25k"), (0.0000158, "$", "$0.0000158"),
     (12.5, "$", "$12.50"), (0, "$", "$0"), (3.5, "ms", "3.5 ms")],
)  # fmt: skip
def test_fmt_number(value: float | None, unit: str, text: str) -> None:
    assert fmt_number(value, unit) == text


@pytest.mark.parametrize(("value", "top"), [(0, 1.0), (3, 5.0), (7.2, 10.0), (120, 200.0), (0.03, 0.05)])
def test_nice_max(value: float, top: float) -> None:
    assert nice_max(value) == pytest.approx(top)


def test_stacked_columns_draw_one_bar_per_known_value_and_escape_names() -> None:
    svg = stacked_columns(["2026-11-21", "2026-11-22"], [("<b>x</b>", [1, 2]), ("m2", [None, 3])], label="requests")
    assert svg.count('class="bar"') == 3
    assert "<b>" not in svg and "&lt;b&gt;x&lt;/b&gt;" in svg


def test_horizontal_bars_show_a_dash_for_null_and_draw_no_bar() -> None:
    svg = horizontal_bars([("m", [100.0, None])], label="latency", series=("p50", "p95"), unit="ms")
    assert svg.count('class="bar"') == 1
    assert "\u2013" in svg


def test_empty_charts_say_no_data() -> None:
    assert "no data" in stacked_columns([], [], label="x")
    assert "no data" in horizontal_bars([], label="x")
    assert "no data" in timeline([], total_ms=None, ttfb_ms=None, ttft_ms=None)


def test_timeline_has_one_tick_per_event_and_marks_first_token() -> None:
    svg = timeline([(10.0, "empty"), (300.0, "content"), (320.0, "done")], total_ms=330.0, ttfb_ms=10.0,
                   ttft_ms=300.0)  # fmt: skip
    assert svg.count('class="tick"') == 3
    assert "first token 300 ms" in svg


@pytest.mark.parametrize(
    ("first", "last", "bucket"),
    [(None, None, "day"), ("2026-01-01", "2026-03-01", "day"), ("2026-01-01", "2026-12-31", "week"),
     ("2024-01-01", "2026-12-31", "month")],
)  # fmt: skip
def test_the_traffic_charts_keep_to_about_a_hundred_columns(first: str | None, last: str | None, bucket: str) -> None:
    def moment(text: str | None) -> datetime | None:
        return None if text is None else datetime.fromisoformat(text)

    assert bucket_for(moment(first), moment(last)) == bucket
