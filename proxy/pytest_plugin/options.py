"""The plugin's options, on the command line and as ini settings of the same names, and the record mode a test
runs in.

    --llm-record-mode / llm_record_mode       none | once | new_episodes | all | rewrite (default none)
    --llm-upstream / llm_upstream             where recording modes forward (default https://api.openai.com)
    --llm-cassette-root / llm_cassette_root   the cassette root (default: `cassettes/` beside each test file)
    --llm-report-unused / llm_report_unused   list the recordings no test used in the summary

A test's record mode, as pytest-recording decides it: the command line, else the `llm_cassette` marker's
`record_mode` (the narrowest marker wins), else the ini setting, else `none`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

RECORD_MODES = ("none", "once", "new_episodes", "all", "rewrite")
DEFAULT_MODE = "none"
DEFAULT_UPSTREAM = "https://api.openai.com"

# pytest-recording's vocabulary to the proxy's modes (`rewrite` deletes the test's directory first).
PROXY_MODES = {"none": "replay", "once": "once", "new_episodes": "auto", "all": "record", "rewrite": "record"}

_HELP = {
    "llm_record_mode": "record mode of the LLM cassettes: " + ", ".join(RECORD_MODES) + " (default: none)",
    "llm_upstream": f"where the LLM proxy forwards when it records (default: {DEFAULT_UPSTREAM})",
    "llm_cassette_root": "root of the LLM cassette directories (default: cassettes/ beside each test file)",
    "llm_report_unused": "list the LLM recordings that no test used in the terminal summary",
}


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("llm-cassette", "LLM cassettes (llm-cassette-proxy)")
    group.addoption(
        "--llm-record-mode", dest="llm_record_mode", choices=RECORD_MODES, default=None, help=_HELP["llm_record_mode"]
    )
    group.addoption("--llm-upstream", dest="llm_upstream", metavar="URL", default=None, help=_HELP["llm_upstream"])
    group.addoption(
        "--llm-cassette-root", dest="llm_cassette_root", metavar="DIR", default=None, help=_HELP["llm_cassette_root"]
    )
    group.addoption(
        "--llm-report-unused",
        dest="llm_report_unused",
        action="store_true",
        default=None,
        help=_HELP["llm_report_unused"],
    )
    for name in ("llm_record_mode", "llm_upstream", "llm_cassette_root"):
        parser.addini(name, _HELP[name], type="string", default="")
    parser.addini("llm_report_unused", _HELP["llm_report_unused"], type="bool", default=False)


@dataclass(frozen=True, slots=True)
class PluginOptions:
    cli_mode: str | None  # given on the command line: it beats every marker
    ini_mode: str | None
    upstream: str
    root: Path | None  # None: `cassettes/` beside each test file
    report_unused: bool

    @classmethod
    def of(cls, config: pytest.Config) -> PluginOptions:
        """Read and check the options; a bad ini value fails at startup naming the setting."""
        ini_mode = str(config.getini("llm_record_mode")).strip() or None
        if ini_mode is not None and ini_mode not in RECORD_MODES:
            raise pytest.UsageError(f"llm_record_mode = {ini_mode!r}: must be one of {', '.join(RECORD_MODES)}")
        upstream = config.getoption("llm_upstream") or str(config.getini("llm_upstream")).strip() or DEFAULT_UPSTREAM
        if not upstream.startswith(("http://", "https://")):
            raise pytest.UsageError(f"llm_upstream = {upstream!r}: must start with http:// or https://")
        report_unused = config.getoption("llm_report_unused")
        return cls(
            cli_mode=config.getoption("llm_record_mode"),
            ini_mode=ini_mode,
            upstream=upstream.rstrip("/"),
            root=_root(config),
            report_unused=bool(config.getini("llm_report_unused") if report_unused is None else report_unused),
        )

    def record_mode(self, marker_mode: str | None) -> str:
        """Command line, then marker, then ini, then `none` (pytest-recording's order)."""
        return self.cli_mode or marker_mode or self.ini_mode or DEFAULT_MODE

    def may_record(self, marker_modes: set[str | None]) -> bool:
        """Whether any test of the session may record: if not, the proxy starts without a recording side."""
        return any(self.record_mode(mode) != "none" for mode in marker_modes | {None})


def _root(config: pytest.Config) -> Path | None:
    """A root on the command line is relative to where pytest was started; in the ini file, to that file."""
    given: str | None = config.getoption("llm_cassette_root")
    if given:
        return (config.invocation_params.dir / given).resolve()
    in_ini = str(config.getini("llm_cassette_root")).strip()
    if in_ini:
        base = config.inipath.parent if config.inipath is not None else config.rootpath
        return (base / in_ini).resolve()
    return None
