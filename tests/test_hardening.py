"""Faults and bad input: each is injected, and the proxy keeps serving, records what happened, loses nothing."""

from __future__ import annotations

import asyncio
import os
import platform
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import duckdb
import pytest

from proxy.app import RECORDER
from proxy.cassettes import iter_cassette_paths, load_cassette
from proxy.free_memory import release_free_memory
from proxy.worker import DUCKDB_ALLOCATOR
from tests.chunks import MODEL, make_completion, make_completion_choice, make_message, stream_content
from tests.cli_process import run_cli, start_proxy_process
from tests.conftest import API_KEY, RunningProxy, RunningUpstream, StartProxy, eventually, wait_for_cassettes
from tests.upstream import FakeUpstream, serve_upstream_in_thread

CHAT = "/v1/chat/completions"
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]}


@pytest.fixture
def plain(upstream: RunningUpstream) -> RunningUpstream:
    upstream.fake.completions["default"] = make_completion([make_completion_choice(make_message("ok"))])
    upstream.fake.streams["default"] = stream_content()
    return upstream


async def test_malformed_sse_reaches_the_client_byte_for_byte_and_the_problem_is_noted(
    plain: RunningUpstream, start_proxy: StartProxy
) -> None:
    raw = (
        b'data: {"id":"x","object":"chat.completion.chunk","choices":[]}\n\n'
        b"data: {not json\n\nevent: odd\ndata: [DONE]\n\n"
    )
    plain.fake.raw_streams["bad"] = raw
    proxy = await start_proxy(plain.url)
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            proxy.url + CHAT, json={**BODY, "stream": True}, headers={"x-scenario": "bad", "x-piece-size": "5"}
        ) as response,
    ):
        received = await response.read()
    assert received == raw
    [path] = await wait_for_cassettes(proxy.settings.cassettes, 1)
    outcome = load_cassette(path).outcome
    assert any("not JSON" in note for note in outcome.notes)


async def test_a_body_over_the_limit_gets_a_413_in_the_api_error_shape(
    plain: RunningUpstream, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(plain.url, max_body_bytes=1024)
    async with (
        aiohttp.ClientSession() as session,
        session.post(proxy.url + CHAT, data=b"x" * 5000, headers={"content-type": "application/json"}) as response,
    ):
        assert response.status == 413
        error = (await response.json())["error"]
    assert error["code"] == "request_too_large" and "1024" in error["message"]
    assert plain.fake.received == []
    async with aiohttp.ClientSession() as session, session.post(proxy.url + CHAT, json=BODY) as response:
        assert response.status == 200  # still serving


@pytest.mark.parametrize(
    ("body", "kind"),
    [(b"\xff\xfe not utf-8 \x80", "base64"), (b"plain words, not json", "text"), (b'{"model": "m"', "text")],
)
async def test_bodies_that_are_not_json_are_forwarded_and_recorded_faithfully(
    plain: RunningUpstream, start_proxy: StartProxy, body: bytes, kind: str
) -> None:
    proxy = await start_proxy(plain.url)
    async with aiohttp.ClientSession() as session, session.post(proxy.url + "/v1/models", data=body) as response:
        assert response.status == 200
    assert plain.fake.received[0].body == body
    [path] = await wait_for_cassettes(proxy.settings.cassettes, 1)
    recorded = load_cassette(path).request.body
    assert getattr(recorded, kind) is not None


@pytest.mark.parametrize(
    "path",
    ["/v1/../../etc/passwd", "/v1/%2e%2e/%2e%2e/secret", "/v1/files/a%2Fb%5Cc", "/v1//double//slash"],
)
async def test_odd_paths_reach_only_the_upstream_and_cassettes_stay_in_their_directory(
    plain: RunningUpstream, start_proxy: StartProxy, path: str, tmp_path: Path
) -> None:
    proxy = await start_proxy(plain.url)
    reader, writer = await asyncio.open_connection(proxy.server.host, proxy.server.port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 200")
    [received] = plain.fake.received
    assert received.raw_path_qs == path  # forwarded as sent, to the configured upstream only
    # The one cassette is found inside the cassette directory (had it escaped, this would time out) and
    # nothing else was written anywhere under the test's directory.
    [cassette] = await wait_for_cassettes(proxy.settings.cassettes, 1)
    assert cassette.resolve().is_relative_to(proxy.settings.cassettes.resolve())
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [cassette]


@pytest.mark.parametrize("model", ["../../escape", "a/b\\c:d*e?f", "\u00e9\u00e8 \U0001f600", "x" * 300])
async def test_model_names_that_cannot_be_filenames_still_give_a_safe_cassette(
    plain: RunningUpstream, start_proxy: StartProxy, model: str
) -> None:
    plain.fake.completions["default"] = make_completion([make_completion_choice(make_message("ok"))], model=model)
    proxy = await start_proxy(plain.url)
    async with aiohttp.ClientSession() as session, session.post(proxy.url + CHAT, json={**BODY, "model": model}):
        pass
    [path] = await wait_for_cassettes(proxy.settings.cassettes, 1)
    assert path.resolve().is_relative_to(proxy.settings.cassettes.resolve())
    assert len(path.name) < 120
    assert load_cassette(path).model == model


async def test_repeated_and_odd_headers_pass_through(plain: RunningUpstream, start_proxy: StartProxy) -> None:
    proxy = await start_proxy(plain.url)
    headers = [("x-multi", "one"), ("x-multi", "two"), ("x-empty", ""), ("X-MiXeD-CaSe", "v")]
    async with aiohttp.ClientSession() as session, session.post(proxy.url + CHAT, json=BODY, headers=headers):
        pass
    received = plain.fake.received[0]
    assert received.headers.get("x-empty") == ""
    assert received.headers.get("X-MiXeD-CaSe") == "v"
    [path] = await wait_for_cassettes(proxy.settings.cassettes, 1)
    names = [name.lower() for name, _ in load_cassette(path).request.headers]
    assert names.count("x-multi") == 2


def children_of(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children.extend(int(child) for child in (task / "children").read_text().split())
    return children


def wait_until_gone(pids: list[int], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while any(Path(f"/proc/{pid}").exists() for pid in pids):
        assert time.monotonic() < deadline, f"processes {pids} outlived their parent by {timeout} s"
        time.sleep(0.05)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the worker through Linux's /proc")
def wait_for_files(directory: Path, count: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if directory.is_dir() and len(list(iter_cassette_paths(directory))) >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"no {count} cassette(s) in {directory} within {timeout} s")


def test_kill_9_under_load_leaves_no_half_written_cassette_and_import_restores_every_row(tmp_path: Path) -> None:
    fake = FakeUpstream()
    fake.completions["default"] = make_completion([make_completion_choice(make_message("ok " * 50))])
    url, stop, thread = serve_upstream_in_thread(fake)
    cassettes, db = tmp_path / "c", tmp_path / "traffic.duckdb"
    proc = start_proxy_process(["record", "--upstream", url, "--cassettes", str(cassettes), "--db", str(db)])

    async def load() -> None:
        async with aiohttp.ClientSession() as session:

            async def one() -> None:
                try:
                    async with session.post(proc.url + CHAT, json=BODY) as response:
                        await response.read()
                except aiohttp.ClientError:
                    pass

            await one()  # the worker starts in the background: let it be writing before the load and the kill
            await asyncio.to_thread(wait_for_files, cassettes, 1)
            for round_number in range(40):
                await asyncio.gather(*(one() for _ in range(8)))
                if round_number == 20:
                    workers.extend(children_of(proc.process.pid))
                    proc.process.send_signal(signal.SIGKILL)  # our own child

    workers: list[int] = []
    try:
        asyncio.run(load())
        proc.stop()
    finally:
        stop.set()
        thread.join(10)
    assert workers, "the proxy had its recording worker"
    # The orphaned worker finishes the file in hand and leaves; only then is the directory final.
    wait_until_gone(workers)
    paths = list(iter_cassette_paths(cassettes))
    assert paths, "some cassettes were written before the kill"
    for path in paths:
        load_cassette(path)  # raises on a half-written file
    result = run_cli(["import", str(cassettes), "--db", str(db)])
    assert result.returncode == 0, result.stderr
    with duckdb.connect(str(db), read_only=True) as con:
        ids = {row[0] for row in con.execute("SELECT id FROM interactions").fetchall()}
    assert ids == {load_cassette(path).id for path in paths}


def test_load_200_concurrent_streams_2000_requests_every_one_recorded(tmp_path: Path) -> None:
    fake = FakeUpstream()
    fake.streams["default"] = stream_content()
    url, stop, thread = serve_upstream_in_thread(fake)
    cassettes, db = tmp_path / "c", tmp_path / "traffic.duckdb"
    proc = start_proxy_process(["record", "--upstream", url, "--cassettes", str(cassettes), "--db", str(db)])
    received: dict[str, bytes] = {}
    errors: list[str] = []

    async def load() -> None:
        connector = aiohttp.TCPConnector(limit=200)
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            queue: asyncio.Queue[int] = asyncio.Queue()
            for number in range(2000):
                queue.put_nowait(number)

            async def client() -> None:
                while not queue.empty():
                    number = queue.get_nowait()
                    body: dict[str, Any] = {**BODY, "stream": True, "user": f"u{number}"}
                    try:
                        async with session.post(proc.url + CHAT, json=body) as response:
                            data = await response.read()
                            if response.status != 200:
                                errors.append(f"{number}: {response.status}")
                            received[f"u{number}"] = data
                    except (aiohttp.ClientError, TimeoutError) as exc:
                        errors.append(f"{number}: {exc!r}")

            await asyncio.wait_for(asyncio.gather(*(client() for _ in range(200))), timeout=240)

    try:
        asyncio.run(load())
    finally:
        code, stderr = proc.stop(timeout=60)
        stop.set()
        thread.join(10)
    assert errors == []
    assert code == 0, stderr
    paths = list(iter_cassette_paths(cassettes))
    assert len(paths) == 2000
    for path in paths:
        interaction = load_cassette(path)
        user = interaction.request.body.json_["user"]
        events = "".join(f"data: {event.text}\n\n" for event in interaction.response.events or [])
        assert events.encode() == received[user]
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*), count(DISTINCT id) FROM interactions").fetchall() == [(2000, 2000)]


async def test_a_corrupt_database_degrades_health_but_not_traffic_and_writing_resumes_when_fixed(
    plain: RunningUpstream, start_proxy: StartProxy, tmp_path: Path
) -> None:
    db = tmp_path / "broken.duckdb"
    db.write_bytes(b"this is not a duckdb file" * 100)
    proxy = await start_proxy(plain.url, db_enabled=True, db=db, db_flush_interval=0.1)
    async with aiohttp.ClientSession() as session:
        async with session.post(proxy.url + CHAT, json=BODY) as response:
            assert response.status == 200

        async def health() -> dict[str, Any]:
            async with session.get(proxy.url + "/_proxy/health") as answer:
                return await answer.json()  # type: ignore[no-any-return]

        for _ in range(100):
            state = await health()
            if state["status"] == "degraded":
                break
            await asyncio.sleep(0.05)
        assert state["status"] == "degraded"
        assert state["database"]["write_errors"] >= 1
        db.unlink()  # the fault clears
        for _ in range(100):
            state = await health()
            if state["database"]["rows_written"] == 1:
                break
            await asyncio.sleep(0.05)
        assert state["database"]["rows_written"] == 1
        assert state["status"] == "ok"


async def test_no_secret_reaches_a_log_line(
    plain: RunningUpstream, start_proxy: StartProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    proxy = await start_proxy("http://127.0.0.1:9")  # unreachable: the error path logs
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            proxy.url + CHAT + "?api_key=QUERY-SECRET-1", json=BODY, headers={"Authorization": f"Bearer {API_KEY}"}
        ) as response,
    ):
        assert response.status == 502
    replay = await start_proxy(mode="replay", cassettes=proxy.settings.cassettes)
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            replay.url + CHAT + "?api_key=QUERY-SECRET-1", json=BODY, headers={"Authorization": f"Bearer {API_KEY}"}
        ) as response,
    ):
        assert response.status == 404
    assert caplog.records, "the failures above were logged"
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("proxy"))
    # aiohttp's access log would show the query string; `proxy` runs with it off (server.py).
    assert API_KEY not in ours and "QUERY-SECRET-1" not in ours


async def first_recording(session: aiohttp.ClientSession, proxy: RunningProxy) -> int:
    """Record one exchange through a proxy with a worker process; the worker's pid, once it has written it."""
    async with session.post(proxy.url + CHAT, json=BODY) as response:
        assert response.status == 200
    await wait_for_cassettes(proxy.settings.cassettes, 1)
    worker = proxy.server.app[RECORDER].worker_pid
    assert worker is not None
    return int(worker)


async def test_a_killed_recording_worker_is_replaced_and_traffic_never_notices(
    plain: RunningUpstream, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(plain.url, record_workers="process")
    recorder = proxy.server.app[RECORDER]
    async with aiohttp.ClientSession() as session:
        worker = await first_recording(session, proxy)
        os.kill(worker, signal.SIGKILL)
        await asyncio.sleep(0.2)
        for _ in range(3):
            async with session.post(proxy.url + CHAT, json=BODY) as response:
                assert response.status == 200
                await response.read()
    await wait_for_cassettes(proxy.settings.cassettes, 4, timeout=20)
    # a cassette is in place a moment before the worker reports the batch it belongs to
    await eventually(lambda: recorder.recorded == 4, what=f"4 recordings counted (got {recorder.recorded})")
    assert recorder.worker_pid not in (None, worker)


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads the worker's mappings from /proc")
async def test_the_recording_worker_loads_neither_asyncio_nor_ssl_and_its_duckdb_returns_freed_memory(
    plain: RunningUpstream, start_proxy: StartProxy
) -> None:
    # The worker does blocking I/O only; asyncio would bring ssl and OpenSSL's libssl, about 3 MB of its memory.
    # DuckDB's allocator is told to return freed pages at once (worker.py's DUCKDB_ALLOCATOR says why).
    proxy = await start_proxy(plain.url, db_enabled=True)
    async with aiohttp.ClientSession() as session:
        worker = await first_recording(session, proxy)
    maps = Path(f"/proc/{worker}/maps").read_text().splitlines()
    mapped = {Path(line.split()[-1]).name.split(".")[0] for line in maps}
    assert "_duckdb" in mapped  # its sinks are loaded: the process is the one doing the writing
    assert not {"_asyncio", "_ssl", "libssl"} & mapped
    environment = Path(f"/proc/{worker}/environ").read_bytes().split(b"\0")
    name, value = DUCKDB_ALLOCATOR
    assert f"{name}={os.environ.get(name, value)}".encode() in environment  # a setting of the user's is kept


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
@pytest.mark.parametrize(("priority", "policy", "niceness"), [("idle", "SCHED_IDLE", 0), ("low", "SCHED_OTHER", 10)])
def test_every_thread_of_the_recording_worker_runs_below_the_traffic(
    tmp_path: Path, priority: str, policy: str, niceness: int
) -> None:
    fake = FakeUpstream()
    fake.completions["default"] = make_completion([make_completion_choice(make_message("ok"))])
    url, stop, thread = serve_upstream_in_thread(fake)
    config = tmp_path / "proxy.toml"
    config.write_text(f'record_worker_priority = "{priority}"\n')
    cassettes = tmp_path / "c"
    # The real command: how the worker is started decides which threads exist before it lowers itself
    # (an import may start one).
    proc = start_proxy_process(["record", "--upstream", url, "--cassettes", str(cassettes), "--config", str(config)])
    try:
        asyncio.run(record_one(proc.url, cassettes))
        workers = [pid for pid in children_of(proc.process.pid) if "resource_tracker" not in cmdline_of(pid)]
        assert len(workers) == 1, workers
        threads = [int(tid) for tid in os.listdir(f"/proc/{workers[0]}/task")]
        assert len(threads) > 1
        for tid in threads:
            assert os.sched_getscheduler(tid) == getattr(os, policy), f"thread {tid}"
            assert os.getpriority(os.PRIO_PROCESS, tid) - os.getpriority(os.PRIO_PROCESS, 0) == niceness
        assert os.sched_getscheduler(proc.process.pid) == os.SCHED_OTHER, "only the worker lowers itself"
    finally:
        proc.stop()
        stop.set()
        thread.join(10)


async def record_one(url: str, cassettes: Path) -> None:
    async with aiohttp.ClientSession() as session, session.post(url + CHAT, json=BODY) as response:
        assert response.status == 200
    await wait_for_cassettes(cassettes, 1)


def cmdline_of(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


async def test_a_stalled_recording_worker_is_reported_and_nothing_is_lost(
    plain: RunningUpstream, start_proxy: StartProxy, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = await start_proxy(plain.url, record_workers="process")
    recorder = proxy.server.app[RECORDER]
    recorder.runner.stall.warning = 0.3
    async with aiohttp.ClientSession() as session:
        worker = await first_recording(session, proxy)
        os.kill(worker, signal.SIGSTOP)  # our own child: what a worker starved of CPU looks like from outside
        try:
            for _ in range(3):
                async with session.post(proxy.url + CHAT, json=BODY) as response:
                    assert response.status == 200, "a stalled recorder never holds up the traffic"
                    await response.read()
            await asyncio.sleep(1.0)
            async with session.get(proxy.url + "/_proxy/health") as response:
                stalled = await response.json()
        finally:
            os.kill(worker, signal.SIGCONT)
        await wait_for_cassettes(proxy.settings.cassettes, 4, timeout=20)
        async with session.get(proxy.url + "/_proxy/health") as response:
            recovered = await response.json()
    assert stalled["status"] == "degraded"
    assert stalled["recording_pending"] == 3
    assert stalled["recording_stalled_s"] >= 0.3
    warnings = [r.getMessage() for r in caplog.records if r.name == "proxy.record" and r.levelname == "WARNING"]
    assert len(warnings) == 1 and "record_worker_priority" in warnings[0], warnings
    assert (recovered["status"], recovered["recording_stalled_s"]) == ("ok", 0.0)
    assert recorder.recorded == 4


async def record_behind_a_stopped_worker(
    session: aiohttp.ClientSession, proxy: RunningProxy, prompts: list[str]
) -> tuple[int, int]:
    """One recording, then one per prompt while the worker is stopped (SIGSTOP), so that they all wait in the
    proxy; the spool's bytes in its file and in memory at that point. The worker runs again on return."""
    runner = proxy.server.app[RECORDER].runner
    worker = await first_recording(session, proxy)
    os.kill(worker, signal.SIGSTOP)
    try:
        for prompt in prompts:
            body = {**BODY, "messages": [{"role": "user", "content": prompt}]}
            async with session.post(proxy.url + CHAT, json=body) as response:
                assert response.status == 200
                await response.read()
        return runner.spool.spooled, runner.spool.held
    finally:
        os.kill(worker, signal.SIGCONT)


async def test_recordings_waiting_for_a_stopped_worker_wait_in_the_spool_file_and_all_land(
    plain: RunningUpstream, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(plain.url, record_workers="process")
    runner = proxy.server.app[RECORDER].runner
    runner.spool.budget = 0  # every frame past the first goes to the file
    async with aiohttp.ClientSession() as session:
        spooled, held = await record_behind_a_stopped_worker(session, proxy, [f"spooled {n}" for n in range(5)])
        paths = await wait_for_cassettes(proxy.settings.cassettes, 6, timeout=20)
    assert spooled > 0 and held == 0, "the waiting frames were in the file, not in memory"
    prompts = {load_cassette(path).request.body.json_["messages"][0]["content"] for path in paths}
    assert prompts == {"Hi"} | {f"spooled {n}" for n in range(5)}
    await eventually(lambda: runner.spool.spooled == 0, what="the spool emptied once nothing waits")


async def test_more_waiting_frames_than_the_socket_holds_go_out_together_and_all_land(
    plain: RunningUpstream, start_proxy: StartProxy
) -> None:
    # With the worker stopped, the socket to it fills, and the frames behind wait in the channel's queue, most of
    # them in the spool file: once it runs again they are read back and sent several at a time (worker.py).
    proxy = await start_proxy(plain.url, record_workers="process")
    runner = proxy.server.app[RECORDER].runner
    runner.spool.budget = 64 * 1024
    filler = "x" * 20_000
    async with aiohttp.ClientSession() as session:
        prompts = [f"waiting {n} {filler}" for n in range(60)]
        spooled, held = await record_behind_a_stopped_worker(session, proxy, prompts)
        paths = await wait_for_cassettes(proxy.settings.cassettes, 61, timeout=30)
    assert spooled > 1_000_000 and 0 < held <= 64 * 1024, (spooled, held)
    prompts = {load_cassette(path).request.body.json_["messages"][0]["content"].removesuffix(filler) for path in paths}
    assert prompts == {"Hi"} | {f"waiting {n} " for n in range(60)}


async def test_a_worker_killed_while_recordings_wait_in_the_spool_file_is_replaced_and_they_land(
    plain: RunningUpstream, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(plain.url, record_workers="process")
    recorder = proxy.server.app[RECORDER]
    recorder.runner.spool.budget = 0
    async with aiohttp.ClientSession() as session:
        worker = await first_recording(session, proxy)
        os.kill(worker, signal.SIGSTOP)
        for _ in range(3):
            async with session.post(proxy.url + CHAT, json=BODY) as response:
                assert response.status == 200
                await response.read()
        assert recorder.runner.spool.spooled > 0
        os.kill(worker, signal.SIGKILL)  # the new worker gets the frames from the file, one recording at a time
    await wait_for_cassettes(proxy.settings.cassettes, 4, timeout=20)
    await eventually(lambda: recorder.recorded == 4, what=f"4 recordings counted (got {recorder.recorded})")


async def test_an_idle_recording_worker_exits_and_the_next_recording_starts_a_new_one(
    plain: RunningUpstream, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(
        plain.url, record_workers="process", record_worker_idle_exit=0.3, db_enabled=True, db_flush_interval=0.05
    )
    recorder = proxy.server.app[RECORDER]
    async with aiohttp.ClientSession() as session:
        first = await first_recording(session, proxy)
        await eventually(lambda: recorder.worker_pid is None, timeout=10, what="the idle worker exits")
        await asyncio.to_thread(wait_until_gone, [first])  # gone, its memory back to the system
        async with session.post(proxy.url + CHAT, json=BODY) as response:
            assert response.status == 200
            await response.read()
        await wait_for_cassettes(proxy.settings.cassettes, 2)
        await eventually(lambda: recorder.worker_pid not in (None, first), timeout=10, what="a new worker")
        await eventually(lambda: recorder.recorded == 2, timeout=10, what="both recorded")
        for _ in range(100):
            async with session.get(proxy.url + "/_proxy/health") as response:
                health = await response.json()
            if health["database"]["rows_written"] == 2:  # the first worker's rows still count
                break
            await asyncio.sleep(0.05)
    assert health["database"]["rows_written"] == 2
    assert health["write_errors"] == 0


def test_memory_freed_after_a_backlog_can_be_given_back_where_glibc_runs() -> None:
    # The proxy trims the allocator once a large recording backlog has drained (free_memory.py); the binding
    # must work where glibc is the C library, and be a harmless no-op elsewhere.
    assert release_free_memory() is (platform.libc_ver()[0] == "glibc")
