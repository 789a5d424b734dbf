"""The analytics subcommands of `proxy`: print results, turn every failure into a message and an exit code.

Each takes the parsed flags and the Settings the CLI built from them (and --config), so every command finds
the database by the same rule (`Settings.db_path`). Failures are one line, except `proxy sql`'s, which keeps
DuckDB's own hints on the lines below.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from pathlib import Path

from analytics.db import AnalyticsError
from analytics.prices import overrides_from, price_table, source_description
from analytics.query import cassette_root, export_parquet, import_directory, render, run_sql
from analytics.render import records
from analytics.stats import stats
from proxy.cassettes import iter_cassette_paths
from proxy.settings import Settings


def _fail(message: str) -> int:
    print(f"proxy: {message}", file=sys.stderr)
    return 1


def _print_lines(lines: Iterable[str]) -> None:
    out = sys.stdout
    for line in lines:
        out.write(line)
        out.write("\n")


def cmd_sql(args: argparse.Namespace, settings: Settings) -> int:
    try:
        columns, rows = run_sql(settings.db_path, args.query, args.lake)
        _print_lines(render(columns, rows, args.format, args.max_width))
    except AnalyticsError as exc:
        return _fail(str(exc))
    return 0


def parse_moment(text: str | None, flag: str, *, end_of_day: bool = False) -> datetime | None:
    """An ISO date or date-time; with `end_of_day`, a bare date means the end of that day (until is exclusive,
    so `--until 2026-11-30` includes the 30th)."""
    if text is None:
        return None
    try:
        if end_of_day and len(text.strip()) == 10:
            return datetime.combine(date.fromisoformat(text.strip()) + timedelta(days=1), datetime.min.time())
        return datetime.fromisoformat(text)
    except ValueError:
        raise AnalyticsError(f"{flag} {text!r} is not an ISO date or date-time (e.g. 2026-11-01)") from None


def cmd_stats(args: argparse.Namespace, settings: Settings) -> int:
    try:
        render(["check"], [], "table", args.max_width)  # a bad --max-width fails before the queries run
        sections = stats(
            settings.db_path,
            parse_moment(args.since, "--since"),
            parse_moment(args.until, "--until", end_of_day=True),
            args.by,
            args.lake,
        )
        prices = source_description(overrides_from(settings.prices))
        fmt = args.format
        if fmt == "csv":
            _print_lines(render(sections[0].columns, sections[0].rows, "csv"))
        elif fmt == "json":
            body = {
                "prices": prices,
                "sections": [
                    {"title": section.title, "rows": records(section.columns, section.rows)} for section in sections
                ],
            }
            print(json.dumps(body, ensure_ascii=False, indent=1))
        else:
            print(f"prices: {prices} (costs are computed when a row is recorded or imported)")
            for section in sections:
                print()
                print(f"## {section.title}")
                if section.rows:
                    _print_lines(render(section.columns, section.rows, "table", args.max_width))
                else:
                    print("(none)")
    except AnalyticsError as exc:
        return _fail(str(exc))
    return 0


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    source = settings.cassettes
    if source.is_file():  # one cassette: the database is found from the directory it belongs to
        db = settings.model_copy(update={"cassettes": cassette_root(source)}).db_path
    else:
        db = settings.db_path
        if source.is_dir() and next(iter_cassette_paths(source), None) is None:
            # Nothing to do is almost always a wrong path: say so, create no database, and exit 1 (like grep).
            return _fail(f"no cassettes (*.json) in {source}: nothing imported")
    try:
        report = import_directory(db, source, prices=price_table(overrides_from(settings.prices)))
    except AnalyticsError as exc:
        return _fail(str(exc))
    print(
        f"imported {report.imported} interaction(s) into {db}; "
        f"{report.skipped_existing} already there (their cost, tags and timings refreshed); "
        f"{len(report.bad)} bad cassette(s)"
    )
    for bad in report.bad:
        print(f"  skipped {bad.path}: {bad.reason}", file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    try:
        report = export_parquet(settings.db_path, args.out)
    except AnalyticsError as exc:
        return _fail(str(exc))
    if report.run_id is None:
        print(f"nothing new to export to {args.out}/ (every interaction of {settings.db_path} is there already)")
        return 0
    print(
        f"exported {report.interactions} new interaction(s) and {report.choices} choice(s) to {args.out}/ "
        f"(Parquet, partitioned by day; run {report.run_id[:12]})"
    )
    return 0


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    from analytics.report import write_report

    try:
        out = Path(args.out)
        count = write_report(
            out,
            settings.db_path,
            lake=args.lake,
            cassettes=settings.cassettes,
            prices=source_description(overrides_from(settings.prices)),
            since=parse_moment(args.since, "--since"),
            until=parse_moment(args.until, "--until", end_of_day=True),
        )
    except AnalyticsError as exc:
        return _fail(str(exc))
    print(f"wrote {out} ({count} interactions; open it in a browser, it needs no network)")
    return 0
