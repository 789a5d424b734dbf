"""How long the embedding API takes to start and stop a proxy in-process (issue #12: well under a second;
issue #16: within 0.2 s), and the same through `ProxyThread`, as the pytest plugin starts it.

    python bench/bench_embed.py [ROUNDS]

Each round starts a proxy on a free loopback port, waits until it answers `/_proxy/health`, and stops it.
Measured: replay of the sample cassettes, and record (in-process runner) into a fresh temporary directory.
The first start in a process pays the imports; it is reported apart from the median of the rest.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from proxy.embed import ProxyThread, start_proxy
from proxy.settings import Settings

SAMPLES = Path(__file__).resolve().parent.parent / "cassettes"


def settings(mode: str, cassettes: Path) -> Settings:
    return Settings.model_validate(
        {"mode": mode, "cassettes": cassettes, "port": 0, "record_workers": "in-process", "quiet": True}
    )


async def one_async(mode: str, cassettes: Path) -> tuple[float, float]:
    started = time.perf_counter()
    proxy = await start_proxy(settings(mode, cassettes))
    await asyncio.to_thread(lambda: urllib.request.urlopen(f"{proxy.url}/_proxy/health").read())
    ready = time.perf_counter() - started
    started = time.perf_counter()
    await proxy.stop()
    return ready, time.perf_counter() - started


def one_thread(mode: str, cassettes: Path) -> tuple[float, float]:
    started = time.perf_counter()
    thread = ProxyThread(settings(mode, cassettes))
    proxy = thread.start()
    urllib.request.urlopen(f"{proxy.url}/_proxy/health").read()
    ready = time.perf_counter() - started
    started = time.perf_counter()
    thread.stop()
    return ready, time.perf_counter() - started


def report(name: str, samples: list[tuple[float, float]]) -> None:
    first, rest = samples[0], samples[1:]
    start = statistics.median(s for s, _ in rest) * 1000
    stop = statistics.median(s for _, s in rest) * 1000
    print(
        f"{name:32s} first start {first[0] * 1000:7.1f} ms   then start p50 {start:6.1f} ms   stop p50 {stop:6.1f} ms"
    )


COLD = """
import time, urllib.request
started = time.perf_counter()
from pathlib import Path
from proxy.embed import ProxyThread
from proxy.settings import Settings
thread = ProxyThread(Settings.model_validate({"mode": "replay", "cassettes": Path(%r), "port": 0,
                                             "record_workers": "in-process", "quiet": True}))
proxy = thread.start()
urllib.request.urlopen(proxy.url + "/_proxy/health").read()
print(time.perf_counter() - started)
thread.stop()
"""


def cold(rounds: int) -> None:
    """In a fresh interpreter: the imports it needs, plus the start (what a pytest session pays once)."""
    import subprocess

    times = [
        float(
            subprocess.run(
                [sys.executable, "-c", COLD % str(SAMPLES)], capture_output=True, text=True, check=True
            ).stdout
        )
        for _ in range(rounds)
    ]
    print(f"{'fresh interpreter, ProxyThread':32s} imports + start p50 {statistics.median(times) * 1000:6.1f} ms")


def main(rounds: int) -> None:
    cold(max(3, rounds // 3))
    with tempfile.TemporaryDirectory() as tmp:
        for mode, cassettes in (("replay", SAMPLES), ("record", Path(tmp) / "c")):
            samples = [asyncio.run(one_async(mode, cassettes)) for _ in range(rounds)]
            report(f"start_proxy, {mode}", samples)
            samples = [one_thread(mode, cassettes) for _ in range(rounds)]
            report(f"ProxyThread, {mode}", samples)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
