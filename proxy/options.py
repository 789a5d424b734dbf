"""The settings' declarations (proxy/settings.py) read back: flags, `--help`, the example config, the README table.

`options()` lists every Settings field as an `Option` (flag, valid values, default, the commands that use it).
`add_setting_flags` adds the flags of one command to its argparse parser; `example_config` and `settings_table`
render `config.example.toml` and the README's table (`scripts/settings_docs.py` writes them, and a test checks
that the files in the repository are what these functions render).
"""

from __future__ import annotations

import argparse
import enum
import functools
import json
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from annotated_types import Ge, Gt, Le

from proxy.settings import COMMANDS, NOTES, Settings

KIND_WORDS = {
    "bool": "true or false",
    "list": "list of names",
    "table": "table of {input, output, cached_input}",
    "tags": "table of name = text",
    "float": "number",
    "int": "integer",
    "str": "text",
    "Path": "path",
}


@dataclass(frozen=True)
class Option:
    name: str
    help: str
    commands: tuple[str, ...]
    flag: str | None  # None: config file only
    metavar: str | None
    kind: str  # bool, list, table, or the scalar type's name
    default: Any
    default_text: str  # the default as --help and the README say it
    choices: tuple[str, ...]  # the valid values of an enum or Literal, else ()
    aliases: dict[str, str]
    bounds: str  # "> 0", ">= 0, <= 65535", ...
    notes: str

    def valid(self) -> str:
        """The valid values, in words."""
        if self.choices:
            aliases = ", ".join(f"{alias} = {real}" for alias, real in self.aliases.items())
            return ", ".join(self.choices) + (f" (also {aliases})" if aliases else "")
        text = KIND_WORDS.get(self.kind, self.kind)
        return f"{text} {self.bounds}".strip()


def _kind(annotation: Any) -> tuple[str, tuple[str, ...]]:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return "str", tuple(str(arg) for arg in args)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "str", tuple(str(member.value) for member in annotation)
    if origin is tuple:
        return "list", ()
    if origin is dict:
        return ("tags" if args == (str, str) else "table"), ()
    if args:  # X | None
        return _kind(next(arg for arg in args if arg is not type(None)))
    return annotation.__name__, ()


def _words(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ", ".join(value) if value else "none"
    if isinstance(value, enum.Enum):
        return str(value.value)
    return str(value)


@functools.cache
def options() -> tuple[Option, ...]:
    found = []
    for name, field in Settings.model_fields.items():
        extra = field.json_schema_extra
        assert isinstance(extra, dict), f"Settings.{name} is not declared with setting(...)"
        kind, choices = _kind(field.annotation)
        bounds = []
        for item in field.metadata:
            for cls, attr, sign in ((Gt, "gt", ">"), (Ge, "ge", ">="), (Le, "le", "<=")):
                if isinstance(item, cls):
                    bounds.append(f"{sign} {getattr(item, attr)}")
        default = field.get_default(call_default_factory=True)
        flag = extra["flag"]
        found.append(
            Option(
                name=name,
                help=str(field.description),
                commands=tuple(typing.cast(list[str], extra["commands"])),
                flag=None if flag is None else (str(flag) or "--" + name.replace("_", "-")),
                metavar=typing.cast(str | None, extra["metavar"]),
                kind=kind,
                default=default,
                default_text=str(extra["default_text"] or _words(default)),
                choices=choices,
                aliases=typing.cast(dict[str, str], extra["aliases"]),
                bounds=", ".join(bounds),
                notes="\n".join(NOTES.get(name, ())),
            )
        )
    return tuple(found)


def option_named(name: str) -> Option | None:
    return next((option for option in options() if option.name == name), None)


# --- flags ---


def flag_help(option: Option) -> str:
    text = option.help
    if option.choices:
        text += f"; one of {', '.join(option.choices)}"
    if option.kind == "list":
        text += " (repeatable)"
    if option.kind == "bool" and option.flag and option.flag.startswith("--no-"):  # a switch that turns it off
        return f"do not {text}".replace("%", "%%")
    return f"{text} (default: {option.default_text})".replace("%", "%%")


# What a flag's value looks like in --help when its setting names no metavar of its own.
_METAVARS = {"int": "N", "float": "X", "str": "TEXT", "Path": "PATH"}


def add_setting_flags(parser: argparse.ArgumentParser, command: str, accepted: tuple[str, ...] = ()) -> None:
    """The flags of every setting `command` uses, in declaration order, each with its help and default; and,
    hidden from --help, the flags of the `accepted` settings (which the command took before without using them)."""
    for option in options():
        used = command in option.commands
        if option.flag is None or not (used or option.name in accepted):
            continue
        help_text = flag_help(option) if used else argparse.SUPPRESS
        kwargs: dict[str, Any] = {"dest": option.name, "default": None, "help": help_text}
        if option.kind == "bool" and option.flag.startswith("--no-"):
            kwargs.update(action="store_const", const=False)
        elif option.kind == "bool":
            kwargs.update(action=argparse.BooleanOptionalAction)
        elif option.kind == "list":
            kwargs.update(action="append", metavar=option.metavar or "NAME")
        elif option.choices:
            kwargs.update(metavar=option.metavar or "{" + ",".join(option.choices) + "}")
        else:
            kwargs.update(metavar=option.metavar or _METAVARS.get(option.kind, "VALUE"))
        parser.add_argument(option.flag, **kwargs)


# --- the example config and the README table ---


def _toml(value: Any) -> str:
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, tuple):
        value = list(value)
    return json.dumps(value)  # strings, numbers, booleans and lists of strings are the same in TOML


EXAMPLE_HEAD = """\
# Settings of the `proxy` commands (--config FILE). Every key is optional; the values shown are the defaults.
# Precedence: defaults < this file < command-line flags. The keys may also sit under a [proxy] table.
# Relative paths here are relative to this file's folder. Generated from proxy/settings.py by
# scripts/settings_docs.py: edit the declaration there, not this file.
"""

PRICE_EXAMPLES = """\
# "my-local-llama" = { input = 0.0, output = 0.0 }
# "ft:gpt-4o-mini-2024-07-18:acme::abc123" = { input = 0.30, cached_input = 0.15, output = 1.20 }
"""


def example_config() -> str:
    parts = [EXAMPLE_HEAD]
    for option in options():
        lines = [f"# {option.help}."]
        lines += [f"# {line}" for line in option.notes.splitlines()]
        flag = f"flag {option.flag}; " if option.flag else ""
        lines.append(f"# {flag}used by {', '.join(option.commands)}; valid: {option.valid()}")
        if option.kind == "table":
            lines += [f"[{option.name}]", PRICE_EXAMPLES.rstrip("\n")]
        elif option.kind == "tags":  # an inline table: it may stand before the [prices] table
            lines.append(f'# {option.name} = ...  (default: {option.default_text}), e.g. {{ team = "search" }}')
        elif option.default is None:
            lines.append(f"# {option.name} = ...  (default: {option.default_text})")
        else:
            lines.append(f"{option.name} = {_toml(option.default)}")
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def settings_table() -> str:
    rows = ["| key | flag | default | valid values | used by | what it does |", "| --- | --- | --- | --- | --- | --- |"]
    for option in options():
        used = "all" if option.commands == COMMANDS else ", ".join(option.commands)
        flag = f"`{option.flag}`" if option.flag else "(file only)"
        cells = [f"`{option.name}`", flag, option.default_text, option.valid(), used, option.help]
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(rows) + "\n"
