"""Settings: defaults < TOML file < flags, paths in a file relative to it, and a bad value names its key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from proxy.config import load_settings
from proxy.errors import ConfigError
from proxy.settings import DB_FILE, RecordMode


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "proxy.toml"
    path.write_text(text)
    return path


def test_defaults_match_the_documented_interface() -> None:
    settings = load_settings(None, {})
    assert (settings.upstream, settings.host, settings.port) == ("https://api.openai.com", "127.0.0.1", 8080)
    assert settings.cassettes == Path("cassettes")
    assert settings.mode is RecordMode.RECORD


def test_file_overrides_defaults_and_flags_override_file(tmp_path: Path) -> None:
    config = write(tmp_path, 'port = 9000\nupstream = "http://127.0.0.1:1234/"\nhost = "127.0.0.2"\n')
    settings = load_settings(config, {"port": 9100, "host": None})
    assert settings.port == 9100
    assert settings.upstream == "http://127.0.0.1:1234"
    assert settings.host == "127.0.0.2"


def test_a_proxy_table_is_accepted(tmp_path: Path) -> None:
    config = write(tmp_path, '[proxy]\nmode = "auto"\nignore_body_fields = ["user", "seed"]\n')
    settings = load_settings(config, {})
    assert settings.mode is RecordMode.AUTO
    assert settings.ignore_body_fields == ("user", "seed")


@pytest.mark.parametrize(("alias", "mode"), [("all", "record"), ("none", "replay"), ("new_episodes", "auto")])
def test_vcr_mode_names_are_aliases(alias: str, mode: str) -> None:
    assert load_settings(None, {"mode": alias}).mode.value == mode


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("port = 70000", "port"),
        ('upstream = "ftp://example"', "upstream"),
        ('timing = "slow"', "timing"),
        ("unknown_key = 1", "unknown_key"),
        ('mode = "sometimes"', "mode"),
    ],
)
def test_a_bad_value_names_the_key(tmp_path: Path, text: str, names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        load_settings(write(tmp_path, text), {})


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.toml", {})


def test_example_config_loads_and_equals_the_defaults() -> None:
    example = Path(__file__).resolve().parent.parent / "config.example.toml"
    loaded = load_settings(example, {})
    assert loaded.cassettes == example.parent / "cassettes"  # relative to the file's folder
    assert loaded.model_copy(update={"cassettes": Path("cassettes")}) == load_settings(None, {})


def test_relative_paths_in_a_config_file_are_relative_to_its_folder(tmp_path: Path) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    config = folder / "proxy.toml"
    config.write_text('cassettes = "tapes"\ndb = "data/t.duckdb"\n')
    settings = load_settings(config, {})
    assert settings.cassettes == folder / "tapes"
    assert settings.db_path == folder / "data" / "t.duckdb"


def test_an_absolute_path_in_a_config_file_stays_and_a_flag_is_relative_to_the_current_directory(
    tmp_path: Path,
) -> None:
    config = write(tmp_path, f'cassettes = "{tmp_path / "abs"}"\n')
    assert load_settings(config, {}).cassettes == tmp_path / "abs"
    assert load_settings(config, {"cassettes": "here"}).cassettes == Path("here")


def test_the_database_is_beside_the_cassette_directory_unless_given(tmp_path: Path) -> None:
    assert load_settings(None, {"cassettes": str(tmp_path / "a" / "tapes")}).db_path == tmp_path / "a" / DB_FILE
    assert load_settings(None, {"cassettes": "x", "db": str(tmp_path / "t.db")}).db_path == tmp_path / "t.db"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('mode = "bogus"', "bad setting mode = 'bogus' (in {config}): valid values: record, replay, auto, once"),
        ('timing = "slow"', "bad setting timing = 'slow' (in {config}): valid values: fast, original"),
        ('log_level = "loud"', "bad setting log_level = 'loud' (in {config}): valid values: debug, info, warning"),
        ("port = 70000", "bad setting port = 70000 (in {config}): Input should be less than or equal to 65535"),
        ('upstrem = "http://x"', "unknown setting 'upstrem' in {config} (did you mean upstream?)"),
    ],
)
def test_a_bad_value_in_the_file_names_setting_value_file_and_choices(tmp_path: Path, text: str, expected: str) -> None:
    config = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(config, {})
    assert str(info.value).startswith(expected.format(config=config))


def test_a_bad_flag_value_names_the_flag_and_lists_the_modes() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, {"mode": "bogus"})
    message = str(info.value)
    assert message.startswith("bad setting mode = 'bogus' (from --mode): valid values: record, replay, auto, once")
    assert "new_episodes" in message


def test_a_config_file_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "proxy.toml"
    config.write_bytes(b"port = 9000\n# caf\xe9\n")
    with pytest.raises(ConfigError, match=r"is not UTF-8 text \(byte 17"):
        load_settings(config, {})


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda path: path.mkdir(), "cannot read config file"),
        (lambda path: path.write_text("port = = 1"), "is not valid TOML"),
    ],
    ids=["a directory", "not TOML"],
)
def test_an_unreadable_config_file_is_one_line(tmp_path: Path, make: Any, message: str) -> None:
    config = tmp_path / "proxy.toml"
    make(config)
    with pytest.raises(ConfigError, match=message) as info:
        load_settings(config, {})
    assert "\n" not in str(info.value)
