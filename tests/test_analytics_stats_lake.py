"""`proxy stats` windows and groupings, and the lake: two proxies' databases exported into one folder, read back
by DuckDB (`--lake`) and by polars with the same totals. Real DuckDB files and Parquet in tmp_path."""

from __future__ import annotations

import csv
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow.parquet as pq
import pytest

from analytics.lake import export_parquet, machine_tag
from analytics.query import import_directory, run_sql
from analytics.stats import stats
from proxy.interaction import Interaction
from tests.cli_process import run_cli
from tests.test_analytics_store import make_interaction, write_cassettes


def tagged(interaction: Interaction, **tags: str) -> Interaction:
    interaction.metadata.tags = tags or None
    return interaction


def traffic() -> list[Interaction]:
    return [
        tagged(make_interaction(1, day="2026-11-20", prompt=1_000_000, completion=0), feature="search"),
        tagged(make_interaction(2, day="2026-11-21", prompt=0, completion=1_000_000), feature="search"),
        tagged(make_interaction(3, day="2026-11-21", model="gpt-4o", prompt=1_000_000, completion=0), feature="chat"),
        make_interaction(4, day="2026-11-22", model="my-local-llama"),
    ]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    cassettes, path = tmp_path / "cassettes", tmp_path / "traffic.duckdb"
    write_cassettes(cassettes, traffic())
    import_directory(path, cassettes)
    return path


def first_table(sections: list[Any]) -> dict[Any, dict[str, Any]]:
    section = sections[0]
    return {row[0]: dict(zip(section.columns, row, strict=True)) for row in section.rows}


def test_stats_by_model_has_cost_and_leaves_unknown_cost_null(db: Path) -> None:
    table = first_table(stats(db))
    assert table["gpt-4o-mini"]["cost_usd"] == pytest.approx(0.15 + 0.60)
    assert table["gpt-4o"]["cost_usd"] == pytest.approx(2.50)
    assert table["my-local-llama"]["cost_usd"] is None and table["my-local-llama"]["unpriced"] == 1
    assert table["gpt-4o-mini"]["ttft_p50_ms"] is None  # no stream: no time to first token, not 0


@pytest.mark.parametrize(
    ("since", "until", "requests"),
    [
        (None, None, 4),
        (datetime(2026, 11, 21), None, 3),
        (None, datetime(2026, 11, 21), 1),  # until is exclusive
        (datetime(2026, 11, 21), datetime(2026, 11, 22), 2),
    ],
)
def test_stats_window(db: Path, since: datetime | None, until: datetime | None, requests: int) -> None:
    assert sum(row["requests"] for row in first_table(stats(db, since, until)).values()) == requests


def test_stats_by_day_and_by_tag(db: Path) -> None:
    by_day = first_table(stats(db, by="day"))
    assert [str(day) for day in by_day] == ["2026-11-20", "2026-11-21", "2026-11-22"]
    assert by_day[min(by_day)]["cost_usd"] == pytest.approx(0.15)
    by_tag = first_table(stats(db, by="tag:feature"))
    assert {name: row["requests"] for name, row in by_tag.items()} == {"search": 2, "chat": 1, "(untagged)": 1}
    assert by_tag["search"]["cost_usd"] == pytest.approx(0.75)
    assert by_tag["(untagged)"]["cost_usd"] is None


def test_stats_cli_formats_and_until_includes_the_whole_day(db: Path) -> None:
    base = ["stats", "--db", str(db), "--since", "2026-11-21", "--until", "2026-11-21", "--by", "tag:feature"]
    result = run_cli([*base, "--format", "csv"])
    assert result.returncode == 0, result.stderr
    records = list(csv.DictReader(result.stdout.splitlines()))
    assert {row["tag:feature"]: row["requests"] for row in records} == {"search": "1", "chat": "1"}
    result = run_cli([*base, "--format", "json"])
    body = json.loads(result.stdout)
    assert body["prices"].startswith("genai-prices")
    assert body["sections"][0]["rows"][0]["ttft_p50_ms"] is None
    table = run_cli(["stats", "--db", str(db)]).stdout
    assert "NULL" in table
    bad = run_cli(["stats", "--db", str(db), "--by", "colour"])
    assert bad.returncode == 1 and "use model, day or tag:NAME" in bad.stderr


# --- the lake ---


def two_databases(tmp_path: Path) -> tuple[Path, Path]:
    """Two proxies' databases with different traffic (ids of their own)."""
    first, second = tmp_path / "a" / "traffic.duckdb", tmp_path / "b" / "traffic.duckdb"
    write_cassettes(tmp_path / "a" / "cassettes", traffic())
    write_cassettes(
        tmp_path / "b" / "cassettes",
        [make_interaction(n, day="2026-11-22", prompt=n * 100, completion=n, usage=n % 2 == 0) for n in range(10, 16)],
    )
    import_directory(first, tmp_path / "a" / "cassettes")
    import_directory(second, tmp_path / "b" / "cassettes")
    return first, second


TOTALS = "SELECT count(*) AS n, sum(prompt_tokens) AS prompt, sum(completion_tokens) AS completion, " \
         "round(sum(cost_usd), 9) AS cost FROM interactions"  # fmt: skip


def test_two_proxies_export_into_one_lake_and_two_engines_agree(tmp_path: Path) -> None:
    first, second = two_databases(tmp_path)
    lake = tmp_path / "lake"
    reports = [export_parquet(first, lake), export_parquet(second, lake)]
    assert [report.interactions for report in reports] == [4, 6]
    assert export_parquet(first, lake).run_id is None  # incremental: nothing new, nothing written

    files = sorted((lake / "interactions").glob("day=*/*.parquet"))
    assert {path.parent.name for path in files} == {"day=2026-11-20", "day=2026-11-21", "day=2026-11-22"}
    assert all(path.name.startswith(machine_tag() + "-") for path in files)
    assert len({path.name for path in files}) == len(files)  # unique names: no run overwrote another

    local = [run_sql(path, TOTALS)[1][0] for path in (first, second)]
    expected = (sum(r[0] for r in local), sum(r[1] for r in local), sum(r[2] for r in local),
                round(sum(r[3] or 0 for r in local), 9))  # fmt: skip
    _, [through_lake] = run_sql(first, TOTALS, lake=lake)
    assert through_lake == expected

    frame = pl.scan_parquet(str(lake / "interactions" / "**" / "*.parquet"), hive_partitioning=True)
    totals = frame.select(
        pl.len().alias("n"), pl.col("prompt_tokens").sum(), pl.col("completion_tokens").sum(), pl.col("cost_usd").sum()
    ).collect().row(0)  # fmt: skip
    assert totals[:3] == expected[:3]
    assert round(totals[3], 9) == expected[3]

    schema = pq.read_schema(files[0])
    assert str(schema.field("recorded_at").type) == "timestamp[us, tz=UTC]"
    assert str(schema.field("prompt_tokens").type) == "int64"
    assert str(schema.field("status").type) == "int32"
    assert str(schema.field("request").type) == "string" and str(schema.field("tags").type) == "string"
    nulls = pl.scan_parquet(str(lake / "interactions" / "**" / "*.parquet")).select(
        pl.col("prompt_tokens").is_null().sum()).collect().item()  # fmt: skip
    assert nulls == 3  # the second proxy's answers without usage keep NULL in Parquet, not 0


def test_sql_stats_and_report_read_a_lake_from_the_cli(tmp_path: Path) -> None:
    first, second = two_databases(tmp_path)
    lake = tmp_path / "lake"
    for db in (first, second):
        assert run_cli(["export", "--format", "parquet", str(lake), "--db", str(db)]).returncode == 0
    result = run_cli(["sql", "SELECT count(*) AS n FROM interactions", "--lake", str(lake), "--format", "json"])
    assert json.loads(result.stdout) == [{"n": 10}]
    result = run_cli(["stats", "--lake", str(lake), "--by", "tag:feature", "--format", "csv"])
    assert result.returncode == 0, result.stderr
    assert "search" in result.stdout
    out = tmp_path / "lake-report.html"
    result = run_cli(["report", str(out), "--lake", str(lake)])
    assert result.returncode == 0, result.stderr
    assert "10 interactions" in result.stdout
    empty = run_cli(["sql", "SELECT 1", "--lake", str(tmp_path / "nothing")])
    assert empty.returncode == 1 and "no Parquet files" in empty.stderr


def test_the_lake_reads_files_from_older_exports_without_the_new_columns(tmp_path: Path) -> None:
    first, _ = two_databases(tmp_path)
    lake = tmp_path / "lake"
    export_parquet(first, lake)
    old = lake / "interactions" / "day=2026-11-19"
    old.mkdir()
    con = duckdb.connect()
    con.execute(
        f"COPY (SELECT 'old-1' AS id, TIMESTAMPTZ '2026-11-19 10:00:00+00' AS recorded_at, 200 AS status, "
        f"'gpt-4o-mini' AS model) TO '{old / 'older-export.parquet'}' (FORMAT parquet)"
    )
    con.close()
    _, values = run_sql(first, "SELECT id, cost_usd, tags FROM interactions WHERE id = 'old-1'", lake=lake)
    assert values == [("old-1", None, None)]
