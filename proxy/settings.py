"""Every setting, declared once: the pydantic model below.

Each field carries its type, default and valid values (the annotation and constraints), one line of help
(`description`) and, through `setting(...)`, which commands use it and its flag; NOTES adds a few lines for the
example file. proxy/options.py turns these declarations into the flags and their `--help`, `config.example.toml`
and the README's settings table, so none of them can drift; proxy/config.py reads the TOML file and flags into
a Settings, and turns a bad value into one line naming the setting, the value, its source and the valid choices.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

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


MODE_ALIASES = {"all": "record", "none": "replay", "new_episodes": "auto"}


def setting(
    default: Any,
    help: str,
    commands: Sequence[str],
    *,
    flag: str | None = "",
    metavar: str | None = None,
    default_text: str | None = None,
    aliases: dict[str, str] | None = None,
    **constraints: Any,
) -> Any:
    """A field of Settings with what the CLI and the docs need: `commands` that use it, its `flag` ("" is
    `--name-with-dashes`, None is config-file only), `default_text` when the default needs words, `aliases`
    accepted besides the valid values. Longer notes for config.example.toml are in NOTES, below the model."""
    extra: dict[str, Any] = {
        "commands": list(commands),
        "flag": flag,
        "metavar": metavar,
        "default_text": default_text,
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
        Path("cassettes"), "cassette directory: a JSON file per interaction, read recursively", COMMANDS, metavar="DIR"
    )
    db: Path | None = setting(
        None,
        "DuckDB file of the traffic (tables interactions and choices)",
        COMMANDS,
        metavar="PATH",
        default_text=f"{DB_FILE} beside the cassette directory",
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
    )
    secret_query_params: tuple[str, ...] = setting(
        ("key", "api_key", "api-key"),
        "query parameters whose values are secrets (Azure-style ?api-key=)",
        RECORDING,
        flag="--secret-query-param",
    )
    secret_body_fields: tuple[str, ...] = setting(
        (),
        "top-level request body fields whose values are secrets (replay matching ignores them)",
        SERVER,
        flag="--secret-body-field",
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
        (), "replay matching also compares this request header", REPLAYING, flag="--match-header"
    )
    ignore_body_fields: tuple[str, ...] = setting(
        (),
        "replay matching leaves this top-level body field out, e.g. user, seed, metadata",
        REPLAYING,
        flag="--ignore-body-field",
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
    )
    store_all: bool = setting(
        False, "the stored-completions API lists every recorded chat completion, not only store: true", REPLAYING
    )
    record_workers: Literal["process", "in-process"] = setting(
        "process",
        "where the recording pipeline runs: a worker process, or in the proxy's own process",
        RECORDING,
        aliases={"thread": "in-process"},
    )
    record_worker_priority: Literal["idle", "low"] = setting(
        "idle",
        "how the recording worker yields to the traffic: Linux SCHED_IDLE, or nice 10",
        RECORDING,
    )
    record_worker_idle_exit: float = setting(
        10.0, "seconds idle before the recording worker exits (0: never)", RECORDING, metavar="S", ge=0
    )
    event_loop: Literal["auto", "uvloop", "asyncio"] = setting(
        "auto", "uvloop (pip install 'llm-cassette-proxy[fast]'), or asyncio's own; auto: uvloop when installed", SERVER
    )
    log_level: Literal["debug", "info", "warning", "error"] = setting("info", "what to log on stderr", SERVER)
    quiet: bool = setting(False, "no log line per request", SERVER)
    default_tags: dict[str, str] = setting(
        dict, "tags for every recording (X-Proxy-Tag-<name> headers win)", ("record", "serve"), flag=None
    )
    prices: dict[str, PriceSetting] = setting(
        dict,
        "prices in USD per million tokens by model name (case ignored), over the maintained table",
        ("record", "replay", "serve", "stats", "report", "import"),
        flag=None,
        default_text="none",
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


NOTES = {  # longer notes on some settings, for config.example.toml (proxy/options.py); one string per line
    "mode": (
        "record: forward every request and record it; replay: answer only from recordings, never contact the",
        "upstream; auto: replay a request that has a recording, forward and record one that does not; once: record",
        "into an empty cassette directory, else replay only. `proxy record` and `proxy replay` set it themselves.",
    ),
    "db": (
        "Every command finds the database by the same rule, so `proxy import DIR` and `proxy sql` run",
        "anywhere use the file `proxy record --cassettes DIR` wrote.",
    ),
    "secret_headers": (
        "Always secret: Authorization, api-key, x-api-key, Cookie, Set-Cookie, Proxy-Authorization,",
        "OpenAI-Organization, OpenAI-Project.",
    ),
    "match_headers": (
        "A request matches a recording on method, path, query and JSON body (compared canonically: key",
        "order and whitespace don't matter), plus the headers named here.",
    ),
    "stored_completions": (
        "local: GET/POST/DELETE /v1/chat/completions[/{id}[/messages]] are answered from the",
        "recordings; updates and deletes go to <cassettes>/.stored-overlay.json. forward: auto replays a",
        "recorded call, else forwards and records it; replay answers only from recordings of the same call.",
        "Record mode always forwards them.",
    ),
    "record_workers": (
        "The worker process never competes with the traffic for Python's GIL; in-process (a thread) is",
        "for embedding and small use. The old name thread means in-process.",
    ),
    "record_worker_priority": (
        "idle: only CPU nobody else wants, and the proxy preempts it at once; low: keeps about a tenth of",
        "a busy core, so recordings keep pace while other work saturates the machine. Outside Linux both",
        "mean nice 10.",
    ),
    "default_tags": (
        "Given to every recorded interaction as if each request sent X-Proxy-Tag-<name>: <value>; a tag header",
        "of the same name wins. The pytest plugin sets test = the test's node id.",
    ),
    "prices": (
        "For models the maintained table (genai-prices, bundled) does not know or prices differently for",
        "you: a local model, a fine-tune, a negotiated rate. `cached_input` is the rate of cached prompt",
        "tokens (default: the input rate). A model without any price gets cost_usd NULL, never 0, and",
        "`proxy stats` lists it. `proxy import` re-prices the rows it imports. This table must stay last.",
    ),
}
