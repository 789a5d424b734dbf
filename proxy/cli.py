"""The `proxy` command, the composition root: parse flags, build Settings, call one run function per command.

The flags of the settings come from their declarations (proxy/settings.py, via proxy/options.py); the options
that belong to one command only (the query of `sql`, `--format`, `--since`, ...) are declared here. The analytics
commands are registered in `_analytics_handler`'s table and imported only when one runs, so `proxy replay` never
loads DuckDB.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from proxy import __version__
from proxy.config import load_settings
from proxy.errors import CassetteDirError, ConfigError, ProxyError
from proxy.options import add_setting_flags, options
from proxy.settings import Settings

EXAMPLES = {
    "record": [
        "proxy record",
        "proxy record --upstream http://127.0.0.1:11434 --cassettes recordings/ --port 8081",
        "proxy record --config proxy.toml --no-db --quiet",
    ],
    "replay": [
        "proxy replay cassettes/",
        "proxy replay --cassettes cassettes/ --timing original --speed 2",
        "proxy replay cassettes/ --ignore-body-field seed --on-exhausted fail",
    ],
    "serve": [
        "proxy serve --mode auto --cassettes cassettes/",
        "proxy serve --mode once cassettes/ --upstream http://127.0.0.1:11434",
    ],
    "sql": [
        'proxy sql "SELECT model, sum(total_tokens) FROM interactions GROUP BY model"',
        'proxy sql "SELECT * FROM errors" --cassettes recordings/ --format csv',
        'proxy sql "SELECT count(*) FROM interactions" --lake /shared/lake/',
    ],
    "stats": [
        "proxy stats",
        "proxy stats --since 2026-11-01 --by tag:feature --format csv",
        "proxy stats --config proxy.toml --max-width 40",
    ],
    "report": [
        "proxy report",
        "proxy report report.html --since 2026-11-01 --cassettes recordings/",
    ],
    "import": [
        "proxy import cassettes/",
        "proxy import cassettes/20261201/120000710-chat-completions-gpt-4o-mini-8f2a1c3d.json",
        "proxy import --cassettes recordings/ --db rebuilt.duckdb --config proxy.toml",
    ],
    "export": [
        "proxy export --format parquet /shared/lake/",
        "proxy export /shared/lake/ --cassettes recordings/",
    ],
}

SUMMARIES = {
    "record": "forward to the upstream and record every interaction",
    "replay": "serve recordings offline: no upstream, no API key",
    "serve": "the general form: --mode record|replay|auto|once",
    "sql": "run SQL over the recorded traffic",
    "stats": "summary: cost, tokens, latency, time to first token, tokens/s, errors",
    "report": "write one self-contained HTML report with charts (no network needed to view)",
    "import": "build or refresh the database from cassettes (idempotent)",
    "export": "append what is new as Parquet, partitioned by day, into a shared lake folder",
}

DB_RULE = (
    "Settings come from defaults < the --config FILE (TOML) < flags. Every command finds the database by one rule:\n"
    "--db PATH, else traffic.duckdb beside the cassette directory (--cassettes DIR, default cassettes/)."
)

# Flags a command took before its flags came from the declarations, although it does not use them (`proxy replay
# --no-db` in scripts and in bench/): still accepted, without effect, and left out of --help.
ACCEPTED_UNUSED = {
    "replay": ("db_enabled",),
    "record": ("timing", "speed", "ignore_body_fields", "match_headers", "on_exhausted"),
}

FORMAT_HELP = "output format (default: table)"
MAX_WIDTH_HELP = "cut table cells longer than N characters with … (default: never cut; csv and json never cut)"


def _examples(lines: list[str]) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="proxy",
        description="Record, replay and analyse OpenAI-style Chat Completions traffic.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_examples([lines[0] for lines in EXAMPLES.values()]) + "\n\n" + DB_RULE,
    )
    parser.add_argument("--version", action="version", version=f"proxy {__version__}")
    commands = parser.add_subparsers(
        dest="command",
        metavar="COMMAND",
        required=True,
        help="the command to run (proxy COMMAND --help shows its flags)",
    )

    def command(name: str) -> argparse.ArgumentParser:
        cmd = commands.add_parser(
            name,
            help=SUMMARIES[name],
            description=f"{SUMMARIES[name]}.\n\n{DB_RULE}",
            epilog=_examples(EXAMPLES[name]),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        cmd.add_argument("--config", metavar="FILE", type=Path, help="TOML settings file (flags override it)")
        return cmd

    def cassette_dir(cmd: argparse.ArgumentParser, what: str) -> None:
        cmd.add_argument("cassettes_arg", metavar="DIR", nargs="?", help=f"{what} (the same as --cassettes DIR)")

    for name in ("record", "replay", "serve"):
        cmd = command(name)
        cassette_dir(cmd, "cassette directory")
        add_setting_flags(cmd, name, ACCEPTED_UNUSED.get(name, ()))

    def lake_flag(cmd: argparse.ArgumentParser) -> None:
        cmd.add_argument(
            "--lake", metavar="DIR", type=Path, help="read a Parquet lake (proxy export) instead of the database"
        )

    def window_flags(cmd: argparse.ArgumentParser) -> None:
        cmd.add_argument("--since", metavar="DATE", help="only traffic at or after this ISO date/time, UTC")
        cmd.add_argument("--until", metavar="DATE", help="only traffic before this date/time; a date: to its end")

    sql = command("sql")
    sql.add_argument("query", metavar="SQL", help="the query (several statements: the last one's result is shown)")
    add_setting_flags(sql, "sql")
    lake_flag(sql)
    sql.add_argument("--format", choices=("table", "csv", "json"), default="table", help=FORMAT_HELP)
    sql.add_argument("--max-width", metavar="N", type=int, help=MAX_WIDTH_HELP)

    stats = command("stats")
    add_setting_flags(stats, "stats")
    lake_flag(stats)
    window_flags(stats)
    stats.add_argument(
        "--by", default="model", metavar="model|day|tag:NAME", help="group the first table by this (default: model)"
    )
    stats.add_argument(
        "--format", choices=("table", "csv", "json"), default="table", help=FORMAT_HELP + "; csv: the first table"
    )
    stats.add_argument("--max-width", metavar="N", type=int, help=MAX_WIDTH_HELP)

    report = command("report")
    report.add_argument(
        "out", metavar="OUT", type=Path, nargs="?", default=Path("report.html"), help="HTML file (default: report.html)"
    )
    add_setting_flags(report, "report")
    lake_flag(report)
    window_flags(report)

    imp = command("import")
    imp.add_argument(
        "cassettes_arg",
        metavar="PATH",
        nargs="?",
        help="a cassette directory (read recursively) or one cassette file (the same as --cassettes PATH)",
    )
    add_setting_flags(imp, "import")

    export = command("export")
    export.add_argument("out", metavar="OUT", type=Path, help="the lake folder to append to")
    export.add_argument("--format", choices=("parquet",), default="parquet", help="file format (default: parquet)")
    add_setting_flags(export, "export")
    return parser


def subcommand_parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """argparse, except that an unknown flag is reported with the usage of the command it was given to."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        command = subcommand_parsers(parser)[args.command]
        known = [
            flag for action in command._actions if action.help != argparse.SUPPRESS for flag in action.option_strings
        ]
        hints = [
            f"{word} (did you mean {close[0]}?)" if (close := difflib.get_close_matches(word, known, n=1)) else word
            for word in unknown
        ]
        command.error(f"unrecognized arguments: {' '.join(hints)}")
    return args


def settings_from(args: argparse.Namespace, mode: str | None) -> Settings:
    overrides: dict[str, Any] = {option.name: getattr(args, option.name, None) for option in options()}
    positional = getattr(args, "cassettes_arg", None)
    if positional is not None:
        if overrides["cassettes"] is not None and Path(overrides["cassettes"]) != Path(positional):
            raise ConfigError(f"two cassette directories given: {positional} and --cassettes {overrides['cassettes']}")
        overrides["cassettes"] = positional
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


def _analytics_handler(name: str) -> Callable[[argparse.Namespace, Settings], int]:
    from analytics import commands  # here, not at the top: the server commands never import DuckDB

    table: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
        "sql": commands.cmd_sql,
        "stats": commands.cmd_stats,
        "report": commands.cmd_report,
        "import": commands.cmd_import,
        "export": commands.cmd_export,
    }
    return table[name]


def _run(args: argparse.Namespace) -> int:
    if args.command in ("record", "replay", "serve"):
        return _run_server(args)
    settings = settings_from(args, None)
    return _analytics_handler(args.command)(args, settings)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        code = _run(parse_args(argv))
        sys.stdout.flush()  # here, so a closed pipe is seen now and not at exit
        return code
    except BrokenPipeError:
        # The reader (`| head`) has gone: end quietly, like a Unix tool killed by SIGPIPE (exit 128 + 13).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
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
