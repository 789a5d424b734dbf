"""Small SVG charts drawn as text: stacked columns, horizontal bars, and a stream's chunk timeline.  (pure)

Our own few functions instead of a charting library: the report must work with no network and no build step,
the charts it needs are simple, and a page of inline SVG is small, prints, and has no script to fail. Every
mark carries a `<title>` (the browser shows it on hover) and a class (`bar`, `tick`) that tests can count.
All text is escaped; numbers are formatted here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from html import escape

PALETTE = (
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2",
    "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
)  # fmt: skip
FONT = 'font-family="system-ui, sans-serif" font-size="11"'


def color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def fmt_number(value: float | None, unit: str = "") -> str:
    """A compact number for labels: 1234 -> 1.23k, 0.000123 -> 0.000123; None -> an en dash."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "\u2013"
    if unit == "$":
        if value == 0 or abs(value) >= 100:
            return f"${value:,.0f}"
        decimals = max(2, 1 - math.floor(math.log10(abs(value))) + 1)  # three significant digits at most
        return f"${value:,.{decimals}f}"
    magnitude = abs(value)
    if magnitude >= 1e9:
        text = f"{value / 1e9:.3g}G"
    elif magnitude >= 1e6:
        text = f"{value / 1e6:.3g}M"
    elif magnitude >= 1e4:
        text = f"{value / 1e3:.3g}k"
    elif magnitude == int(magnitude):
        text = f"{int(value):,}"
    else:
        text = f"{value:.3g}"
    return text + (f" {unit}" if unit else "")


def nice_max(value: float) -> float:
    """A round axis maximum at or above value (1, 2, 2.5, 5 times a power of ten)."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if value <= step * power:
            return step * power
    return 10 * power


def _svg(width: int, height: int, body: list[str], label: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="{escape(label)}" {FONT}>' + "".join(body) + "</svg>"
    )


def _empty(width: int, label: str) -> str:
    return _svg(width, 40, ['<text x="8" y="24" fill="#666">no data</text>'], label)


def stacked_columns(
    categories: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
    *,
    label: str,
    unit: str = "",
    width: int = 760,
    height: int = 220,
    tick_label: Callable[[str], str] = lambda text: text[5:],
) -> str:
    """One column per category (a day: `tick_label` writes it under the column, MM-DD by default), stacked by series
    (models); a legend below. A None adds nothing to the stack."""
    if not categories or not series:
        return _empty(width, label)
    right, top, bottom = 8, 10, 36
    legend_rows = math.ceil(len(series) / 4)
    plot_h = height - top - bottom
    totals = [sum(values[i] or 0 for _, values in series) for i in range(len(categories))]
    top_value = nice_max(max(totals))
    # Room for the widest tick label (small costs need many decimals: "$0.0000200"), at ~7 px a character.
    widest = max(len(fmt_number(top_value * tick / 4, unit)) for tick in range(5))
    left = max(56, 10 + 7 * widest)
    step = (width - left - right) / len(categories)
    bar_w = max(1.0, min(40.0, step * 0.8))
    body: list[str] = []
    for tick in range(5):
        value = top_value * tick / 4
        y = top + plot_h - plot_h * tick / 4
        body.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e5e5"/>')
        body.append(
            f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" fill="#555">'
            f"{escape(fmt_number(value, unit))}</text>"
        )
    label_every = max(1, math.ceil(len(categories) / 12))
    for i, category in enumerate(categories):
        x = left + step * i + (step - bar_w) / 2
        y = top + plot_h
        for s, (name, values) in enumerate(series):
            item = values[i]
            if not item:
                continue
            value = item
            h = plot_h * value / top_value
            y -= h
            title = f"{category} {name}: {fmt_number(value, unit)}"
            body.append(
                f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{max(h, 0.5):.1f}" '
                f'fill="{color(s)}"><title>{escape(title)}</title></rect>'
            )
        if i % label_every == 0:
            cx = left + step * i + step / 2
            body.append(
                f'<text x="{cx:.1f}" y="{top + plot_h + 14}" text-anchor="middle" fill="#555">'
                f"{escape(tick_label(category))}</text>"
            )
    for s, (name, _) in enumerate(series):
        lx = left + (s % 4) * 175
        ly = height - bottom + 24 + (s // 4) * 14
        body.append(f'<rect x="{lx}" y="{ly - 9}" width="10" height="10" fill="{color(s)}"/>')
        body.append(f'<text x="{lx + 14}" y="{ly}">{escape(name[:26])}</text>')
    return _svg(width, height + 14 * (legend_rows - 1), body, label)


def horizontal_bars(
    rows: Sequence[tuple[str, Sequence[float | None]]],
    *,
    label: str,
    series: Sequence[str] = ("",),
    unit: str = "",
    width: int = 760,
) -> str:
    """One group per row label, one bar per series in it (e.g. p50 and p95 of a model); the value is
    written after each bar, None as an en dash with no bar."""
    if not rows:
        return _empty(width, label)
    left, right, bar_h, gap = 190, 70, 12, 8
    values = [value for _, group in rows for value in group if value is not None]
    top_value = nice_max(max(values)) if values else 1.0
    plot_w = width - left - right
    group_h = bar_h * len(series) + gap
    height = 8 + group_h * len(rows) + (16 if len(series) > 1 else 0)
    body: list[str] = []
    for r, (name, group) in enumerate(rows):
        y0 = 4 + r * group_h
        body.append(
            f'<text x="{left - 6}" y="{y0 + bar_h * len(series) / 2 + 4:.1f}" text-anchor="end">'
            f"{escape(name[:30])}</text>"
        )
        for s, value in enumerate(group):
            y = y0 + s * bar_h
            title = f"{name} {series[s]}: {fmt_number(value, unit)}".replace("  ", " ")
            if value is not None and value > 0:
                w = max(1.0, plot_w * value / top_value)
                body.append(
                    f'<rect class="bar" x="{left}" y="{y}" width="{w:.1f}" height="{bar_h - 2}" fill="{color(s)}">'
                    f"<title>{escape(title)}</title></rect>"
                )
            else:
                w = 0.0
            body.append(
                f'<text x="{left + w + 4:.1f}" y="{y + bar_h - 3}" fill="#333">{escape(fmt_number(value, unit))}</text>'
            )
    if len(series) > 1:
        for s, name in enumerate(series):
            lx = left + s * 90
            body.append(f'<rect x="{lx}" y="{height - 13}" width="10" height="10" fill="{color(s)}"/>')
            body.append(f'<text x="{lx + 14}" y="{height - 4}">{escape(name)}</text>')
    return _svg(width, height, body, label)


def timeline(
    events: Sequence[tuple[float, str]],
    *,
    total_ms: float | None,
    ttfb_ms: float | None,
    ttft_ms: float | None,
    width: int = 760,
) -> str:
    """A stream's chunks on a time axis from the request (0 ms) to the end: one tick per event (`kind`:
    content, tool, usage, empty, done, other), with the first byte and first token marked."""
    label = "chunk timeline"
    if not events:
        return _empty(width, label)
    end = max([total_ms or 0.0, *(offset for offset, _ in events)]) or 1.0
    left, right, height = 10, 10, 78
    plot_w = width - left - right
    colors = {"content": color(0), "tool": color(1), "usage": color(2), "done": "#333", "empty": "#bbb"}

    def x(ms: float) -> float:
        return left + plot_w * ms / end

    body = [f'<line x1="{left}" x2="{width - right}" y1="40" y2="40" stroke="#999"/>']
    for tick in range(5):
        ms = end * tick / 4
        anchor = "start" if tick == 0 else "end" if tick == 4 else "middle"
        body.append(
            f'<text x="{x(ms):.1f}" y="72" text-anchor="{anchor}" fill="#555">{escape(fmt_number(ms, "ms"))}</text>'
        )
    for name, at, y in (("first byte", ttfb_ms, 12), ("first token", ttft_ms, 24)):
        if at is not None:
            body.append(
                f'<line x1="{x(at):.1f}" x2="{x(at):.1f}" y1="{y + 2}" y2="56" stroke="#e15759" '
                'stroke-dasharray="3,2"/>'
            )
            body.append(
                f'<text x="{x(at) + 3:.1f}" y="{y}" fill="#e15759">{name} {escape(fmt_number(at, "ms"))}</text>'
            )
    for index, (offset, kind) in enumerate(events):
        body.append(
            f'<rect class="tick" x="{x(offset) - 0.75:.1f}" y="30" width="1.5" height="20" '
            f'fill="{colors.get(kind, color(4))}"><title>#{index} {escape(kind)} at {offset:.1f} ms</title></rect>'
        )
    return _svg(width, height, body, label)
