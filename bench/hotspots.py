"""Profile a running proxy with py-spy (sampling, from outside) and rank the hot spots in our own code.

py-spy writes collapsed stacks (`--format raw`: `thread (tid): name;frame;...;frame count`, root first), which
speedscope and flamegraph.pl also open. Three views are computed over all sampled threads:
- inclusive: share of samples with the function anywhere on the stack;
- attributed: share of samples whose deepest frame from our code is this function (its own time plus
  whatever library code it called: where our code spends, directly or not);
- leaf: share of samples whose innermost frame is this function, any code (where the CPU actually is).
"""

from __future__ import annotations

import re
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*)\)$")
# The process's entry chain: on every main-thread stack, so never the place where time goes.
_ENTRY = frozenset(
    {"proxy/__main__.py:<module>", "proxy/cli.py:main", "proxy/cli.py:_run_server", "proxy/server.py:run"}
)
OUTSIDE = "(no frame of ours: event loop, aiohttp, stdlib)"


def start(py_spy: str, pid: int, seconds: float, out: Path, prefix: list[str]) -> subprocess.Popen[bytes]:
    argv = [*prefix, py_spy, "record", "--pid", str(pid), "--duration", f"{seconds:g}", "--rate", "250"]
    argv += ["--format", "raw", "--full-filenames", "--nolineno", "--threads", "--nonblocking", "-o", str(out)]
    popen = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.5)  # let it attach before the load starts
    return popen


def finish(popen: subprocess.Popen[bytes], seconds: float) -> str | None:
    """Wait for py-spy; its error text if it failed."""
    try:
        _, err = popen.communicate(timeout=seconds + 30)
    except subprocess.TimeoutExpired:
        popen.kill()
        popen.wait(5)
        return "py-spy did not finish in time"
    if popen.returncode != 0:
        return err.decode(errors="replace").strip().splitlines()[0][:300] if err else f"exit {popen.returncode}"
    return None


def _label(frame: str, repo: Path) -> tuple[str, bool]:
    match = _FRAME.match(frame)
    if match is None:
        return frame, False
    file, func = match["file"], match["func"]
    root = str(repo) + "/"
    ours = file.startswith((root + "proxy/", root + "analytics/"))
    if file.startswith(root):
        file = file[len(root) :]
    elif "site-packages/" in file:
        file = file.split("site-packages/", 1)[1]
    elif "/lib/python3" in file:
        file = "stdlib/" + file.rsplit("/lib/python3", 1)[1].split("/", 1)[1]
    name = f"{file}:{func}"
    return name, ours and name not in _ENTRY


def analyse(raw_file: Path, repo: Path, top: int = 12) -> dict[str, Any]:
    inclusive: Counter[str] = Counter()
    attributed: Counter[str] = Counter()
    main_attributed: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in raw_file.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        head, *frames = stack.split(";")
        thread = head.split(": ", 1)[1] if ": " in head else "unnamed"
        threads[re.sub(r"_\d+$", "", thread)] += count
        total += count
        labelled = [_label(frame, repo) for frame in frames]
        for name in {name for name, ours in labelled if ours}:
            inclusive[name] += count
        deepest_ours = next((name for name, ours in reversed(labelled) if ours), OUTSIDE)
        attributed[deepest_ours] += count
        if thread == "MainThread":
            main_attributed[deepest_ours] += count
        if labelled:
            leaf[labelled[-1][0]] += count

    def ranked(counter: Counter[str]) -> list[dict[str, Any]]:
        return [{"where": k, "samples": n, "pct": round(100 * n / total, 1)} for k, n in counter.most_common(top)]

    return {
        "samples": total,
        "threads": ranked(threads),
        "ours_inclusive": ranked(inclusive),
        "ours_attributed": ranked(attributed),
        "main_thread_attributed": ranked(main_attributed),
        "leaf": ranked(leaf),
    }


def render(name: str, result: dict[str, Any]) -> list[str]:
    out = [f"Profile of {name}: {result['samples']} samples (all threads)"]
    sections = (("threads", "by thread"), ("ours_attributed", "all threads, attributed to our deepest frame"),
                ("main_thread_attributed", "event-loop thread only, attributed to our deepest frame"),
                ("ours_inclusive", "our code, inclusive"), ("leaf", "innermost frame, any code"))  # fmt: skip
    for key, title in sections:
        out.append(f"  {title}:")
        out += [f"    {row['pct']:5.1f}%  {row['where']}" for row in result[key][:10]]
    return out
