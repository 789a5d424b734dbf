"""The phases of one benchmark run: set up every target, warm up, measure in interleaved rounds, tear down."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hotspots
import measure
import procs
import targets
from targets import Context, Target

PLAIN_ORDER = (
    "direct", "passthrough", "mitm_record", "litellm", "record", "record_nodb", "bare", "mitm_replay", "replay",
)  # fmt: skip
STREAM_ORDER = ("direct", "passthrough", "passthrough_tee", "mitm_record", "litellm", "record", "record_nodb")
__all__ = ["Run", "hotspots", "progress"]


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _rotated(keys: tuple[str, ...], by: int) -> list[str]:
    """A different order each round, so that no target always runs right after the same neighbour."""
    by %= len(keys)
    return list(keys[by:] + keys[:by])


class Run:
    def __init__(self, ctx: Context, args: argparse.Namespace, raw: dict[str, Any], deadline: float) -> None:
        self.ctx, self.args, self.raw, self.deadline = ctx, args, raw, deadline
        self.targets: dict[str, Target] = {}
        self.loader = measure.Loader(ctx)
        self._procs: list[procs.Proc] = []

    def _note(self, message: str) -> None:
        progress(message)
        self.raw["notes"].append(message)

    def _in_budget(self, what: str) -> bool:
        if time.monotonic() < self.deadline:
            return True
        self._note(f"time budget used up: skipped {what}")
        return False

    def _start(self, key: str, starter: Callable[[], Target], *, streams: bool) -> Target | None:
        """Start and check one target; a target that fails is reported and left out, never fatal."""
        target: Target | None = None
        try:
            target = starter()
            if target.proc is not None:
                self._procs.append(target.proc)
            targets.check_plain(target)
            if streams:
                targets.check_stream(target)
        except Exception as exc:
            self._note(f"{key}: left out: {str(exc).strip()[:400]}")
            if target is not None and target.proc is not None:
                procs.stop(target.proc)
            return None
        self.targets[key] = target
        self.raw["targets"][key] = {"label": target.label, "pid": target.pid, "port": target.port}
        return target

    def _seed(self, key: str, starter: Callable[[], Target]) -> bool:
        """Record one plain and one streamed exchange (what the replays serve), then stop the recorder."""
        target = self._start(key, starter, streams=True)
        if target is not None and target.proc is not None:
            procs.stop(target.proc)
        self.targets.pop(key, None)
        self.raw["targets"].pop(key, None)
        return target is not None

    def setup(self) -> None:
        ctx, tmp = self.ctx, self.ctx.tmp
        progress(f"starting the fake upstream and the targets (work dir {tmp})")
        up = self._start("direct", lambda: targets.upstream(ctx), streams=True)
        if up is None:
            raise RuntimeError("the fake upstream did not start; nothing to measure")
        seeded = self._seed("seed", lambda: targets.ours_record(ctx, up, "seed", db=False))
        seed_flows = tmp / "seed.flows"
        mitm_seeded = ctx.mitmdump is not None and self._seed(
            "mitm_seed", lambda: targets.mitm_record(ctx, up, seed_flows, "mitm_seed")
        )
        self._start("passthrough", lambda: targets.passthrough(ctx, up), streams=True)
        self._start("passthrough_tee", lambda: targets.passthrough_tee(ctx, up), streams=True)
        record = self._start("record", lambda: targets.ours_record(ctx, up, "record", db=True), streams=True)
        self._start("record_nodb", lambda: targets.ours_record(ctx, up, "record_nodb", db=False), streams=True)
        if record is None:
            self.raw["db_note"] = "proxy record with --db did not start (see notes)"
        elif record.health().get("database") is None:
            self.raw["db_note"] = "the DuckDB writer is not wired: both record runs are without a database"
        if ctx.mitmdump:
            self._start("mitm_record", lambda: targets.mitm_record(ctx, up, tmp / "mitm_record.flows"), streams=True)
        if ctx.litellm:
            self._start("litellm", lambda: targets.litellm(ctx, up), streams=True)
        if mitm_seeded:
            self._start("mitm_replay", lambda: targets.mitm_replay(ctx, up, seed_flows), streams=True)
        replay = None
        if seeded:
            replay = self._start("replay", lambda: targets.ours_replay(ctx, tmp / "seed" / "cassettes"), streams=True)
        if replay is not None:
            payload = targets.check_plain(replay)
            self._start("bare", lambda: targets.bare_handler(ctx, payload), streams=False)
        for key, target in self.targets.items():
            if target.notes:
                self._note(f"{key}: {'; '.join(target.notes)}")

    def warm(self) -> None:
        progress("warming up every target (1 s at c=64 each, not measured)")
        for target in self.targets.values():
            measure.plain(self.loader, target, 64, 1.0, 0.0)

    def plain_rounds(self) -> None:
        a = self.args
        for round_no in range(a.rounds):
            for key in _rotated(PLAIN_ORDER, round_no):
                target = self.targets.get(key)
                if target is None or not self._in_budget(f"plain round {round_no + 1} of {key}"):
                    continue
                progress(f"plain round {round_no + 1}/{a.rounds}: {key}")
                slot = self.raw["plain"].setdefault(key, {"c64": [], "c1": []})
                slot["c64"].append(measure.plain(self.loader, target, 64, a.seconds, a.warmup))
                slot["c1"].append(measure.plain(self.loader, target, 1, a.c1_seconds, a.warmup))

    def stream_rounds(self) -> None:
        a = self.args
        for round_no in range(a.stream_rounds):
            for key in _rotated(STREAM_ORDER, round_no):
                target = self.targets.get(key)
                if target is None or not self._in_budget(f"stream round {round_no + 1} of {key}"):
                    continue
                progress(f"stream round {round_no + 1}/{a.stream_rounds}: {key}")
                result = measure.stream(self.loader, target, a.streams, a.stream_concurrency)
                self.raw["stream"].setdefault(key, []).append(result)

    def db_pairs(self) -> None:
        """The DuckDB overhead is a few percent, well inside the machine's noise between rounds: more pairs of
        the two, back to back, in alternating order (ABBA), so that a drifting machine favours neither."""
        a = self.args
        for pair in range(a.db_pairs):
            order = ("record", "record_nodb") if pair % 2 == 0 else ("record_nodb", "record")
            for key in order:
                target = self.targets.get(key)
                if target is None or not self._in_budget(f"DuckDB pair {pair + 1} of {key}"):
                    continue
                progress(f"DuckDB pair {pair + 1}/{a.db_pairs}: {key}")
                slot = self.raw["plain"].setdefault(key, {}).setdefault("c64_pairs", [])
                slot.append(measure.plain(self.loader, target, 64, a.seconds, a.warmup))

    def growth(self) -> None:
        for key in ("record", "record_nodb", "replay"):
            target = self.targets.get(key)
            if target is None or not self._in_budget(f"RSS growth of {key}"):
                continue
            progress(f"RSS growth: {self.args.growth_requests:,} requests at c=64 through {key}")
            self.raw["growth"][key] = measure.growth(self.loader, target, self.args.growth_requests, 64)

    def peaks(self) -> None:
        self.raw["peak_rss_kb"] = {
            key: procs.memory_kb(t.pid).get("VmHWM") for key, t in self.targets.items() if t.pid and key != "direct"
        }

    def profile(self, py_spy: str | None, out_dir: Path) -> None:
        profiles: dict[str, Any] = {}
        self.raw["profile"] = profiles
        if py_spy is None:
            self._note("profiling skipped: py-spy is not available")
            return
        out_dir.mkdir(parents=True, exist_ok=True)
        seconds = self.args.profile_seconds
        for key in ("record", "replay"):
            target = self.targets.get(key)
            if target is None or target.pid is None or not self._in_budget(f"profile of {key}"):
                continue
            progress(f"profiling {key} with py-spy for {seconds:g} s under c=64 plain load")
            out = out_dir / f"profile-{key}.txt"
            spy = hotspots.start(py_spy, target.pid, seconds, out, self.ctx.pinning.prefix(targets.LOAD_CORE))
            load = measure.plain(self.loader, target, 64, seconds, 0.0)
            error = hotspots.finish(spy, seconds)
            if error or not out.exists():
                profiles[key] = {"error": error or "no output"}
                continue
            analysis = hotspots.analyse(out, self.ctx.repo)
            profiles[key] = {**analysis, "file": str(out), "rps_while_sampled": load.get("rps")}

    def teardown(self) -> None:
        progress("stopping every process")
        for proc in reversed(self._procs):
            code = procs.stop(proc)
            if code not in (0, None, -2, 130) and proc.name not in ("direct",):
                self.raw["notes"].append(f"{proc.name} exited with {code}: {proc.tail(3)}")
