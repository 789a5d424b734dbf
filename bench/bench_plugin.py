"""What the pytest plugin costs: the session start-up and the overhead per replayed test, against the same
suite served by a bare fake server.

    python bench/bench_plugin.py [TESTS] [ROUNDS]

Writes a temporary project of TESTS tests (default 100), each creating an official `openai` client and making
one chat completion through `OPENAI_BASE_URL`, records it once with the plugin (`--llm-record-mode=once`,
against the tests' fake upstream), then runs pytest ROUNDS times (default 3) in each configuration:

- plugin: `--llm-record-mode=none`, the upstream stopped: each test switches the proxy to its directory
  (loading its one cassette), replays its request, and settles;
- bare: the same tests, with `llm_proxy` overridden in conftest.py by a fixture that only sets
  `OPENAI_BASE_URL` to the fake upstream running on a thread in the pytest process (the floor: a server that
  answers without matching, reading or recording anything);
- inert: TESTS tests that use neither fixture nor marker, with the plugin enabled and with
  `-p no:llm_cassette_proxy` (what installing the plugin costs a suite that doesn't use it).

Per test it times the whole run protocol (setup, call, teardown) from a hook in the project's conftest.py,
and the set-up of `llm_proxy_session` (the start-up: a proxy on its own thread and loop) and of `llm_proxy`
(the switch). Figures are medians over all tests of all rounds (the first test of a run, which pays for the
session start, is left out of the per-test figures).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import cast

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.chunks import make_completion  # noqa: E402
from tests.upstream import FakeUpstream, serve_upstream_in_thread  # noqa: E402

CONFTEST = """
import json, os, time

import pytest

TIMES = {"tests": {}, "fixtures": {}}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    started = time.perf_counter()
    try:
        return (yield)
    finally:
        TIMES["tests"][item.nodeid] = time.perf_counter() - started


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef, request):
    started = time.perf_counter()
    try:
        return (yield)
    finally:
        TIMES["fixtures"].setdefault(fixturedef.argname, []).append(time.perf_counter() - started)


def pytest_sessionfinish(session):
    with open(os.environ["BENCH_OUT"], "w") as out:
        json.dump(TIMES, out)


if os.environ.get("BENCH_BARE"):
    @pytest.fixture(scope="session")
    def bare_server():
        from tests.chunks import make_completion
        from tests.upstream import FakeUpstream, serve_upstream_in_thread

        fake = FakeUpstream()
        fake.completions["default"] = make_completion()
        url, stop, thread = serve_upstream_in_thread(fake)
        yield url
        stop.set()
        thread.join(10)

    @pytest.fixture
    def llm_proxy(bare_server, monkeypatch):
        monkeypatch.setenv("OPENAI_BASE_URL", bare_server + "/v1")
"""

TEST = """
import openai


def test_{n}(llm_proxy):
    client = openai.OpenAI(max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "Question {n}"}}])
    client.close()
"""

INERT = """
def test_{n}():
    assert {n} >= 0
"""


def write_project(directory: Path, tests: int) -> None:
    (directory / "pytest.ini").write_text("[pytest]\n")
    (directory / "conftest.py").write_text(textwrap.dedent(CONFTEST))
    (directory / "test_llm.py").write_text("".join(TEST.format(n=n) for n in range(tests)))
    (directory / "test_inert.py").write_text("".join(INERT.format(n=n) for n in range(tests)))


def pytest_run(directory: Path, *args: str, bare: bool = False) -> tuple[dict[str, dict[str, object]], float]:
    out = directory / "times.json"
    env = {**os.environ, "BENCH_OUT": str(out), "PYTHONPATH": str(ROOT), "OPENAI_API_KEY": "sk-bench"}
    env.pop("BENCH_BARE", None)
    if bare:
        env["BENCH_BARE"] = "1"
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
    )
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"pytest {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")
    return json.loads(out.read_text()), took


def per_test(times: dict[str, dict[str, object]]) -> list[float]:
    values = list(times["tests"].values())  # in run order
    return [float(v) for v in values[1:]]  # type: ignore[arg-type]


def ms(value: float) -> str:
    return f"{value * 1000:.2f} ms"


def main() -> None:
    tests = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    with tempfile.TemporaryDirectory() as temp:
        directory = Path(temp)
        write_project(directory, tests)
        fake = FakeUpstream()
        fake.completions["default"] = make_completion()
        url, stop, thread = serve_upstream_in_thread(fake)
        pytest_run(directory, "test_llm.py", "--llm-record-mode=once", "--llm-upstream", url)
        stop.set()
        thread.join(10)
        results: dict[str, list[float]] = {"plugin": [], "bare": [], "inert on": [], "inert off": []}
        walls: dict[str, list[float]] = {key: [] for key in results}
        starts: list[float] = []
        switches: list[float] = []
        for _ in range(rounds):
            times, wall = pytest_run(directory, "test_llm.py", "--llm-record-mode=none", "--llm-upstream", url)
            results["plugin"] += per_test(times)
            walls["plugin"].append(wall)
            fixtures = times["fixtures"]
            starts += cast(list[float], fixtures["llm_proxy_session"])
            switches += cast(list[float], fixtures["llm_proxy"])
            times, wall = pytest_run(directory, "test_llm.py", bare=True)
            results["bare"] += per_test(times)
            walls["bare"].append(wall)
            times, wall = pytest_run(directory, "test_inert.py")
            results["inert on"] += per_test(times)
            walls["inert on"].append(wall)
            times, wall = pytest_run(directory, "test_inert.py", "-p", "no:llm_cassette_proxy")
            results["inert off"] += per_test(times)
            walls["inert off"].append(wall)
    median = {key: statistics.median(values) for key, values in results.items()}
    print(f"{tests} tests x {rounds} rounds; medians per test (setup + call + teardown), first test of a run left out")
    print(f"| configuration | per test | whole run ({tests} tests, wall) |")
    print("| --- | --- | --- |")
    for key in results:
        print(f"| {key} | {ms(median[key])} | {statistics.median(walls[key]):.2f} s |")
    print(f"plugin overhead per replayed test: {ms(median['plugin'] - median['bare'])}")
    print(f"  of which the switch (llm_proxy set-up, median): {ms(statistics.median(switches))}")
    print(f"plugin installed but unused, per test: {ms(median['inert on'] - median['inert off'])}")
    print(f"session start-up (llm_proxy_session set-up, median of {len(starts)}): {ms(statistics.median(starts))}")


if __name__ == "__main__":
    main()
