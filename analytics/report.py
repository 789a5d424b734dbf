"""`proxy report`: one self-contained HTML page of charts and top-N lists over the traffic.

Everything is inline (CSS, a little script, SVG charts drawn by svg.py, the data of the listed interactions),
and a Content-Security-Policy forbids the page any other request, so it opens from a file, an e-mail or a CI
artifact with no network. Aggregation happens in DuckDB (report_data.py); the page holds only aggregates and
the top-N lists, so its size does not grow with the traffic (about 200 kB at 1,000,000 interactions).

The interactions the page lists are embedded with their conversation and chunk timeline. Served by a running
proxy (`/_proxy/report`), the page can also open any other interaction by id: it fetches
`/_proxy/report/interaction/<id>` (the CSP allows requests to its own origin only).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

import duckdb

from analytics.db import AnalyticsError
from analytics.report_data import TOP_LIST_COLUMNS, ReportData, report_data
from analytics.report_detail import interaction_details
from analytics.sources import source_connection
from analytics.svg import fmt_number, horizontal_bars, stacked_columns

_ASSETS = Path(__file__).with_name("report_assets")


def _asset(name: str) -> str:
    return (_ASSETS / name).read_text(encoding="utf-8")


def _cell(value: Any) -> str:
    if value is None:
        return '<td class="null">\u2013</td>'
    if isinstance(value, float):
        return f'<td class="num">{escape(f"{value:,.6g}")}</td>'
    if isinstance(value, int) and not isinstance(value, bool):
        return f'<td class="num">{value:,}</td>'
    if isinstance(value, datetime):
        return f"<td>{escape(value.isoformat(sep=' ', timespec='seconds'))}</td>"
    return f"<td>{escape(str(value))}</td>"


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]], *, link_first: bool = False) -> str:
    """An HTML table; with `link_first`, the first cell (an interaction id) opens the interaction view."""
    head = "".join(f"<th>{escape(name)}</th>" for name in columns)
    body = []
    for row in rows:
        cells = [_cell(value) for value in row]
        if link_first and row and row[0] is not None:
            ident = escape(str(row[0]))
            cells[0] = f'<td><a href="#i={ident}" class="open" data-id="{ident}">{ident}</a></td>'
        body.append("<tr>" + "".join(cells) + "</tr>")
    if not body:
        body.append(f'<tr><td colspan="{len(columns)}" class="null">(none)</td></tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _figure(name: str, title: str, svg: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A chart with the numbers behind it one click away."""
    return (
        f'<figure class="chart-box" data-chart="{escape(name)}"><figcaption>{escape(title)}</figcaption>{svg}'
        f"<details><summary>numbers</summary>{table(columns, rows)}</details></figure>"
    )


def _per_day(daily: Sequence[tuple[Any, ...]], column: int) -> tuple[list[str], list[tuple[str, list[float | None]]]]:
    days = sorted({row[0] for row in daily})
    models: dict[str, dict[str, float | None]] = {}
    for row in daily:
        models.setdefault(row[1], {})[row[0]] = row[column]
    series = [(model, [values.get(day) for day in days]) for model, values in models.items()]
    series.sort(key=lambda item: -sum(v or 0 for v in item[1]))
    return days, series


def _tick_label(bucket: str) -> Callable[[str], str]:
    """How a column's date is written under it: `11-22` for days and weeks (their first day), `2026-11` for months."""
    if bucket == "month":
        return lambda text: text[:7]
    return lambda text: text[5:]


def charts(data: ReportData) -> str:
    unit_name = data.bucket
    parts = [f'<h2 id="traffic">Traffic per {unit_name} (UTC) by model</h2><div class="grid">']
    for name, title, column, unit in (
        ("requests", f"Requests per {unit_name}", 2, ""),
        ("tokens", f"Tokens per {unit_name}", 3, ""),
        ("cost", f"Cost per {unit_name} (USD; unpriced models count as nothing)", 4, "$"),
    ):
        days, series = _per_day(data.daily, column)
        svg = stacked_columns(days, series, label=title, unit=unit, tick_label=_tick_label(unit_name))
        numbers = [(row[0], row[1], row[column]) for row in data.daily]
        parts.append(_figure(name, title, svg, [unit_name, "model", name if name != "cost" else "cost_usd"], numbers))
    parts.append('</div><h2 id="speed">Latency and time to first token (successful responses)</h2><div class="grid">')
    labels = ["p50", "p95", "p99"]
    latency = [(row[0], [row[2], row[3], row[4]]) for row in data.percentiles]
    ttft = [(row[0], [row[5], row[6], row[7]]) for row in data.percentiles]
    columns = ["model", "requests", "latency_p50", "latency_p95", "latency_p99", "ttft_p50", "ttft_p95",
               "ttft_p99", "tokens_per_s_p50"]  # fmt: skip
    latency_svg = horizontal_bars(latency, label="latency", series=labels, unit="ms")
    parts.append(_figure("latency", "Latency per model, ms", latency_svg, columns, data.percentiles))
    parts.append(
        _figure("ttft", "Time to first token per model (streams), ms",
                horizontal_bars(ttft, label="time to first token", series=labels, unit="ms"), columns, data.percentiles)
    )  # fmt: skip
    parts.append('</div><h2 id="outcomes">Outcomes</h2><div class="grid">')
    parts.append(
        _figure("finish", "Finish reasons (choices)",
                horizontal_bars([(r[0], [r[1]]) for r in data.finish_reasons], label="finish reasons"),
                ["finish_reason", "choices"], data.finish_reasons)
    )  # fmt: skip
    parts.append(
        _figure("statuses", "Statuses", horizontal_bars([(r[0], [r[1]]) for r in data.statuses], label="statuses"),
                ["status", "requests"], data.statuses)
    )  # fmt: skip
    parts.append(
        _figure("no-usage", "Streams without usage (token counts unknown: pass stream_options.include_usage)",
                horizontal_bars([(r[0], [r[2]]) for r in data.no_usage], label="streams without usage"),
                ["model", "streams", "without_usage"], data.no_usage)
    )  # fmt: skip
    parts.append("</div><h3>Most frequent errors</h3>" + table(["status", "error", "count"], data.errors))
    return "".join(parts)


def _summary(data: ReportData, prices: str) -> str:
    totals = data.totals
    first, last = totals.get("first"), totals.get("last")
    span = f"{first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC" if first and last else "no traffic"
    cards = [
        ("requests", fmt_number(totals.get("requests") or 0)),
        ("tokens", fmt_number(totals.get("tokens") or 0)),
        ("cost", fmt_number(totals.get("cost_usd"), "$")),
        ("errors", fmt_number(totals.get("errors") or 0)),
        ("streams without usage", fmt_number(totals.get("streams_without_usage") or 0)),
        ("requests with an unpriced model", fmt_number(totals.get("unpriced") or 0)),
    ]
    card_html = "".join(f'<div class="card"><b>{escape(v)}</b><span>{escape(k)}</span></div>' for k, v in cards)
    return (
        f'<p class="meta">{escape(span)} · prices: {escape(prices)} · generated '
        f'{datetime.now(UTC):%Y-%m-%d %H:%M} UTC</p><div class="cards">{card_html}</div>'
    )


def _lists(data: ReportData) -> str:
    return (
        '<h2 id="top">Slowest, costliest and latest failed requests</h2>'
        "<p>Click an id to see its conversation and chunk timeline.</p>"
        "<h3>Slowest</h3>" + table(TOP_LIST_COLUMNS, data.slowest, link_first=True)
        + "<h3>Costliest</h3>" + table(TOP_LIST_COLUMNS, data.costliest, link_first=True)
        + "<h3>Latest failed or cut short</h3>" + table(TOP_LIST_COLUMNS, data.failed, link_first=True)
        + "<h3>Models without a price</h3>" + table(["model", "requests"], data.unpriced)
    )  # fmt: skip


def _embed(value: Any) -> str:
    """JSON for a <script type="application/json"> element: `<` escaped so no `</script>` can close it."""
    return json.dumps(value, ensure_ascii=False, default=str).replace("<", "\\u003c")


def build_html(
    con: duckdb.DuckDBPyConnection,
    *,
    cassettes: Path | None,
    prices: str,
    since: datetime | None = None,
    until: datetime | None = None,
    title: str = "LLM traffic report",
) -> tuple[str, int]:
    """The page, and how many interactions it covers."""
    data = report_data(con, since, until)
    details = interaction_details(con, data.top_ids(), cassettes)
    page = _asset("report.html")
    replacements = {
        "{{title}}": escape(title),
        "{{style}}": _asset("report.css"),
        "{{summary}}": _summary(data, prices),
        "{{charts}}": charts(data),
        "{{lists}}": _lists(data),
        "{{data}}": _embed(details),
        "{{script}}": _asset("report.js"),
    }
    for key, value in replacements.items():
        page = page.replace(key, value)
    return page, int(data.totals.get("requests") or 0)


def write_report(
    out: Path,
    db_path: Path | str,
    *,
    lake: Path | str | None = None,
    cassettes: Path | None = None,
    prices: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
) -> int:
    """Write the page to `out` (atomically); returns how many interactions it covers."""
    with source_connection(db_path, lake) as con:
        page, count = build_html(con, cassettes=cassettes, prices=prices, since=since, until=until)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        temporary = out.with_name(out.name + ".tmp")
        temporary.write_text(page, encoding="utf-8")
        temporary.replace(out)
    except OSError as exc:
        raise AnalyticsError(f"cannot write {out}: {exc.strerror or exc}") from None
    return count
