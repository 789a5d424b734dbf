"""The settings' declarations against what users read: every flag's help, config.example.toml, the README."""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path

import pytest

from proxy.cli import ACCEPTED_UNUSED, EXAMPLES, build_parser, subcommand_parsers
from proxy.options import example_config, options, settings_table
from proxy.settings import COMMANDS, NOTES, Settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def walk(parser: argparse.ArgumentParser, path: str = "proxy") -> list[tuple[str, argparse.Action]]:
    """Every action of every parser, sub-parsers included, with the command it belongs to."""
    found = []
    for action in parser._actions:
        found.append((path, action))
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += walk(sub, f"{path} {name}")
    return found


def test_every_command_flag_and_positional_has_help() -> None:
    actions = walk(build_parser())
    missing = [
        f"{command}: {action.option_strings or action.metavar or action.dest}"
        for command, action in actions
        if not action.help or (action.help == argparse.SUPPRESS and not accepted_unused(command, action))
    ]
    assert missing == []
    # the walk did reach every command (each with its own -h) and their positional arguments
    assert {command for command, _ in actions} == {"proxy", *(f"proxy {name}" for name in COMMANDS)}
    assert any(command == "proxy sql" and action.metavar == "SQL" for command, action in actions)
    no_default = [
        f"{command}: {action.option_strings or action.metavar}"
        for command, action in actions
        if action.default not in (None, argparse.SUPPRESS) and "default" not in (action.help or "")
    ]
    assert no_default == []  # each value a command falls back to is shown in its help


def accepted_unused(command: str, action: argparse.Action) -> bool:
    return action.dest in ACCEPTED_UNUSED.get(command.removeprefix("proxy "), ())


def test_flags_a_command_took_before_but_does_not_use_are_accepted_and_hidden() -> None:
    parsers = subcommand_parsers(build_parser())
    args = parsers["replay"].parse_args(["cassettes", "--no-db"])
    assert args.db_enabled is False
    assert "--no-db" not in parsers["replay"].format_help()
    assert "--timing" not in parsers["record"].format_help()
    assert parsers["record"].parse_args(["--timing", "original"]).timing == "original"


def test_every_command_has_two_or_three_examples_of_itself() -> None:
    assert set(EXAMPLES) == set(COMMANDS)
    for command, lines in EXAMPLES.items():
        assert 2 <= len(lines) <= 3
        assert all(line.startswith(f"proxy {command}") for line in lines)


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_exactly_the_flags_of_the_settings_it_uses(command: str) -> None:
    parser = subcommand_parsers(build_parser())[command]
    flags = {flag for action in parser._actions for flag in action.option_strings}
    settings_flags = {option.flag for option in options() if option.flag}
    expected = {option.flag for option in options() if option.flag and command in option.commands}
    shown = {flag for action in parser._actions if action.help != argparse.SUPPRESS for flag in action.option_strings}
    assert shown & settings_flags == expected
    assert "--config" in flags


def test_replay_has_no_recording_flags_and_record_no_replay_flags() -> None:
    parsers = subcommand_parsers(build_parser())
    replay, record = parsers["replay"].format_help(), parsers["record"].format_help()
    for flag in ("--upstream", "--no-db", "--record-workers", "--connect-timeout", "--secret-header"):
        assert flag not in replay
    for flag in ("--mode", "--timing", "--speed", "--match-header", "--on-exhausted", "--store-all"):
        assert flag not in record


def test_each_setting_flag_shows_its_default_and_its_choices() -> None:
    for option in options():
        if option.flag is None or option.flag == "--no-db":
            continue
        parser = subcommand_parsers(build_parser())[option.commands[0]]
        [action] = [action for action in parser._actions if option.flag in action.option_strings]
        assert action.help is not None
        assert f"(default: {option.default_text})" in action.help
        assert all(choice in action.help for choice in option.choices)


def test_every_setting_is_declared_with_one_line_of_help_and_known_commands() -> None:
    assert [option.name for option in options()] == list(Settings.model_fields)
    for option in options():
        assert option.help and "\n" not in option.help, option.name
        assert option.commands and set(option.commands) <= set(COMMANDS), option.name
    assert set(NOTES) <= set(Settings.model_fields)


def test_config_example_is_what_the_declarations_render() -> None:
    text = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    assert text == example_config(), "config.example.toml is stale: run python scripts/settings_docs.py"
    keys = set(tomllib.loads(text)) | {
        line.split()[1] for line in text.splitlines() if line.startswith("# ") and " = ...  (default:" in line
    }
    assert keys == set(Settings.model_fields)


def test_readme_settings_table_is_what_the_declarations_render() -> None:
    assert settings_table() in README, "the README's settings table is stale: run python scripts/settings_docs.py"
    for option in options():
        assert f"| `{option.name}` |" in README


def test_the_docs_script_finds_nothing_stale() -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "settings_docs.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout
