"""One measurement = one load-generator process against one target, plus what the target's /proc says."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import procs
from targets import LOAD_CORE, Context, Target, wait_drained

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | None, *, alone: bool = False) -> float | None:
    """User + system CPU time of a process and its descendants (all threads), from /proc/PID/stat: our
    proxy's recording worker process is part of what it costs. With `alone`, the process itself only (the
    one on the traffic's path)."""
    if pid is None:
        return None
    total = 0.0
    for member in [pid] if alone else procs.family(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            if member == pid:
                return None
            continue
        total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


@dataclass
class Loader:
    ctx: Context

    def run(self, args: list[str], time_limit: float, watch: int | None = None) -> dict[str, Any]:
        """Run load.py; with `watch`, that pid's CPU time is read at the window markers load.py prints."""
        script = str(self.ctx.repo / "bench" / "load.py")
        argv = [*self.ctx.pinning.prefix(LOAD_CORE), self.ctx.load_python, script, *args]
        argv += ["--time-limit", f"{time_limit:g}"]
        marks: dict[str, float | None] = {}
        with tempfile.TemporaryFile("w+") as errors:
            popen = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errors, text=True)
            timer = threading.Timer(time_limit + 40, popen.kill)  # the hard bound, whatever happens
            timer.start()
            try:
                assert popen.stdout is not None
                last = ""
                for line in popen.stdout:
                    if line.startswith("WINDOW "):
                        marks[line.split()[1]] = cpu_seconds(watch)
                    elif line.strip():
                        last = line
                code = popen.wait()
            finally:
                timer.cancel()
            errors.seek(0)
            error = errors.read()
        if code != 0 or not last:
            return {"error": (error.strip().splitlines() or [f"load generator exit {code}"])[-1][:300]}
        result: dict[str, Any] = json.loads(last)
        start, end = marks.get("start"), marks.get("end")
        if start is not None and end is not None and result.get("seconds"):
            result["window_cpu_seconds"] = round(end - start, 4)
        return result


def _with_cpu(target: Target, run: Any) -> dict[str, Any]:
    cpu_before = cpu_seconds(target.pid)
    own_before = cpu_seconds(target.pid, alone=True)
    load_before = os.getloadavg()[0]
    result: dict[str, Any] = run()
    if target.records and "error" not in result:
        result["drain"] = wait_drained(target)
    cpu_after = cpu_seconds(target.pid)
    own_after = cpu_seconds(target.pid, alone=True)
    result["loadavg_1m"] = round((load_before + os.getloadavg()[0]) / 2, 2)
    if cpu_before is not None and cpu_after is not None:
        # all-in: from before the load generator started until every recording was written
        result["cpu_seconds"] = round(cpu_after - cpu_before, 3)
        units = result.get("ok") or 0
        if units:
            result["cpu_us_per_request"] = round((cpu_after - cpu_before) / units * 1e6, 1)
            if own_before is not None and own_after is not None:
                result["cpu_us_per_request_main"] = round((own_after - own_before) / units * 1e6, 1)
    if "window_cpu_seconds" in result:
        result["core_pct"] = round(100 * result["window_cpu_seconds"] / result["seconds"], 1)
    return result


def plain(loader: Loader, target: Target, concurrency: int, seconds: float, warmup: float) -> dict[str, Any]:
    args = ["plain", "--url", target.url, "--concurrency", str(concurrency)]
    args += ["--duration", f"{seconds:g}", "--warmup", f"{warmup:g}"]
    return _with_cpu(target, lambda: loader.run(args, time_limit=30, watch=target.pid))


def stream(loader: Loader, target: Target, streams: int, concurrency: int) -> dict[str, Any]:
    args = ["stream", "--url", target.url, "--concurrency", str(concurrency), "--streams", str(streams)]
    limit = streams / concurrency * 3 + 20  # a 200-event stream takes 1 s; a buffering proxy a little more
    return _with_cpu(target, lambda: loader.run(args, time_limit=limit))


SETTLE_SECONDS = 1.5  # idle time before each RSS reading: the DuckDB writer lets go of its file after 1 s idle


def growth(loader: Loader, target: Target, count: int, concurrency: int) -> dict[str, Any]:
    """VmRSS before and after `count` requests (recordings flushed, then idle for SETTLE_SECONDS, both times)."""
    if target.records:
        wait_drained(target)
    time.sleep(SETTLE_SECONDS)
    assert target.pid is not None
    before = procs.memory_kb(target.pid).get("VmRSS")
    args = ["plain", "--url", target.url, "--concurrency", str(concurrency), "--count", str(count)]
    result = _with_cpu(target, lambda: loader.run(args, time_limit=180))
    time.sleep(SETTLE_SECONDS)
    after = procs.memory_kb(target.pid).get("VmRSS")
    result.update(rss_before_kb=before, rss_after_kb=after)
    if before is not None and after is not None:
        result["rss_growth_mb"] = round((after - before) / 1024, 2)
    return result
