"""Settings from defaults < the TOML file (--config FILE) < flags, and a bad value as one line.

The file uses the setting names (`first_byte_timeout`), flat or under a `[proxy]` table; relative paths in it
are relative to the file's folder. Every failure is a ConfigError with one line: the setting, the value, where it
came from (`from --mode`, `in FILE`) and the valid choices; a file that is missing, unreadable, not UTF-8 or not
TOML says which.
"""

from __future__ import annotations

import difflib
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from proxy.errors import ConfigError
from proxy.options import option_named
from proxy.settings import Settings

PATH_SETTINGS = ("cassettes", "db")  # relative values in a config file are relative to the file's folder


def load_settings(config_file: Path | None, overrides: dict[str, Any]) -> Settings:
    """Merge defaults, the TOML file (if any) and flags that were given (None means not given)."""
    values: dict[str, Any] = {}
    if config_file is not None:
        values.update(_read_toml(config_file))
    given = {key: value for key, value in overrides.items() if value is not None}
    values.update(given)
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(_message(exc, given, config_file)) from None


def _message(exc: ValidationError, flags: dict[str, Any], config_file: Path | None) -> str:
    """One line: the setting, the bad value, where it came from, and what is valid."""
    first = exc.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or "settings"
    top = str(first["loc"][0]) if first["loc"] else ""
    option = option_named(top)
    source = f"in {config_file}" if config_file is not None else "given"
    if top in flags:
        source = f"from {option.flag}" if option is not None and option.flag else "given"
    if first["type"] == "extra_forbidden":
        close = difflib.get_close_matches(top, list(Settings.model_fields), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        return f"unknown setting {key!r} {source}{hint}"
    bad = first.get("input")
    if option is not None and option.choices and len(first["loc"]) == 1:
        valid = f"valid values: {', '.join(option.choices)}"
        if option.aliases:
            valid += " (also " + ", ".join(f"{alias} = {real}" for alias, real in option.aliases.items()) + ")"
        return f"bad setting {key} = {bad!r} ({source}): {valid}"
    reason = str(first["msg"]).removeprefix("Value error, ")
    return f"bad setting {key} = {bad!r} ({source}): {reason}"


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    # Accept both a flat file and one with a [proxy] table.
    table = data.get("proxy", data)
    if not isinstance(table, dict):
        raise ConfigError(f"config file {path}: [proxy] must be a table")
    values = {key.replace("-", "_"): value for key, value in table.items()}
    for key in PATH_SETTINGS:
        if isinstance(values.get(key), str):
            values[key] = str(path.parent / Path(values[key]).expanduser())  # an absolute value stays as it is
    return values
