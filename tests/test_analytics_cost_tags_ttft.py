"""Cost, tags and time to first token end to end: the official SDK through the real proxy to a fake upstream,
rows written by the proxy's own DuckDB writer, read back with `proxy sql` / `proxy stats` as a user would."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from analytics.db import reading
from analytics.query import import_directory, run_sql
from analytics.schema import INTERACTION_NAMES, MIGRATIONS, V1_INTERACTION_COLUMNS, V2_INTERACTION_COLUMNS
from proxy.cassettes import iter_cassette_paths, load_cassette
from tests.chunks import content_delta, make_choice, make_chunk, make_completion, make_usage, role_delta
from tests.cli_process import run_cli
from tests.conftest import RunningUpstream, StartProxy, wait_for_cassettes
from tests.test_analytics_store import make_interaction, wait_for_count, write_cassettes

MESSAGES: Any = [{"role": "user", "content": "hi"}]


def rows(db: Path, sql: str) -> list[dict[str, Any]]:
    columns, values = run_sql(db, sql)
    return [dict(zip(columns, row, strict=True)) for row in values]


async def test_cost_is_priced_from_the_usage_and_null_for_an_unknown_model(
    upstream: RunningUpstream, start_proxy: StartProxy
) -> None:
    fake = upstream.fake
    fake.completions["mini"] = make_completion(model="gpt-4o-mini-2024-07-18", usage=make_usage(1_000_000, 100_000))
    cached = make_usage(100_000, 10_000, cached=40_000)
    fake.completions["4o"] = make_completion(model="gpt-4o-2024-08-06", usage=cached)
    fake.completions["local"] = make_completion(model="my-local-llama", usage=make_usage(10, 5))
    proxy = await start_proxy(upstream.url, db_enabled=True, db_flush_interval=0.05)
    async with proxy.client() as client:
        for scenario, model in (("mini", "gpt-4o-mini"), ("4o", "gpt-4o"), ("local", "my-local-llama")):
            await client.chat.completions.create(model=model, messages=MESSAGES, extra_headers={"x-scenario": scenario})
    db = proxy.settings.db_path
    await wait_for_count(db, 3)
    by_model = {row["model"]: row for row in rows(db, "SELECT model, requested_model, cost_usd FROM interactions")}
    assert round(by_model["gpt-4o-mini-2024-07-18"]["cost_usd"] * 100, 6) == 21.0  # 1M x $0.15 + 100k x $0.60
    assert round(by_model["gpt-4o-2024-08-06"]["cost_usd"] * 100, 6) == 30.0  # 60k x 2.50, 40k cached x 1.25, 10k x 10
    assert by_model["gpt-4o-2024-08-06"]["requested_model"] == "gpt-4o"
    assert by_model["my-local-llama"]["cost_usd"] is None  # unknown: NULL, never 0

    result = run_cli(["stats", "--db", str(db)])
    assert result.returncode == 0, result.stderr
    unpriced = result.stdout.split("## Models without a price")[1]
    assert "my-local-llama" in unpriced and "gpt-4o" not in unpriced
    assert "prices: genai-prices" in result.stdout
    result = run_cli(["stats", "--db", str(db), "--format", "json"])
    costs = {row["model"]: row["cost_usd"] for row in json.loads(result.stdout)["sections"][0]["rows"]}
    assert costs["my-local-llama"] is None
    assert costs["gpt-4o-mini-2024-07-18"] == pytest.approx(0.21)


async def test_tags_are_stored_stripped_before_forwarding_and_ignored_by_replay(
    upstream: RunningUpstream, start_proxy: StartProxy, tmp_path: Path
) -> None:
    upstream.fake.completions["default"] = make_completion(usage=make_usage(10, 5))
    proxy = await start_proxy(upstream.url, db_enabled=True, db_flush_interval=0.05)
    tags = {"X-Proxy-Tag-Feature": "search", "X-Proxy-Tag-Test": "tests/test_x.py::test_y"}
    async with proxy.client() as client:
        await client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, user="alice", metadata={"team": "core"}, extra_headers=tags
        )
    [received] = upstream.fake.received
    assert not [name for name in received.headers if name.lower().startswith("x-proxy-tag")]
    db = proxy.settings.db_path
    await wait_for_count(db, 1)
    [row] = rows(db, "SELECT tags, tags->>'feature' AS feature, \"user\", metadata->>'team' AS team FROM interactions")
    assert json.loads(row["tags"]) == {"feature": "search", "test": "tests/test_x.py::test_y"}
    assert (row["feature"], row["user"], row["team"]) == ("search", "alice", "core")
    assert rows(db, "SELECT tag, value FROM interaction_tags ORDER BY tag") == [
        {"tag": "feature", "value": "search"},
        {"tag": "test", "value": "tests/test_x.py::test_y"},
    ]
    [path] = await wait_for_cassettes(proxy.settings.cassettes, 1)
    cassette = load_cassette(path)
    assert cassette.metadata.tags == {"feature": "search", "test": "tests/test_x.py::test_y"}
    assert not [name for name, _ in cassette.request.headers if name.lower().startswith("x-proxy-tag")]

    replay = await start_proxy(mode="replay", cassettes=proxy.settings.cassettes)
    async with replay.client() as client:  # another tag, or none: the same recording answers
        answer = await client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, user="alice", metadata={"team": "core"},
            extra_headers={"X-Proxy-Tag-Feature": "other"},
        )  # fmt: skip
    assert answer.choices[0].message.content == "Hello!"


async def test_ttft_is_the_first_content_chunk_not_the_first_byte(
    upstream: RunningUpstream, start_proxy: StartProxy
) -> None:
    chunks = [make_chunk([make_choice(role_delta())])]
    chunks += [make_chunk([make_choice(content_delta(word))]) for word in ("One", ", two", ", three!")]
    chunks += [make_chunk([make_choice(finish_reason="stop")]), make_chunk([], usage=make_usage(5, 30))]
    upstream.fake.streams["slow-first-token"] = chunks
    proxy = await start_proxy(upstream.url, db_enabled=True, db_flush_interval=0.05)
    async with proxy.client() as client:
        stream = await client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True},
            extra_headers={"x-scenario": "slow-first-token", "x-hold-ms": "400"},
        )  # fmt: skip
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "One, two, three!"
    db = proxy.settings.db_path
    await wait_for_count(db, 1)
    [row] = rows(db, "SELECT ttfb_ms, ttft_ms, latency_ms, chunks, max_chunk_gap_ms, output_tokens_per_s "
                     "FROM interactions")  # fmt: skip
    # The role chunk comes at once, the first content after the upstream's 400 ms hold: loose bounds only.
    assert row["ttfb_ms"] < row["ttft_ms"] <= row["latency_ms"]
    assert row["ttft_ms"] - row["ttfb_ms"] >= 300
    assert row["chunks"] == 6
    assert row["max_chunk_gap_ms"] >= 300
    assert row["output_tokens_per_s"] is None or row["output_tokens_per_s"] > 0


def test_an_old_database_migrates_on_open_and_import_fills_the_new_columns(tmp_path: Path) -> None:
    cassettes, db = tmp_path / "cassettes", tmp_path / "old.duckdb"
    interaction = make_interaction(1, prompt=1_000_000, completion=100_000)
    write_cassettes(cassettes, [interaction])
    # A database as the previous version left it: its three migrations, its columns, one row.
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE schema_migrations (name VARCHAR PRIMARY KEY, applied_at TIMESTAMP)")
    for migration in MIGRATIONS[:3]:
        migration(con)
        con.execute("INSERT INTO schema_migrations VALUES (?, now())", [migration.__name__])
    names = [name for name, _ in V1_INTERACTION_COLUMNS]
    values = {"id": interaction.id, "recorded_at": "2026-11-22 03:58:01", "status": 200, "model": "gpt-4o-mini",
              "prompt_tokens": 1_000_000, "completion_tokens": 100_000, "cassette": str(next(iter_cassette_paths(
                  cassettes)).relative_to(cassettes))}  # fmt: skip
    con.execute(
        f"INSERT INTO interactions ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})",
        [values.get(name) for name in names],
    )
    con.close()

    with reading(db) as con:  # opening migrates
        columns = [row[0] for row in con.execute("DESCRIBE interactions").fetchall()]
        applied = {row[0] for row in con.execute("SELECT name FROM schema_migrations").fetchall()}
    assert tuple(columns) == INTERACTION_NAMES
    assert applied == {migration.__name__ for migration in MIGRATIONS}
    [row] = rows(db, "SELECT cost_usd, requested_model FROM interactions")
    assert row == {"cost_usd": None, "requested_model": None}  # not known until the cassette is read again

    report = import_directory(db, cassettes)
    assert (report.imported, report.skipped_existing) == (0, 1)
    [row] = rows(db, "SELECT cost_usd, requested_model, count(*) OVER () AS n FROM interactions")
    assert row["requested_model"] == "gpt-4o-mini" and row["n"] == 1
    assert row["cost_usd"] == pytest.approx(0.21)


def test_price_overrides_from_the_config_price_unknown_models(tmp_path: Path) -> None:
    cassettes, db, config = tmp_path / "cassettes", tmp_path / "t.duckdb", tmp_path / "proxy.toml"
    write_cassettes(cassettes, [make_interaction(1, model="my-local-llama", prompt=2_000_000, completion=1_000_000)])
    config.write_text('[prices."my-local-llama"]\ninput = 0.10\noutput = 0.40\ncached_input = 0.05\n')
    assert run_cli(["import", str(cassettes), "--db", str(db)]).returncode == 0
    assert rows(db, "SELECT cost_usd FROM interactions") == [{"cost_usd": None}]
    result = run_cli(["import", str(cassettes), "--db", str(db), "--config", str(config)])
    assert result.returncode == 0, result.stderr
    assert rows(db, "SELECT round(cost_usd, 6) AS c FROM interactions") == [{"c": 0.6}]  # 0.20 + 0.40
    stats = run_cli(["stats", "--db", str(db), "--config", str(config)])
    assert "config overrides for my-local-llama" in stats.stdout


def test_v2_columns_are_documented_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for name, _ in V2_INTERACTION_COLUMNS:
        assert f"`{name}`" in readme, name
