"""The `proxy` command: parse flags, build Settings, call one run function. No logic lives here."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from proxy import __version__
from proxy.errors import CassetteDirError, ProxyError
from proxy.settings import Settings, load_settings

EXAMPLES = {
    "record": "proxy record --upstream https://api.openai.com --cassettes cassettes/",
    "replay": "proxy replay cassettes/ --timing original --speed 2",
    "serve": "proxy serve --mode auto --cassettes cassettes/",
    "sql": 'proxy sql "SELECT model, sum(total_tokens) FROM interactions GROUP BY model" --format csv',
    "stats": "proxy stats --since 2026-11-01 --by tag:feature --format csv",
    "import": "proxy import cassettes/ --db traffic.duckdb",
    "export": "proxy export --format parquet /shared/lake/",
    "report": "proxy report report.html --since 2026-11-01",
}


def _server_flags(parser: argparse.ArgumentParser, *, mode: bool, upstream: bool, cassettes_flag: bool) -> None:
    if mode:
        parser.add_argument(
            "--mode",
            help="record (always forward and record), replay (recordings only, offline), auto (replay hits, "
            "record misses), once (record into an empty cassette directory, else replay only); VCR.py names "
            "all/none/new_episodes are accepted",
        )
    if upstream:
        parser.add_argument("--upstream", metavar="URL", help="where to forward (default https://api.openai.com)")
    parser.add_argument("--host", metavar="H", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", metavar="P", type=int, help="port to listen on (default 8080)")
    if cassettes_flag:
        parser.add_argument("--cassettes", metavar="DIR", type=Path, help="cassette directory (default cassettes/)")
    parser.add_argument("--db", metavar="PATH", type=Path, help="DuckDB file (default traffic.duckdb beside DIR)")
    parser.add_argument("--no-db", dest="db_enabled", action="store_const", const=False, help="do not write DuckDB")
    parser.add_argument("--timing", choices=("fast", "original"), help="replay pace: back to back, or as recorded")
    parser.add_argument("--speed", type=float, metavar="X", help="with --timing original: play X times faster")
    parser.add_argument(
        "--ignore-body-field",
        dest="ignore_body_fields",
        action="append",
        metavar="NAME",
        help="replay matching leaves this top-level body field out (repeatable), e.g. user, seed, metadata",
    )
    parser.add_argument(
        "--match-header",
        dest="match_headers",
        action="append",
        metavar="NAME",
        help="replay matching also compares this request header (repeatable)",
    )
    parser.add_argument(
        "--on-exhausted",
        choices=("repeat", "fail"),
        help="when every recording of a request was replayed: repeat the last one (default), or miss",
    )
    parser.add_argument("--config", metavar="FILE", type=Path, help="TOML settings file (flags override it)")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    parser.add_argument("--quiet", action="store_const", const=True, help="no log line per request")


def _stored_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store-all",
        dest="store_all",
        action="store_const",
        const=True,
        help="the stored-completions API (GET /v1/chat/completions...) lists every recorded chat completion, "
        "not only those created with store: true",
    )
    parser.add_argument(
        "--stored-completions",
        choices=("local", "forward"),
        help="answer the stored-completions API from the recordings (local, the default), or handle its calls "
        "like any other request (forward: in auto mode, replayed if recorded, else forwarded and recorded)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="proxy",
        description="Record, replay and analyse OpenAI-style Chat Completions traffic.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n" + "\n".join(f"  {line}" for line in EXAMPLES.values()),
    )
    parser.add_argument("--version", action="version", version=f"proxy {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name,
            help=help_text,
            description=f"{help_text}\n\nexample:\n  {EXAMPLES[name]}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    record = command("record", "forward to the upstream and record every interaction")
    _server_flags(record, mode=False, upstream=True, cassettes_flag=True)
    replay = command("replay", "serve recordings offline: no upstream, no API key")
    replay.add_argument("cassettes", metavar="DIR", type=Path, help="directory of cassettes (searched recursively)")
    _server_flags(replay, mode=False, upstream=False, cassettes_flag=False)
    _stored_flags(replay)
    serve = command("serve", "the general form: --mode record|replay|auto")
    _server_flags(serve, mode=True, upstream=True, cassettes_flag=True)
    _stored_flags(serve)

    def reader_flags(cmd: argparse.ArgumentParser, *, lake: bool = True) -> None:
        cmd.add_argument("--db", metavar="PATH", type=Path, default=Path("traffic.duckdb"))
        if lake:
            cmd.add_argument("--lake", metavar="DIR", type=Path, help="read a Parquet lake (proxy export) instead")
        cmd.add_argument("--config", metavar="FILE", type=Path, help="TOML settings file (for [prices])")

    def window_flags(cmd: argparse.ArgumentParser) -> None:
        cmd.add_argument("--since", metavar="DATE", help="only traffic recorded at or after this ISO date/time (UTC)")
        cmd.add_argument("--until", metavar="DATE", help="only traffic before this date/time (a date: to its end)")

    sql = command("sql", "run SQL over the recorded traffic")
    sql.add_argument("query", metavar="SQL")
    reader_flags(sql)
    sql.add_argument("--format", choices=("table", "csv", "json"), default="table")
    stats = command("stats", "summary: cost, tokens, latency, time to first token, tokens/s, errors")
    reader_flags(stats)
    window_flags(stats)
    stats.add_argument("--by", default="model", metavar="model|day|tag:NAME", help="group the first table by this")
    stats.add_argument("--format", choices=("table", "csv", "json"), default="table")
    report = command("report", "write one self-contained HTML report with charts (no network needed to view)")
    report.add_argument("out", metavar="OUT", type=Path, nargs="?", default=Path("report.html"))
    reader_flags(report)
    window_flags(report)
    report.add_argument("--cassettes", metavar="DIR", type=Path, help="for chunk timelines (default: the config's)")
    imp = command("import", "build or refresh the database from a cassette directory (idempotent)")
    imp.add_argument("cassettes", metavar="DIR", type=Path)
    reader_flags(imp, lake=False)
    export = command("export", "append what is new as Parquet, partitioned by day, into a shared lake folder")
    export.add_argument("out", metavar="OUT", type=Path)
    export.add_argument("--format", choices=("parquet",), default="parquet")
    reader_flags(export, lake=False)
    return parser


SERVER_KEYS = (
    "ignore_body_fields",
    "match_headers",
    "on_exhausted",
    "upstream",
    "host",
    "port",
    "cassettes",
    "db",
    "db_enabled",
    "timing",
    "speed",
    "log_level",
    "quiet",
    "mode",
    "store_all",
    "stored_completions",
)


def settings_from(args: argparse.Namespace, mode: str | None) -> Settings:
    overrides: dict[str, Any] = {key: getattr(args, key, None) for key in SERVER_KEYS}
    if mode is not None:
        overrides["mode"] = mode
    return load_settings(args.config, overrides)


def _run_server(args: argparse.Namespace) -> int:
    # The CLI is the composition root: it hands analytics to the proxy (the DuckDB rows as a recording sink, the
    # report's routes); proxy/ itself imports nothing of analytics/.
    from analytics.report_routes import report_routes
    from analytics.sinks import database_sinks
    from proxy.server import run

    mode = {"record": "record", "replay": "replay"}.get(args.command)
    settings = settings_from(args, mode)
    run(settings, sinks=database_sinks(settings), extra_routes=report_routes(settings))
    return 0


def _run_analytics(args: argparse.Namespace) -> int:
    import analytics.commands

    handler: Callable[[argparse.Namespace], int] = getattr(analytics.commands, f"cmd_{args.command}")
    return handler(args)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command in ("record", "replay", "serve"):
            return _run_server(args)
        return _run_analytics(args)
    except CassetteDirError as exc:
        print(f"proxy: {exc}", file=sys.stderr)
        return 2
    except ProxyError as exc:
        print(f"proxy: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
