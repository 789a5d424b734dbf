"""The pytest plugin's configuration, by real pytest runs: ini settings, the marker (a shared directory, a
record mode), precedence (command line, then marker, then ini), directory names, the unused-recordings
summary, that it stays inert for tests that don't use it, that it starts beside pytest-recording, and that
`-p no:llm_cassette_proxy` disables it."""

from __future__ import annotations

import pytest

from tests.plugin_suite import INI, Upstream, cassette_counts, cassettes, project, run, upstream_thread, write

pytest_plugins = ["pytester"]
__all__ = ["project", "upstream_thread"]  # fixtures used by name

CALL = """
import os, threading

import openai
import pytest


def call(text="hi"):
    with openai.OpenAI(max_retries=0) as client:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": text}])
"""

CONFIGURED = (
    CALL
    + """

def test_from_ini(llm_proxy):
    call()


@pytest.mark.llm_cassette(record_mode="none")
def test_marker_mode(llm_proxy):
    call("only here")


class TestGroup:
    @pytest.mark.parametrize("word", ["a/b", "c:d"])
    def test_param(self, llm_proxy, word):
        call(word)
"""
)

SHARING = (
    CALL
    + """

@pytest.mark.llm_cassette("shared")
def test_first():  # the marker alone brings the proxy
    call()


@pytest.mark.llm_cassette("shared")
def test_second():
    call()
"""
)


def test_ini_settings_marker_and_precedence_command_line_then_marker_then_ini(
    project: pytest.Pytester, upstream_thread: Upstream
) -> None:
    project.makefile(
        ".ini",
        pytest=INI + f"llm_record_mode = once\nllm_upstream = {upstream_thread.url}\nllm_cassette_root = recorded\n",
    )
    write(project, "test_cfg", CONFIGURED)
    write(project, "test_share", SHARING)
    root = project.path / "recorded"
    first = project.runpytest_subprocess("-p", "no:cacheprovider")  # everything from the ini file
    first.assert_outcomes(passed=5, failed=1)  # the marker's `none` beats the ini's `once`: a miss
    first.stdout.fnmatch_lines(
        ["*_ test_marker_mode _*", "*found no recording in recorded/test_cfg/test_marker_mode/*"]
    )
    assert cassette_counts(root / "test_cfg") == {
        "TestGroup.test_param[a-b]": 1,
        "TestGroup.test_param[c-d]": 1,
        "test_from_ini": 1,
    }
    assert cassette_counts(root / "test_share") == {"shared": 1}  # the second test replayed the first's
    assert upstream_thread.requests == 4
    second = project.runpytest_subprocess("-p", "no:cacheprovider", "--llm-record-mode=once")
    second.assert_outcomes(passed=6)  # the command line beats the marker: test_marker_mode records
    assert upstream_thread.requests == 5
    third = project.runpytest_subprocess("-p", "no:cacheprovider", "--llm-record-mode=all", "-k", "from_ini")
    third.assert_outcomes(passed=1)  # all: records again, beside what was there
    assert upstream_thread.requests == 6
    assert len(cassettes(root / "test_cfg" / "test_from_ini")) == 2


def test_a_bad_ini_mode_fails_at_startup_naming_the_setting(project: pytest.Pytester) -> None:
    project.makefile(".ini", pytest=INI + "llm_record_mode = sometimes\n")
    write(project, "test_cfg", CALL + "\n\ndef test_x(llm_proxy):\n    pass\n")
    result = project.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*llm_record_mode = 'sometimes': must be one of none, once, new_episodes*"])


def test_report_unused_lists_the_recordings_no_test_used_across_workers(
    project: pytest.Pytester, upstream_thread: Upstream
) -> None:
    two = CALL + '\n\ndef test_two(llm_proxy):\n    call("first")\n    call("second")\n'
    write(project, "test_unused", two)
    run(project, upstream_thread, "--llm-record-mode=once").assert_outcomes(passed=1)
    directory = project.path / "cassettes" / "test_unused" / "test_two"
    second = [p for p in cassettes(directory) if '"second"' in p.read_text()]
    write(project, "test_unused", two.replace('    call("second")\n', ""))
    result = run(project, upstream_thread, "--llm-report-unused", "-n", "2")
    result.assert_outcomes(passed=1)
    unused = second[0].relative_to(project.path)
    result.stdout.fnmatch_lines(["*= llm-cassette: 1 recording(s) no test used =*", str(unused)])
    assert [line for line in result.outlines if line.startswith("cassettes/")] == [str(unused)]


def test_the_plugin_is_inert_for_tests_that_do_not_use_it_and_starts_beside_pytest_recording(
    project: pytest.Pytester, upstream_thread: Upstream
) -> None:
    suite = (
        CALL
        + """

def test_untouched():
    assert "OPENAI_BASE_URL" not in os.environ
    assert "proxy" not in [thread.name for thread in threading.enumerate()]  # no proxy was started


@pytest.mark.vcr
def test_with_vcr():
    pass


def test_with_llm(llm_proxy):
    assert os.environ["OPENAI_BASE_URL"] == llm_proxy.base_url


def test_after():
    assert "OPENAI_BASE_URL" not in os.environ
"""
    )
    write(project, "test_both", suite)
    result = run(project, upstream_thread, "--record-mode=none", "--llm-record-mode=none", "-v")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["plugins:*recording-*llm-cassette-proxy-*"])
    assert not (project.path / "cassettes").exists()


def test_p_no_disables_the_plugin(project: pytest.Pytester) -> None:
    write(project, "test_off", CALL + "\n\ndef test_x(llm_proxy):\n    pass\n")
    off = ("-p", "no:cacheprovider", "-p", "no:llm_cassette_proxy")
    result = project.runpytest_subprocess(*off)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'llm_proxy' not found*"])
    assert "llm-cassette-proxy" not in result.stdout.str()
    refused = project.runpytest_subprocess(*off, "--llm-record-mode=none")
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    refused.stderr.fnmatch_lines(["*unrecognized arguments: --llm-record-mode=none*"])
