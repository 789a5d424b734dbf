"""Every setting in one pydantic model: defaults < TOML file < command-line flags.

The TOML file uses the flag names with underscores (`--first-byte-timeout` is `first_byte_timeout`);
`config.example.toml` documents each one. A bad value fails at startup with a message naming the key.
"""

from __future__ import annotations

import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from proxy.errors import ConfigError


class RecordMode(StrEnum):
    """What the proxy does with a request. VCR.py's names are accepted as aliases."""

    RECORD = "record"  # always forward and record (VCR.py `all`)
    REPLAY = "replay"  # only serve recordings, never contact upstream (VCR.py `none`, mitmproxy server replay)
    AUTO = "auto"  # replay a hit, forward and record a miss (VCR.py `new_episodes`)
    ONCE = "once"  # record if the cassette directory holds no recordings, else replay only (VCR.py `once`)

    @classmethod
    def parse(cls, value: str) -> RecordMode:
        aliases = {"all": cls.RECORD, "none": cls.REPLAY, "new_episodes": cls.AUTO}
        if value in aliases:
            return aliases[value]
        return cls(value)


class PriceSetting(BaseModel):
    """A model's price in USD per million tokens, overriding or adding to the maintained table (`[prices."NAME"]`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cached_input: float | None = Field(default=None, ge=0)  # None: cached input costs as much as input


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: RecordMode = RecordMode.RECORD
    upstream: str = "https://api.openai.com"
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    cassettes: Path = Path("cassettes")
    db: Path | None = None  # None: traffic.duckdb beside the cassette directory
    db_enabled: bool = True
    db_flush_interval: float = Field(default=0.5, gt=0)
    secret_headers: tuple[str, ...] = ()
    secret_query_params: tuple[str, ...] = ("key", "api_key", "api-key")
    secret_body_fields: tuple[str, ...] = ()
    connect_timeout: float = Field(default=10.0, gt=0)
    first_byte_timeout: float = Field(default=600.0, gt=0)
    chunk_timeout: float = Field(default=300.0, gt=0)
    max_body_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    drain_timeout: float = Field(default=10.0, ge=0)
    record_workers: Literal["process", "in-process"] = "process"  # where recording runs ("thread": in-process)
    record_worker_priority: Literal["idle", "low"] = "idle"
    match_headers: tuple[str, ...] = ()
    ignore_body_fields: tuple[str, ...] = ()
    on_exhausted: Literal["repeat", "fail"] = "repeat"
    timing: Literal["fast", "original"] = "fast"
    speed: float = Field(default=1.0, gt=0)
    # The stored Chat Completions API (replay and auto): "local" answers it from the recordings, "forward"
    # handles its calls like any other request. store_all lists every recorded completion, not only store: true.
    stored_completions: Literal["local", "forward"] = "local"
    store_all: bool = False
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    quiet: bool = False  # no line per request
    prices: dict[str, PriceSetting] = Field(default_factory=dict)  # by model name, case ignored
    default_tags: dict[str, str] = Field(
        default_factory=dict,
        description="Tags given to every recorded interaction, as if sent in X-Proxy-Tag-<name> headers (a header"
        " of the same name wins); the pytest plugin sets test = the test's node id",
    )

    @field_validator("mode", mode="before")
    @classmethod
    def _mode_aliases(cls, value: Any) -> Any:
        return RecordMode.parse(value) if isinstance(value, str) else value

    @field_validator("record_workers", mode="before")
    @classmethod
    def _thread_is_in_process(cls, value: Any) -> Any:
        return "in-process" if value == "thread" else value

    @field_validator("upstream")
    @classmethod
    def _upstream_is_http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @property
    def db_path(self) -> Path:
        return self.db if self.db is not None else self.cassettes.resolve().parent / "traffic.duckdb"

    def resolved(self) -> Settings:
        """`once` decided: replay when the cassette directory holds any recording, else record."""
        if self.mode is not RecordMode.ONCE:
            return self
        has_recordings = self.cassettes.is_dir() and any(
            not path.name.startswith(".") for path in self.cassettes.rglob("*.json")
        )
        return self.model_copy(update={"mode": RecordMode.REPLAY if has_recordings else RecordMode.RECORD})

    @property
    def records(self) -> bool:
        return self.mode in (RecordMode.RECORD, RecordMode.AUTO)

    @property
    def replays(self) -> bool:
        return self.mode in (RecordMode.REPLAY, RecordMode.AUTO)


def load_settings(config_file: Path | None, overrides: dict[str, Any]) -> Settings:
    """Merge defaults, the TOML file (if any) and flags that were given (None means not given)."""
    values: dict[str, Any] = {}
    if config_file is not None:
        values.update(_read_toml(config_file))
    values.update({key: value for key, value in overrides.items() if value is not None})
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "settings"
        bad = first.get("input")
        raise ConfigError(f"bad setting {key} = {bad!r}: {first['msg']}") from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    # Accept both a flat file and one with a [proxy] table.
    table = data.get("proxy", data)
    if not isinstance(table, dict):
        raise ConfigError(f"config file {path}: [proxy] must be a table")
    return {key.replace("-", "_"): value for key, value in table.items()}
