"""The analytics commands as a user runs them: one database rule, --config everywhere, pipes, errors, tables."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_process import run_cli, start_proxy_process

SAMPLES = Path(__file__).resolve().parent.parent / "cassettes"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """tmp/work/tapes/ holds a copy of the sample cassettes; nothing else exists yet."""
    shutil.copytree(SAMPLES, tmp_path / "work" / "tapes")
    return tmp_path


@pytest.fixture
def imported(project: Path) -> Path:
    """The samples imported into tmp/work/traffic.duckdb; returns the database."""
    result = run_cli(["import", str(project / "work" / "tapes")], cwd=project)
    assert result.returncode == 0, result.stderr
    return project / "work" / "traffic.duckdb"


def test_import_run_elsewhere_uses_the_database_beside_the_cassettes_like_record(project: Path) -> None:
    tapes = project / "work" / "tapes"
    proc = start_proxy_process(["record", "--cassettes", str(tapes), "--upstream", "http://127.0.0.1:9"])
    try:
        assert f"{project / 'work' / 'traffic.duckdb'}" in proc.startup_line  # where record writes
    finally:
        code, stderr = proc.stop()
    assert code == 0, stderr
    elsewhere = project / "elsewhere"
    elsewhere.mkdir()
    result = run_cli(["import", str(tapes)], cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    assert f"into {project / 'work' / 'traffic.duckdb'}" in result.stdout
    assert list(elsewhere.iterdir()) == []  # no database in the current directory
    # the other commands find the same file from the cassette directory, wherever they run
    count = run_cli(["sql", "SELECT count(*) AS n FROM interactions", "--cassettes", str(tapes), "--format", "csv"])
    assert count.stdout.splitlines() == ["n", "4"], count.stderr


@pytest.mark.usefixtures("imported")
def test_every_analytics_command_takes_config_and_resolves_its_paths_from_the_file(project: Path) -> None:
    config = project / "work" / "proxy.toml"
    config.write_text('cassettes = "tapes"\n[prices]\n"gpt-4o-mini" = { input = 1000.0, output = 1000.0 }\n')
    cwd = project  # not the config's folder: relative paths in it are relative to it, not to here
    base = ["--config", str(config)]
    sql = run_cli(["sql", "SELECT count(*) FROM interactions", "--format", "csv", *base], cwd=cwd)
    assert sql.stdout.splitlines()[1] == "4", sql.stderr
    imported = run_cli(["import", *base], cwd=cwd)
    assert imported.returncode == 0 and "4 already there" in imported.stdout, imported.stderr
    stats = run_cli(["stats", "--format", "json", *base], cwd=cwd)
    assert json.loads(stats.stdout)["prices"].endswith("config overrides for gpt-4o-mini"), stats.stderr
    report = run_cli(["report", str(project / "r.html"), *base], cwd=cwd)
    assert report.returncode == 0 and (project / "r.html").exists(), report.stderr
    export = run_cli(["export", str(project / "lake"), *base], cwd=cwd)
    assert export.returncode == 0 and "exported 4 new interaction(s)" in export.stdout, export.stderr
    assert not (project / "traffic.duckdb").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["sql", "SELECT range, repeat('x', 100) FROM range(20000)"],
        ["stats"],
        ["export", "{lake}"],
        ["report", "{report}"],
    ],
    ids=["sql", "stats", "export", "report"],
)
def test_output_into_a_closed_pipe_ends_quietly(imported: Path, args: list[str]) -> None:
    args = [arg.format(lake=imported.parent / "lake", report=imported.parent / "r.html") for arg in args]
    process = subprocess.Popen(
        [sys.executable, "-m", "proxy", *args, "--db", str(imported)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # the reader is gone before the first line: every write fails
    stderr = process.stderr.read().decode()
    process.stderr.close()
    assert process.wait(60) == 141
    assert stderr == ""


def test_sql_piped_into_head_prints_the_first_lines_and_no_traceback(imported: Path) -> None:
    command = (
        f"{sys.executable} -m proxy sql 'SELECT range AS n FROM range(200000)' --db {imported} --format csv | head -3"
    )
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60, check=False)
    assert result.stdout.splitlines() == ["n", "0", "1"]
    assert result.stderr == ""


@pytest.mark.parametrize(
    ("sql", "hint"),
    [
        ("SELECT * FROM interaction", 'Did you mean "interactions"?'),
        ("SELECT modle FROM interactions", "Candidate bindings:"),
        ("SELEC 1", "LINE 1: SELEC 1\n        ^"),
    ],
)
def test_sql_errors_keep_duckdbs_hints(imported: Path, sql: str, hint: str) -> None:
    result = run_cli(["sql", sql, "--db", str(imported)])
    assert result.returncode == 1
    assert result.stderr.startswith("proxy: ")
    assert hint in result.stderr
    assert "Traceback" not in result.stderr


def test_table_output_keeps_whole_cassette_paths_unless_a_width_is_asked_for(imported: Path) -> None:
    longest = max((str(path.relative_to(SAMPLES)) for path in SAMPLES.rglob("*.json")), key=len)
    assert len(longest) > 60
    sql = f"SELECT cassette, repeat('e', 300) AS error FROM interactions WHERE cassette = '{longest}'"
    table = run_cli(["sql", sql, "--db", str(imported)]).stdout.splitlines()
    assert table[2].split() == [longest, "e" * 300]
    cut = run_cli(["sql", sql, "--db", str(imported), "--max-width", "20"]).stdout.splitlines()
    assert cut[2].split() == [longest[:19] + "…", "e" * 19 + "…"]
    stats = run_cli(["stats", "--db", str(imported), "--max-width", "12"])
    assert stats.returncode == 0 and "…" in stats.stdout


@pytest.mark.parametrize("fmt", ["table", "csv", "json"])
def test_stats_takes_format_like_sql(imported: Path, fmt: str) -> None:
    result = run_cli(["stats", "--db", str(imported), "--format", fmt])
    assert result.returncode == 0, result.stderr
    if fmt == "json":
        assert sum(row["requests"] for row in json.loads(result.stdout)["sections"][0]["rows"]) == 4
    elif fmt == "csv":
        assert result.stdout.splitlines()[0].startswith("model,requests,")


def test_import_of_one_cassette_file_uses_its_cassette_directory(project: Path) -> None:
    tapes = project / "work" / "tapes"
    one = sorted(tapes.rglob("*.json"))[0]
    result = run_cli(["import", str(one)], cwd=project)
    assert result.returncode == 0, result.stderr
    assert f"imported 1 interaction(s) into {project / 'work' / 'traffic.duckdb'}" in result.stdout
    rows = run_cli(["sql", "SELECT cassette FROM interactions", "--cassettes", str(tapes), "--format", "csv"])
    assert rows.stdout.splitlines() == ["cassette", str(one.relative_to(tapes))]


def test_import_of_an_empty_directory_says_so_and_creates_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "tapes"
    empty.mkdir()
    result = run_cli(["import", str(empty)], cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == f"proxy: no cassettes (*.json) in {empty}: nothing imported\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["tapes"]
