"""Issue #16's start-up and memory figures, measured from outside: how soon `proxy record` and `proxy replay`
accept requests, and how much memory the whole process tree of `proxy record` holds at rest and at its peak
under load, and `proxy replay` with 10,000 cassettes.

    python bench/bench_lean.py [--seconds 10] [--repeats 5]

- ready: from launch until the proxy prints its listening line (it binds before printing), median of repeats.
- record memory: the fast fake upstream (bench/upstream.py) and the load generator (load.py, 64 workers)
  on core 0, `proxy record` with DuckDB on core 1. The process tree's RSS (proxy + recording worker) is
  sampled every 50 ms through `--seconds` of load, once with plain requests and once with 200-event
  streams, and on until the recordings are written and the worker has gone idle and exited (at rest).
  The peak is over all of that; the peak under load is while the load ran. They differ because the
  recording worker shares the proxy's core at idle priority: it writes little until the load stops, then
  catches up. bench/run.py's VmHWM column cannot see these peaks: the recording worker comes and goes.
- replay of 10,000 cassettes: made from the samples (each with its own prompt), RSS once ready.

Every process is started here and stopped by its pid; nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import measure
import procs
import targets
from bench_replay_index import make_cassettes

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "cassettes"


def tree_rss_mb(pid: int) -> dict[int, float]:
    """RSS of each member of the process tree, in MB."""
    return {member: fields.get("VmRSS", 0) / 1024 for member, fields in procs.status_kb(pid, ("VmRSS",)).items()}


def ready_seconds(argv: list[str], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        popen = subprocess.Popen(
            [sys.executable, "-m", "proxy", *argv, "--port", "0", "--quiet"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=REPO,
        )
        assert popen.stdout is not None
        for line in popen.stdout:
            if "listening on" in line:
                break
        times.append(time.perf_counter() - started)
        popen.send_signal(signal.SIGINT)
        popen.wait(60)
    return times


class Sampler:
    """The tree's total RSS every 50 ms, keeping the peak and how it split between the processes; and apart,
    the peak while the load ran (`load_over` ends that window), before the recording worker caught up."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0.0
        self.split: dict[int, float] = {}
        self.peak_under_load = 0.0
        self._under_load = True
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def load_over(self) -> None:
        self._under_load = False

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            members = tree_rss_mb(self.pid)
            total = sum(members.values())
            if total > self.peak:
                self.peak, self.split = total, members
            if self._under_load:
                self.peak_under_load = max(self.peak_under_load, total)
            time.sleep(0.05)


def wait_at_rest(target: targets.Target, timeout: float = 120.0) -> float:
    """Until every recording is written and the recording worker has exited (idle); seconds it took."""
    started = time.monotonic()
    targets.wait_drained(target, timeout)
    assert target.pid is not None
    while time.monotonic() - started < timeout and len(procs.family(target.pid)) > 1:
        time.sleep(0.2)
    return time.monotonic() - started


def record_memory(ctx: targets.Context, seconds: float) -> dict[str, Any]:
    up = targets.upstream(ctx)
    record = targets.ours_record(ctx, up, "record", db=True)
    assert record.pid is not None
    out: dict[str, Any] = {}
    try:
        targets.seed_with(record)
        wait_at_rest(record)
        out["rest_before_mb"] = round(sum(tree_rss_mb(record.pid).values()), 1)
        for kind in ("plain", "stream"):
            args = [kind, "--url", record.url, "--concurrency", "64"]
            args += ["--duration", f"{seconds:g}"] if kind == "plain" else ["--streams", str(int(seconds * 64))]
            with Sampler(record.pid) as sampler:
                loaded = measure_load(ctx, args, seconds)
                sampler.load_over()
                rest_after = wait_at_rest(record)
            proxy_mb = sampler.split.get(record.pid, 0.0)
            out[kind] = {
                "requests": loaded.get("ok"),
                "peak_tree_mb": round(sampler.peak, 1),
                "peak_tree_under_load_mb": round(sampler.peak_under_load, 1),
                "peak_proxy_mb": round(proxy_mb, 1),
                "peak_worker_mb": round(sampler.peak - proxy_mb, 1),
                "seconds_to_rest": round(rest_after, 1),
                "rest_mb": round(sum(tree_rss_mb(record.pid).values()), 1),
            }
    finally:
        for target in (record, up):
            if target.proc is not None:
                procs.stop(target.proc)
    return out


def measure_load(ctx: targets.Context, args: list[str], seconds: float) -> dict[str, Any]:
    return measure.Loader(ctx).run(args, time_limit=seconds * 4 + 30)


def replay_10k(count: int = 10_000) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_cassettes(root, count)
        started = time.perf_counter()
        popen = subprocess.Popen(
            [sys.executable, "-m", "proxy", "replay", str(root), "--port", "0", "--quiet"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=REPO,
        )
        try:
            assert popen.stdout is not None
            for line in popen.stdout:
                if "listening on" in line:
                    break
            ready = time.perf_counter() - started
            rss = sum(tree_rss_mb(popen.pid).values())
        finally:
            popen.send_signal(signal.SIGINT)
            popen.wait(60)
    return {"cassettes": count, "ready_s": round(ready, 2), "rss_mb": round(rss, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of c=64 load per kind")
    parser.add_argument("--repeats", type=int, default=5, help="launches per start-up figure")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="proxy-lean-"))
    logs = tmp / "logs"
    logs.mkdir()
    load_python = REPO / "bench" / ".venv" / "bin" / "python"
    ctx = targets.Context(
        REPO,
        tmp,
        logs,
        procs.detect_pinning(),
        sys.executable,
        str(load_python if load_python.exists() else sys.executable),
        None,
    )
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as empty:
        record_ready = ready_seconds(["record", "--cassettes", f"{empty}/c"], args.repeats)
    replay_ready = ready_seconds(["replay", str(SAMPLES)], args.repeats)
    results["ready_s"] = {
        "proxy record": round(statistics.median(record_ready), 3),
        "proxy replay cassettes/": round(statistics.median(replay_ready), 3),
    }
    try:
        results["record_memory"] = record_memory(ctx, args.seconds)
    finally:  # 150,000 cassettes and their database: a few hundred MB per run
        shutil.rmtree(tmp, ignore_errors=True)
    results["replay_10k"] = replay_10k()
    print(json.dumps(results, indent=2))
    verdicts = [
        ("proxy record ready within 0.5 s", results["ready_s"]["proxy record"], 0.5, "s"),
        ("proxy replay cassettes/ ready within 0.4 s", results["ready_s"]["proxy replay cassettes/"], 0.4, "s"),
        ("record tree at rest under 120 MB", results["record_memory"]["plain"]["rest_mb"], 120, "MB"),
        ("record tree peak, plain c=64, under 200 MB", results["record_memory"]["plain"]["peak_tree_mb"], 200, "MB"),
        ("record tree peak, streams c=64, under 200 MB", results["record_memory"]["stream"]["peak_tree_mb"], 200, "MB"),
        ("replay of 10,000 cassettes under 150 MB", results["replay_10k"]["rss_mb"], 150, "MB"),
    ]
    for name, value, limit, unit in verdicts:
        print(f"  {'PASS' if value < limit else 'MISS'}  {name}: {value} {unit}")


if __name__ == "__main__":
    main()
