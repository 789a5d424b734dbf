"""Every setting, declared once: the pydantic model below.  defaults < TOML file (--config) < flags.

Each field carries its type, default and valid values (the annotation and constraints), one line of help
(`description`) and, through `setting(...)`, which commands use it, its flag and notes for the example file.
proxy/options.py turns these declarations into the flags and their `--help`, `config.example.toml` and the
README's settings table, so none of them can drift. A bad value fails at startup with one line naming the
setting, the value, where it came from and the valid choices.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from proxy.errors import ConfigError

COMMANDS = ("record", "replay", "serve", "sql", "stats", "report", "import", "export")
SERVER = ("record", "replay", "serve")
RECORDING = ("record", "serve")
REPLAYING = ("replay", "serve")
DB_FILE = "traffic.duckdb"


class RecordMode(StrEnum):
    """What the proxy does with a request. VCR.py's names are accepted as aliases."""

    RECORD = "record"  # always forward and record (VCR.py `all`)
    REPLAY = "replay"  # only serve recordings, never contact upstream (VCR.py `none`, mitmproxy server replay)
    AUTO = "auto"  # replay a hit, forward and record a miss (VCR.py `new_episodes`)
    ONCE = "once"  # record if the cassette directory holds no recordings, else replay only (VCR.py `once`)

    @classmethod
    def parse(cls, value: str) -> RecordMode:
        if value in MODE_ALIASES:
            return cls(MODE_ALIASES[value])
        return cls(value)


MODE_ALIASES = {"all": "record", "none": "replay", "new_episodes": "auto"}


def setting(
    default: Any,
    help: str,
    commands: Sequence[str],
    *,
    flag: str | None = "",
    metavar: str | None = None,
    default_text: str | None = None,
    notes: str = "",
    aliases: dict[str, str] | None = None,
    **constraints: Any,
) -> Any:
    """A field of Settings with what the CLI and the docs need: `commands` that use it, its `flag` ("" is
    `--name-with-dashes`, None is config-file only), `notes` for config.example.toml, `default_text` when the
    default needs words, `aliases` accepted besides the valid values."""
    extra: dict[str, Any] = {
        "commands": list(commands),
        "flag": flag,
        "metavar": metavar,
        "default_text": default_text,
        "notes": notes,
        "aliases": aliases or {},
    }
    if callable(default):
        return Field(default_factory=default, description=help, json_schema_extra=extra, **constraints)
    return Field(default, description=help, json_schema_extra=extra, **constraints)


class PriceSetting(BaseModel):
    """A model's price in USD per million tokens, overriding or adding to the maintained table (`[prices."NAME"]`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cached_input: float | None = Field(default=None, ge=0)  # None: cached input costs as much as input


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: RecordMode = setting(
        RecordMode.RECORD,
        "what to do with a request: record, replay, auto (replay hits, record misses) or once",
        ("serve",),
        aliases=MODE_ALIASES,
        notes="record: forward every request and record it; replay: answer only from recordings, never contact the\n"
        "upstream; auto: replay a request that has a recording, forward and record one that does not; once: record\n"
        "into an empty cassette directory, else replay only. `proxy record` and `proxy replay` set it themselves.",
    )
    upstream: str = setting(
        "https://api.openai.com",
        "where to forward: /v1/... goes to UPSTREAM/v1/...; no other host is ever contacted",
        RECORDING,
        metavar="URL",
    )
    host: str = setting(
        "127.0.0.1",
        "address to listen on (a non-loopback address prints a warning: there is no authentication)",
        SERVER,
        metavar="HOST",
    )
    port: int = setting(8080, "port to listen on (0: any free port)", SERVER, metavar="PORT", ge=0, le=65535)
    cassettes: Path = setting(
        Path("cassettes"),
        "cassette directory: one JSON file per interaction, read recursively",
        COMMANDS,
        metavar="DIR",
    )
    db: Path | None = setting(
        None,
        "DuckDB file of the traffic (tables interactions and choices)",
        COMMANDS,
        metavar="PATH",
        default_text=f"{DB_FILE} beside the cassette directory",
        notes="Every command finds the database by the same rule, so `proxy import DIR` and `proxy sql` run\n"
        "anywhere use the file `proxy record --cassettes DIR` wrote.",
    )
    db_enabled: bool = setting(True, "write a row per interaction to the database", RECORDING, flag="--no-db")
    db_flush_interval: float = setting(
        0.5, "seconds between batched writes to the database", RECORDING, metavar="S", gt=0
    )
    secret_headers: tuple[str, ...] = setting(
        (),
        "extra request headers whose values are secrets: forwarded, written nowhere",
        RECORDING,
        flag="--secret-header",
        metavar="NAME",
        notes="Always secret: Authorization, api-key, x-api-key, Cookie, Set-Cookie, Proxy-Authorization,\n"
        "OpenAI-Organization, OpenAI-Project.",
    )
    secret_query_params: tuple[str, ...] = setting(
        ("key", "api_key", "api-key"),
        "query parameters whose values are secrets (Azure-style ?api-key=)",
        RECORDING,
        flag="--secret-query-param",
        metavar="NAME",
    )
    secret_body_fields: tuple[str, ...] = setting(
        (),
        "top-level request body fields whose values are secrets (replay matching ignores them)",
        SERVER,
        flag="--secret-body-field",
        metavar="NAME",
    )
    connect_timeout: float = setting(10.0, "seconds to connect to the upstream", RECORDING, metavar="S", gt=0)
    first_byte_timeout: float = setting(
        600.0, "seconds to wait for the first byte of an answer (reasoning models think)", RECORDING, metavar="S", gt=0
    )
    chunk_timeout: float = setting(
        300.0, "seconds to wait between two chunks of a streamed answer", RECORDING, metavar="S", gt=0
    )
    max_body_bytes: int = setting(
        64 * 1024 * 1024, "largest request body accepted; a larger one gets a 413", SERVER, metavar="N", gt=0
    )
    drain_timeout: float = setting(
        10.0, "on SIGINT/SIGTERM, seconds to let in-flight requests finish", SERVER, metavar="S", ge=0
    )
    match_headers: tuple[str, ...] = setting(
        (),
        "replay matching also compares this request header",
        REPLAYING,
        flag="--match-header",
        metavar="NAME",
        notes="A request matches a recording on method, path, query and JSON body (compared canonically: key\n"
        "order and whitespace don't matter), plus the headers named here.",
    )
    ignore_body_fields: tuple[str, ...] = setting(
        (),
        "replay matching leaves this top-level body field out, e.g. user, seed, metadata",
        REPLAYING,
        flag="--ignore-body-field",
        metavar="NAME",
    )
    on_exhausted: Literal["repeat", "fail"] = setting(
        "repeat", "once every recording of a request was replayed: repeat the last one, or fail (a miss)", REPLAYING
    )
    timing: Literal["fast", "original"] = setting(
        "fast", "replay pace of streamed events: back to back, or with the recorded gaps", REPLAYING
    )
    speed: float = setting(1.0, "with timing original: play this many times faster", REPLAYING, metavar="X", gt=0)
    stored_completions: Literal["local", "forward"] = setting(
        "local",
        "the stored Chat Completions API: answered from the recordings, or handled like any other request",
        REPLAYING,
        notes="local: GET/POST/DELETE /v1/chat/completions[/{id}[/messages]] are answered from the recordings;\n"
        "updates and deletes go to <cassettes>/.stored-overlay.json. forward: auto replays a recorded call, else\n"
        "forwards and records it; replay answers only from recordings of the same call. Record mode forwards them.",
    )
    store_all: bool = setting(
        False, "the stored-completions API lists every recorded chat completion, not only store: true", REPLAYING
    )
    record_workers: Literal["process", "in-process"] = setting(
        "process",
        "where the recording pipeline runs: a worker process, or in the proxy's own process",
        RECORDING,
        aliases={"thread": "in-process"},
        notes="The worker process never competes with the traffic for Python's GIL; in-process (a thread) is for\n"
        "embedding and small use. The old name thread means in-process.",
    )
    record_worker_priority: Literal["idle", "low"] = setting(
        "idle",
        "how the recording worker yields to the traffic: Linux SCHED_IDLE, or nice 10",
        RECORDING,
        notes="idle: only CPU nobody else wants, and the proxy preempts it at once; low: keeps about a tenth of a\n"
        "busy core, so recordings keep pace while other work saturates the machine. Outside Linux both mean nice 10.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = setting("info", "what to log on stderr", SERVER)
    quiet: bool = setting(False, "no log line per request", SERVER)
    prices: dict[str, PriceSetting] = setting(
        dict,
        "prices in USD per million tokens by model name (case ignored), over the maintained table",
        ("record", "replay", "serve", "stats", "report", "import"),
        flag=None,
        default_text="none",
        notes="For models the maintained table (genai-prices, bundled) does not know or prices differently for you:\n"
        "a local model, a fine-tune, a negotiated rate. `cached_input` is the rate of cached prompt tokens (default:\n"
        "the input rate). A model without any price gets cost_usd NULL, never 0, and `proxy stats` lists it.\n"
        "`proxy import` re-prices the rows it imports. This table must stay last in the file.",
    )

    @field_validator("*", mode="before")
    @classmethod
    def _declared_aliases(cls, value: Any, info: ValidationInfo) -> Any:
        """A value's alias, declared with its setting (mode "all", record_workers "thread"), becomes the value."""
        if not isinstance(value, str) or info.field_name is None:
            return value
        extra = cls.model_fields[info.field_name].json_schema_extra
        aliases = extra.get("aliases") if isinstance(extra, dict) else None
        return aliases.get(value, value) if isinstance(aliases, dict) else value

    @field_validator("upstream")
    @classmethod
    def _upstream_is_http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @property
    def db_path(self) -> Path:
        """The database, by one rule for every command: --db, else traffic.duckdb beside the cassette directory."""
        return self.db if self.db is not None else self.cassettes.resolve().parent / DB_FILE

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
    from proxy.options import option_named  # the declarations' reader; imported late (it imports this module)

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
