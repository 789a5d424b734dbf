"""Turn the raw measurements into figures, ratios, PASS/MISS verdicts and printed tables."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from payloads import STREAM_EVENTS
from stats import median, percentile

Raw = dict[str, Any]


def _plain_figures(rounds: list[Raw]) -> dict[str, float | None]:
    good = [r for r in rounds if "error" not in r and r.get("ok")]
    return {
        "rps": median([r["rps"] for r in good]),
        "p50_ms": median([r["latency_ms"]["p50"] for r in good]),
        "p99_ms": median([r["latency_ms"]["p99"] for r in good]),
        "cpu_us_per_request": median([r.get("cpu_us_per_request") for r in good]),
        # the target process alone, without its children (our recording worker): the traffic's own path
        "cpu_us_per_request_main": median([r.get("cpu_us_per_request_main") for r in good]),
        # fraction of its core the target used: below ~85% it was not the bottleneck (the load generator was)
        "core_pct": median([r.get("core_pct") for r in good]),
        "drain_s": median([r["drain"]["drain_seconds"] for r in good if "drain" in r]),
        "errors": sum(r.get("errors", 0) for r in rounds) + sum(1 for r in rounds if "error" in r),
    }


def _stream_figures(rounds: list[Raw]) -> dict[str, float | None]:
    good = [r for r in rounds if "error" not in r]
    ttfc = [x for r in good for x in r["ttfc_ms"]]
    total = [x for r in good for x in r["completion_ms"]]
    gaps = [x for r in good for x in r["gap_deviation_ms"]]
    cpu = sum(r.get("cpu_seconds") or 0.0 for r in good)
    cpu_main = sum((r.get("cpu_us_per_request_main") or 0.0) * (r.get("ok") or 0) / 1e6 for r in good)
    events = len(ttfc) * STREAM_EVENTS
    return {
        "streams": len(ttfc),
        # the target's process tree, recording and database included, per SSE event passed on
        "cpu_us_per_event": round(cpu / events * 1e6, 1) if events and cpu else None,
        # the target process alone, without its children (our recording worker): the traffic's own path
        "cpu_us_per_event_main": round(cpu_main / events * 1e6, 1) if events and cpu_main else None,
        "ttfc_p50_ms": percentile(ttfc, 50),
        "ttfc_p99_ms": percentile(ttfc, 99),
        "completion_p50_ms": percentile(total, 50),
        "completion_p99_ms": percentile(total, 99),
        "gap_dev_p99_ms": percentile(gaps, 99),
        "gap_dev_max_ms": max(gaps) if gaps else None,
        "errors": sum(r.get("errors", 0) for r in good) + len(rounds) - len(good),
    }


def _event_ratio(
    stream: dict[str, dict[str, float | None]],
    a: str,
    b: str,
    figure_a: str = "cpu_us_per_event",
    figure_b: str = "cpu_us_per_event",
) -> float | None:
    x, y = stream.get(a, {}).get(figure_a), stream.get(b, {}).get(figure_b)
    return round(x / y, 3) if x and y else None


def _per_round(raw: Raw, top: str, bottom: str, level: str = "c64") -> list[float]:
    """(top rps / bottom rps) for each round in which both were measured; `level` may name several, joined
    by "+" (the DuckDB ratio pools the plain rounds and the extra pairs)."""
    ratios: list[float] = []
    for one in level.split("+"):
        tops, bottoms = raw["plain"].get(top, {}).get(one, []), raw["plain"].get(bottom, {}).get(one, [])
        ratios += [
            a["rps"] / b["rps"]
            for a, b in zip(tops, bottoms, strict=False)
            if "error" not in a and "error" not in b and a.get("rps") and b.get("rps")
        ]
    return ratios


def _paired(raw: Raw, top: str, bottom: str, level: str = "c64") -> float | None:
    """Median over rounds of same-round ratios: robust to a noisy machine."""
    return median(_per_round(raw, top, bottom, level))


RATIO_PAIRS = {
    "record_vs_passthrough_c64": ("record", "passthrough", "c64"),
    "record_vs_mitm_record_c64": ("record", "mitm_record", "c64"),
    "record_vs_litellm_c64": ("record", "litellm", "c64"),
    "replay_vs_bare_c64": ("replay", "bare", "c64"),
    "replay_vs_mitm_replay_c64": ("replay", "mitm_replay", "c64"),
    "record_db_vs_nodb_c64": ("record", "record_nodb", "c64+c64_pairs"),
    "record_vs_passthrough_c1": ("record", "passthrough", "c1"),
    "replay_vs_bare_c1": ("replay", "bare", "c1"),
}


def summarise(raw: Raw) -> Raw:
    plain = {key: {level: _plain_figures(rounds) for level, rounds in by.items()} for key, by in raw["plain"].items()}
    stream = {key: _stream_figures(rounds) for key, rounds in raw["stream"].items()}
    direct = stream.get("direct", {})
    for figures in stream.values():
        for q in ("p50", "p99"):
            here, base = figures.get(f"ttfc_{q}_ms"), direct.get(f"ttfc_{q}_ms")
            figures[f"added_ttfc_{q}_ms"] = None if here is None or base is None else here - base
    cpu = {key: by.get("c64", {}).get("cpu_us_per_request") for key, by in plain.items()}
    main = {key: by.get("c64", {}).get("cpu_us_per_request_main") for key, by in plain.items()}

    def cpu_ratio(a: str, b: str) -> float | None:
        x, y = cpu.get(a), cpu.get(b)
        return x / y if x and y else None

    ratios: dict[str, float | None] = {name: _paired(raw, *pair) for name, pair in RATIO_PAIRS.items()}
    spread = {name: _per_round(raw, *pair) for name, pair in RATIO_PAIRS.items()}
    ratios |= {
        "cpu_per_request_record_vs_passthrough": cpu_ratio("record", "passthrough"),
        "cpu_per_request_record_main_vs_passthrough": (
            record_main / passthrough_main
            if (record_main := main.get("record")) and (passthrough_main := main.get("passthrough"))
            else None
        ),
        "cpu_per_request_replay_vs_bare": cpu_ratio("replay", "bare"),
        "cpu_per_request_record_db_vs_nodb": cpu_ratio("record", "record_nodb"),
        "cpu_per_event_record_vs_passthrough": _event_ratio(stream, "record", "passthrough"),
        "cpu_per_event_record_nodb_vs_passthrough": _event_ratio(stream, "record_nodb", "passthrough"),
        "cpu_per_event_record_vs_passthrough_tee": _event_ratio(stream, "record", "passthrough_tee"),
        "cpu_per_event_record_main_vs_passthrough_tee": _event_ratio(
            stream, "record", "passthrough_tee", "cpu_us_per_event_main", "cpu_us_per_event"
        ),
    }
    return {"plain": plain, "stream": stream, "ratios": ratios, "ratio_rounds": spread}


def _diff(summary: Raw, key: str, figure: str) -> float | None:
    ours, floor = summary["stream"].get("record", {}).get(figure), summary["stream"].get(key, {}).get(figure)
    return None if ours is None or floor is None else ours - floor


def _saturation_note(summary: Raw, floor: str, ours: str, cpu_ratio: str) -> str | None:
    """When the floor did not fill its core, the load generator capped it and the throughput ratio flatters us."""
    busy = summary["plain"].get(floor, {}).get("c64", {}).get("core_pct")
    ratio = summary["ratios"].get(cpu_ratio)
    if busy is None or ratio is None:
        return None
    capped = "so not CPU-bound: the load generator (or another tenant) capped it; " if busy < 85 else ""
    return f"{floor} used {busy:.0f}% of its core: {capped}by CPU per request {ours} is {1 / ratio:.2f}x of {floor}"


def verdicts(raw: Raw, summary: Raw) -> list[Raw]:
    r = summary["ratios"]
    growth = raw.get("growth", {}).get("record", {}).get("rss_growth_mb")
    db_note = raw.get("db_note")
    count = raw.get("config", {}).get("growth_requests", 10_000)
    checks: list[tuple[str, float | None, Callable[[float], bool], str]] = [
        ("record c=64 throughput >= 70% of pass-through", r["record_vs_passthrough_c64"], lambda v: v >= 0.70, "x"),
        ("record c=64 throughput >= 2x mitmproxy record", r["record_vs_mitm_record_c64"], lambda v: v >= 2.0, "x"),
        ("stream TTFC p50 within 0.5 ms of pass-through", _diff(summary, "passthrough", "ttfc_p50_ms"),
         lambda v: v <= 0.5, "ms"),
        ("stream gap deviation p99 within 1 ms of pass-through", _diff(summary, "passthrough", "gap_dev_p99_ms"),
         lambda v: v <= 1.0, "ms"),
        ("replay c=64 throughput >= 80% of bare handler", r["replay_vs_bare_c64"], lambda v: v >= 0.80, "x"),
        ("replay c=64 throughput >= 2x mitmproxy replay", r["replay_vs_mitm_replay_c64"], lambda v: v >= 2.0, "x"),
        (f"record RSS growth over {count:,} requests < 30 MB", growth, lambda v: v < 30.0, "MB"),
        ("record with DB >= 95% of --no-db throughput", r["record_db_vs_nodb_c64"], lambda v: v >= 0.95, "x"),
        # issue #16's targets, by CPU (the target's whole process tree, recording included)
        ("record CPU per streamed event <= 1.2x teeing pass-through", r["cpu_per_event_record_vs_passthrough_tee"],
         lambda v: v <= 1.2, "x"),
        ("  the proxy process alone (worker apart) <= 1.2x", r["cpu_per_event_record_main_vs_passthrough_tee"],
         lambda v: v <= 1.2, "x"),
        ("record CPU per streamed event <= 1.2x bare pass-through", r["cpu_per_event_record_vs_passthrough"],
         lambda v: v <= 1.2, "x"),
        ("record CPU per request <= 1.15x pass-through", r["cpu_per_request_record_vs_passthrough"],
         lambda v: v <= 1.15, "x"),
        ("  the proxy process alone (worker apart) <= 1.15x", r["cpu_per_request_record_main_vs_passthrough"],
         lambda v: v <= 1.15, "x"),
        ("replay CPU per request <= 1.1x bare handler", r["cpu_per_request_replay_vs_bare"], lambda v: v <= 1.1, "x"),
    ]  # fmt: skip
    out = []
    for name, value, ok, unit in checks:
        verdict = "N/A" if value is None else ("PASS" if ok(value) else "MISS")
        entry: Raw = {"target": name, "value": value, "unit": unit, "verdict": verdict}
        if "DB" in name and db_note:
            entry["note"] = db_note
        if "bare handler" in name:
            entry["note"] = _saturation_note(summary, "bare", "replay", "cpu_per_request_replay_vs_bare")
        if "pass-through" in name and "throughput" in name:
            entry["note"] = _saturation_note(summary, "passthrough", "record", "cpu_per_request_record_vs_passthrough")
        out.append(entry)
    return out


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in rows]
    return [line, rule, *body]


def render(raw: Raw, summary: Raw, checks: list[Raw]) -> list[str]:
    labels: dict[str, str] = {key: t["label"] for key, t in raw["targets"].items()}
    peaks: dict[str, Any] = raw.get("peak_rss_kb", {})
    out = [
        "",
        "Plain requests (median of rounds; latency in ms). CPU us/req: the target process's CPU time (all threads,",
        "recording backlog included) per request at c=64; core %: its CPU time / wall time inside the c=64 window;",
        "drain s: time after the c=64 window until every cassette and DB row was written.",
    ]
    rows = []
    for key, by in summary["plain"].items():
        c1, c64 = by.get("c1", {}), by.get("c64", {})
        peak = peaks.get(key)
        rows.append([labels.get(key, key), _fmt(c1.get("rps"), 0), _fmt(c1.get("p50_ms")), _fmt(c1.get("p99_ms")),
                     _fmt(c64.get("rps"), 0), _fmt(c64.get("p50_ms")), _fmt(c64.get("p99_ms")),
                     _fmt(c64.get("cpu_us_per_request"), 0), _fmt(c64.get("core_pct"), 0), _fmt(c64.get("drain_s")),
                     _fmt(peak / 1024 if peak else None, 1)])  # fmt: skip
    out += table(["target", "c=1 req/s", "c=1 p50", "c=1 p99", "c=64 req/s", "c=64 p50", "c=64 p99",
                  "CPU us/req", "core %", "drain s", "peak RSS MB"], rows)  # fmt: skip
    out += ["", "Streams of 200 SSE events 5 ms apart (pooled over rounds; ms)"]
    rows = []
    figures = ("ttfc_p50_ms", "ttfc_p99_ms", "added_ttfc_p50_ms", "added_ttfc_p99_ms", "completion_p50_ms",
               "gap_dev_p99_ms", "gap_dev_max_ms", "cpu_us_per_event")  # fmt: skip
    for key, s in summary["stream"].items():
        rows.append([labels.get(key, key), str(s["streams"]), *(_fmt(s.get(f)) for f in figures)])
    out += table(["target", "streams", "TTFC p50", "TTFC p99", "+TTFC p50", "+TTFC p99", "complete p50",
                  "gap dev p99", "gap dev max", "CPU us/event"], rows)  # fmt: skip
    out += ["", "Ratios (throughput: median of the same-round ratios, and their range; CPU: of the medians)"]
    rows = []
    for name, value in summary["ratios"].items():
        rounds = summary["ratio_rounds"].get(name) or []
        span = f"{min(rounds):.2f} .. {max(rounds):.2f} ({len(rounds)})" if rounds else ""
        rows.append([name, _fmt(value, 3), span])
    out += table(["ratio", "value", "rounds: min .. max (n)"], rows)
    growth = raw.get("growth", {})
    if growth:
        out += ["", "RSS growth over the growth run (VmRSS before -> after, recordings flushed)"]
        rows = [[labels.get(k, k), str(g.get("ok")), _fmt((g.get("rss_before_kb") or 0) / 1024, 1),
                 _fmt((g.get("rss_after_kb") or 0) / 1024, 1), _fmt(g.get("rss_growth_mb"))]
                for k, g in growth.items()]  # fmt: skip
        out += table(["target", "requests", "before MB", "after MB", "growth MB"], rows)
    out += ["", "Targets"]
    for check in checks:
        value = "-" if check["value"] is None else f"{check['value']:.3f} {check['unit']}"
        note = f"  ({check['note']})" if check.get("note") else ""
        out.append(f"  {check['verdict']:<4}  {check['target']}: {value}{note}")
    return out
