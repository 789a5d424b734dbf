"""The analytics subcommands of `proxy`: print results, turn every failure into one line and an exit code."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from datetime import datetime

from analytics.db import AnalyticsError
from analytics.query import export_parquet, import_directory, render, run_sql, stats


def _fail(message: str) -> int:
    print(f"proxy: {message}", file=sys.stderr)
    return 1


def _print_lines(lines: Iterable[str]) -> None:
    out = sys.stdout
    for line in lines:
        out.write(line)
        out.write("\n")


def cmd_sql(args: argparse.Namespace) -> int:
    try:
        columns, rows = run_sql(args.db, args.query)
        _print_lines(render(columns, rows, args.format))
    except AnalyticsError as exc:
        return _fail(str(exc))
    return 0


def _parse_since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise AnalyticsError(f"--since {text!r} is not an ISO date or date-time (e.g. 2026-11-01)") from None


def cmd_stats(args: argparse.Namespace) -> int:
    try:
        sections = stats(args.db, _parse_since(args.since))
        for number, section in enumerate(sections):
            if number:
                print()
            print(f"## {section.title}")
            if section.rows:
                _print_lines(render(section.columns, section.rows, "table"))
            else:
                print("(none)")
    except AnalyticsError as exc:
        return _fail(str(exc))
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    try:
        report = import_directory(args.db, args.cassettes)
    except AnalyticsError as exc:
        return _fail(str(exc))
    print(
        f"imported {report.imported} interaction(s) into {args.db}; "
        f"{report.skipped_existing} already there; {len(report.bad)} bad cassette(s)"
    )
    for bad in report.bad:
        print(f"  skipped {bad.path}: {bad.reason}", file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    try:
        report = export_parquet(args.db, args.out)
    except AnalyticsError as exc:
        return _fail(str(exc))
    print(
        f"exported {report.interactions} interaction(s) and {report.choices} choice(s) to {args.out}/ "
        f"(Parquet, partitioned by day)"
    )
    return 0
