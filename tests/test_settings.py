"""Settings: defaults < TOML file < flags, and a bad value names its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.errors import ConfigError
from proxy.settings import RecordMode, load_settings


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
    assert load_settings(example, {}) == load_settings(None, {})
