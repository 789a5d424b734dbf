"""The proxy benchmark, in one command: `python bench/run.py [--profile]` (see bench/README.md).

Starts a fast fake upstream and every target side by side (direct, a bare aiohttp pass-through, mitmproxy
record and server replay, `proxy record` with and without DuckDB, `proxy replay`, a bare handler serving the
recorded bytes), measures them in interleaved rounds, prints the tables, ratios and PASS/MISS per target,
and writes every raw figure to bench/results/latest.json. Takes about 8 minutes (9 with --profile).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchenv
import machine
import phases
import procs
import report
import targets

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of plain measurements")
    parser.add_argument("--seconds", type=float, default=2.0, help="measured seconds per c=64 plain run")
    parser.add_argument("--c1-seconds", type=float, default=1.0, help="measured seconds per c=1 plain run")
    parser.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds before each plain run")
    parser.add_argument("--stream-rounds", type=int, default=2)
    parser.add_argument("--streams", type=int, default=24, help="streams per target and round")
    parser.add_argument("--stream-concurrency", type=int, default=4)
    parser.add_argument("--growth-requests", type=int, default=10_000)
    parser.add_argument(
        "--db-pairs", type=int, default=4, help="extra back-to-back c=64 pairs of record with and without DuckDB"
    )
    parser.add_argument("--profile", action="store_true", help="also profile record and replay with py-spy")
    parser.add_argument("--profile-seconds", type=float, default=8.0)
    parser.add_argument("--no-mitmproxy", action="store_true", help="skip mitmproxy even if installed")
    parser.add_argument("--no-litellm", action="store_true", help="skip LiteLLM's proxy even if installed")
    parser.add_argument("--no-install", action="store_true", help="do not create or fill bench/.venv")
    parser.add_argument("--budget-minutes", type=float, default=9.5, help="skip what is left after this")
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    return parser.parse_args(argv)


def project_missing() -> str | None:
    """Why this interpreter cannot run our proxy and the floors, or None when it can."""
    try:
        import aiohttp  # noqa: F401

        import proxy.cli  # noqa: F401
    except ImportError as exc:
        return f"{exc}; run the benchmark with the project's interpreter (pip install -e . first)"
    return None


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if (missing := project_missing()) is not None:
        print(f"bench: {missing}", file=sys.stderr)
        return 2
    began = time.monotonic()
    say = phases.progress
    say("checking bench/.venv (mitmproxy, py-spy, uvloop)")
    tools = benchenv.ensure(install=not args.no_install)
    if not args.no_litellm:
        say("checking bench/.venv-litellm (LiteLLM's proxy, optional)")
        benchenv.ensure_litellm(tools, install=not args.no_install)
    if args.no_mitmproxy:
        tools.mitmdump = None
        tools.notes.append("mitmproxy skipped (--no-mitmproxy)")
    pinning = procs.detect_pinning()
    tmp = Path(tempfile.mkdtemp(prefix="proxy-bench-"))
    logs = tmp / "logs"
    logs.mkdir()
    ctx = targets.Context(REPO, tmp, logs, pinning, sys.executable, tools.load_python, tools.mitmdump, tools.litellm)
    raw: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine.describe(ctx, tools),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "notes": [*tools.notes, pinning.note],
        "targets": {},
        "plain": {},
        "stream": {},
        "growth": {},
    }
    run = phases.Run(ctx, args, raw, deadline=began + args.budget_minutes * 60)
    try:
        run.setup()
        run.warm()
        run.plain_rounds()
        run.stream_rounds()
        run.db_pairs()
        run.growth()
        run.peaks()
        if args.profile:
            run.profile(tools.py_spy, RESULTS)
    finally:
        run.teardown()
    raw["machine"]["loadavg_end"] = machine.loadavg()
    raw["seconds"] = round(time.monotonic() - began, 1)
    summary = report.summarise(raw)
    checks = report.verdicts(raw, summary)
    raw.update(summary=summary, verdicts=checks)
    lines = machine.render(raw) + report.render(raw, summary, checks)
    for name, result in raw.get("profile", {}).items():
        lines += ["", *phases.hotspots.render(name, result)] if "error" not in result else [f"{name}: {result}"]
    lines += ["", *(f"note: {note}" for note in raw["notes"])]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(raw, indent=1))
    lines += ["", f"raw figures: {args.out}", f"took {raw['seconds']:.0f} s"]
    print("\n".join(lines))
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
