"""The `proxy` command as a user runs it: help, startup line, clean stop, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.chunks import stream_content
from tests.cli_process import run_cli, start_proxy_process
from tests.upstream import FakeUpstream, serve_upstream_in_thread

COMMANDS = ["record", "replay", "serve", "sql", "stats", "report", "import", "export"]


def test_top_level_help_lists_every_command() -> None:
    result = run_cli(["--help"])
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_help_with_defaults_and_examples(command: str) -> None:
    result = run_cli([command, "--help"])
    assert result.returncode == 0
    examples = result.stdout.split("examples:\n", 1)[1]
    assert len([line for line in examples.splitlines() if line.startswith(f"  proxy {command}")]) >= 2
    assert "(default: " in result.stdout
    assert "--config FILE" in result.stdout
    assert " {}" not in result.stdout, "a flag without choices shows an empty set as its value"


def test_record_help_lists_only_what_recording_uses_and_replay_help_only_what_replay_uses() -> None:
    record = run_cli(["record", "--help"]).stdout
    replay = run_cli(["replay", "--help"]).stdout
    assert "--upstream" in record and "--first-byte-timeout" in record
    assert "--timing" not in record and "--match-header" not in record and "--mode" not in record
    assert "--timing" in replay and "--ignore-body-field" in replay
    assert "--upstream" not in replay and "--no-db" not in replay and "--record-workers" not in replay


def test_a_misspelled_flag_shows_the_usage_of_its_command(tmp_path: Path) -> None:
    result = run_cli(["replay", str(tmp_path), "--timming", "original"])
    assert result.returncode == 2
    assert result.stderr.startswith("usage: proxy replay ")
    assert "proxy replay: error: unrecognized arguments: --timming (did you mean --timing?)" in result.stderr
    sql = run_cli(["sql", "SELECT 1", "--fromat", "csv"])
    assert sql.stderr.startswith("usage: proxy sql ") and "did you mean --format?" in sql.stderr


def test_mode_bogus_names_the_setting_the_value_and_the_modes() -> None:
    result = run_cli(["serve", "--mode", "bogus"])
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "proxy: bad setting mode = 'bogus' (from --mode): valid values: record, replay, auto, once "
        "(also all = record, none = replay, new_episodes = auto)"
    )


def test_a_bad_value_in_the_config_file_names_the_file_and_the_choices(tmp_path: Path) -> None:
    config = tmp_path / "proxy.toml"
    config.write_text('on_exhausted = "loop"\n')
    result = run_cli(["replay", "cassettes", "--config", str(config)], cwd=tmp_path)
    assert result.returncode == 1
    assert (
        result.stderr.strip() == f"proxy: bad setting on_exhausted = 'loop' (in {config}): valid values: repeat, fail"
    )
    config.write_text('cassettes = "tapes"\ntiming = "slow"\n')
    result = run_cli(["record", "--config", str(config)], cwd=tmp_path)
    assert "bad setting timing = 'slow'" in result.stderr and "valid values: fast, original" in result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["proxy.toml"]  # a failed start creates no files


@pytest.mark.parametrize("command", [["record"], ["replay", "cassettes"], ["sql", "SELECT 1"], ["stats"], ["import"]])
@pytest.mark.parametrize("content", [b"port = 1\n# caf\xe9\n", None], ids=["not UTF-8", "a directory"])
def test_a_config_file_that_is_not_utf8_or_unreadable_is_one_line(
    tmp_path: Path, command: list[str], content: bytes | None
) -> None:
    config = tmp_path / "proxy.toml"
    if content is None:
        config.mkdir()
    else:
        config.write_bytes(content)
    result = run_cli([*command, "--config", str(config)], cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and str(config) in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["proxy.toml"]  # and nothing was created


def test_replay_takes_the_cassette_directory_as_dir_or_as_flag() -> None:
    samples = Path(__file__).resolve().parent.parent / "cassettes"
    for args in (["replay", str(samples)], ["replay", "--cassettes", str(samples)]):
        proc = start_proxy_process(args)
        try:
            assert f"serving recordings from {samples}/" in proc.startup_line
        finally:
            code, stderr = proc.stop()
        assert code == 0, stderr
    both = run_cli(["replay", str(samples), "--cassettes", "elsewhere"])
    assert both.returncode == 1 and "two cassette directories given" in both.stderr


def test_record_prints_where_it_listens_forwards_and_records_then_stops_cleanly(tmp_path: Path) -> None:
    cassettes = tmp_path / "tapes"
    proc = start_proxy_process(["record", "--upstream", "http://127.0.0.1:9", "--cassettes", str(cassettes), "--no-db"])
    try:
        assert "forwarding to http://127.0.0.1:9/v1" in proc.startup_line
        assert str(cassettes) in proc.startup_line
        with urllib.request.urlopen(f"{proc.url}/_proxy/health", timeout=10) as response:
            health = json.load(response)
        assert health["mode"] == "record"
        assert health["upstream"] == "http://127.0.0.1:9"
    finally:
        code, stderr = proc.stop()
    assert code == 0
    assert "Traceback" not in stderr


def test_config_file_sets_values_and_flags_override_it(tmp_path: Path) -> None:
    config = tmp_path / "proxy.toml"
    config.write_text(f'upstream = "http://127.0.0.1:7"\ncassettes = "{tmp_path / "from-file"}"\ndb_enabled = false\n')
    proc = start_proxy_process(["record", "--config", str(config), "--upstream", "http://127.0.0.1:8"])
    try:
        assert "forwarding to http://127.0.0.1:8/v1" in proc.startup_line
        assert "from-file" in proc.startup_line
    finally:
        code, _ = proc.stop()
    assert code == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["record", "--config", "/nonexistent/proxy.toml"], "config file not found"),
        (["record", "--upstream", "ftp://nope"], "bad setting upstream"),
        (["serve", "--mode", "sometimes"], "bad setting mode"),
    ],
)
def test_bad_settings_are_one_line_and_exit_1(args: list[str], message: str) -> None:
    result = run_cli(args)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_replay_of_a_missing_directory_exits_2_with_one_line(tmp_path: Path) -> None:
    result = run_cli(["replay", str(tmp_path / "missing")])
    assert result.returncode == 2
    assert "cassette directory not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_auto_records_a_miss_in_its_worker_process_and_replays_it_next_time(tmp_path: Path) -> None:
    fake = FakeUpstream()
    fake.streams["default"] = stream_content()
    url, stop, thread = serve_upstream_in_thread(fake)
    proc = start_proxy_process(["serve", "--mode", "auto", "--upstream", url, "--cassettes", str(tmp_path / "c")])
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}).encode()

    def ask() -> bytes:
        request = urllib.request.Request(
            f"{proc.url}/v1/chat/completions", data=body, headers={"content-type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return bytes(response.read())

    try:
        first = ask()
        for _ in range(100):  # the worker process writes the cassette, then the index learns it
            with urllib.request.urlopen(f"{proc.url}/_proxy/health", timeout=10) as response:
                if json.load(response)["recordings"] == 1:
                    break
            time.sleep(0.05)
        second = ask()
    finally:
        code, stderr = proc.stop()
        stop.set()
        thread.join(10)
    assert code == 0, stderr
    assert len(fake.received) == 1  # the second answer came from the recording
    assert second == first


def test_replay_flags_choose_ignored_body_fields(tmp_path: Path) -> None:
    samples = Path(__file__).resolve().parent.parent / "cassettes"
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello to the proxy"}], "seed": 7}

    def status_with(flags: list[str]) -> int:
        proc = start_proxy_process(["replay", str(samples), *flags])
        request = urllib.request.Request(
            f"{proc.url}/v1/chat/completions",
            data=json.dumps(body).encode(),
            headers={"content-type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return error.code
        finally:
            code, stderr = proc.stop()
            assert code == 0, stderr

    assert status_with([]) == 404  # the recording has no seed
    assert status_with(["--ignore-body-field", "seed", "--ignore-body-field", "user"]) == 200


@pytest.mark.parametrize(("choice", "expected"), [("auto", "uvloop"), ("uvloop", "uvloop"), ("asyncio", "asyncio")])
def test_the_event_loop_is_uvloop_when_installed_unless_asked_otherwise(choice: str, expected: str) -> None:
    # uvloop is in the dev extra, so "auto" finds it here; the answers are the same bytes either way.
    samples = Path(__file__).resolve().parent.parent / "cassettes"
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello to the proxy"}]})
    proc = start_proxy_process(["replay", str(samples), "--event-loop", choice, "--quiet"])
    try:
        with urllib.request.urlopen(proc.url + "/_proxy/health") as response:
            assert json.load(response)["event_loop"] == expected
        request = urllib.request.Request(
            proc.url + "/v1/chat/completions", data=body.encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request) as response:
            assert json.load(response)["choices"][0]["message"]["content"].startswith("Hello, proxy!")
    finally:
        code, stderr = proc.stop()
    assert code == 0, stderr


def test_asking_for_uvloop_where_it_is_missing_is_one_line_and_exit_1(tmp_path: Path) -> None:
    # uvloop made unimportable in a fresh interpreter that runs the real CLI
    code = (
        "import sys; sys.modules['uvloop'] = None; from proxy.cli import main; "
        f"sys.exit(main(['replay', {str(Path(__file__).resolve().parent.parent / 'cassettes')!r}, "
        "'--event-loop', 'uvloop', '--port', '0']))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "proxy: event_loop is uvloop, but uvloop is not installed: pip install 'llm-cassette-proxy[fast]'"
    ]
