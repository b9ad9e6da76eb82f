"""The CLI reference must list every command and option, and match the code."""

from pathlib import Path

import click

from strongroom.cli import cli
from strongroom.cli.reference import _commands, render

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "cli.md"


def test_reference_is_up_to_date():
    assert REFERENCE.read_text(encoding="utf-8") == render(), (
        "docs/cli.md is stale: run `python -m strongroom.cli.reference > docs/cli.md`")


def test_every_command_and_option_is_documented():
    text = REFERENCE.read_text(encoding="utf-8")
    commands = _commands(cli, ["strongroom"])
    assert len(commands) >= 20
    for path, command in commands:
        assert f"## {' '.join(path)}\n" in text
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert any(opt in text for opt in param.opts), f"{' '.join(path)}: {param.opts} undocumented"
