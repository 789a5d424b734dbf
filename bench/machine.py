"""What the numbers were measured on: cores, CPU model, interpreters, library versions, load."""

from __future__ import annotations

import os
import platform
import resource
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import benchenv
from targets import Context


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _python_version(python: str) -> str:
    done = subprocess.run([python, "-c", "import sys; print(sys.version.split()[0])"], capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def file_write_cpu_us(directory: Path, count: int = 300) -> float:
    """CPU time (user + system) to write one 3 kB file into a new folder the way a cassette is written: create
    a temporary, write, rename. On this project's virtual disk, creating a file costs more than a whole proxied
    request (less as the folder fills up); `proxy record` writes one per interaction, the pass-through none."""
    folder = Path(tempfile.mkdtemp(prefix="file-cost-", dir=directory))
    data = b"x" * 3000
    try:
        before = resource.getrusage(resource.RUSAGE_SELF)
        for n in range(count):
            temporary = folder / f".tmp-{n}"
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            os.write(fd, data)
            os.close(fd)
            os.replace(temporary, folder / f"{n}.json")
        after = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    spent = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return round(spent / count * 1e6, 1)


def describe(ctx: Context, tools: benchenv.Tools) -> dict[str, Any]:
    nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout.strip()
    return {
        "nproc": int(nproc) if nproc.isdigit() else os.cpu_count(),
        "cpu_model": cpu_model(),
        "kernel": platform.release(),
        "proxy_python": f"{ctx.proxy_python} ({_python_version(ctx.proxy_python)})",
        "load_python": f"{ctx.load_python} ({_python_version(ctx.load_python)})",
        "aiohttp": benchenv.version_of(ctx.proxy_python, "aiohttp"),
        "uvloop_on_load_side": benchenv.version_of(ctx.load_python, "uvloop"),
        "mitmproxy": benchenv.version_of(tools.load_python, "mitmproxy") if tools.mitmdump else None,
        "pinning": ctx.pinning.note,
        "loadavg_start": loadavg(),
        "file_write_cpu_us": file_write_cpu_us(ctx.tmp),
    }


def render(raw: dict[str, Any]) -> list[str]:
    m = raw["machine"]
    return [
        f"proxy benchmark, {raw['date']}",
        f"machine: {m['nproc']} cores ({m['cpu_model']}), Linux {m['kernel']}, "
        f"load average {m['loadavg_start'][0]} at start, {m.get('loadavg_end', ['?'])[0]} at end",
        f"python: proxy side {m['proxy_python']}, aiohttp {m['aiohttp']}; load side {m['load_python']}, "
        f"uvloop {m['uvloop_on_load_side'] or 'no'}; mitmproxy {m['mitmproxy'] or 'not available'}",
        f"{m['pinning']}",
        f"writing one small file in the work folder (create, write, rename) costs {m.get('file_write_cpu_us', '?')} us "
        "of CPU here; `proxy record` writes one cassette per interaction",
    ]
