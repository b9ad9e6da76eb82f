"""The CLI reference (docs/cli.md), generated from the commands' own --help.

    python -m strongroom.cli.reference > docs/cli.md

tests/test_docs.py fails when the committed reference is stale, so every command and option a
user can type is documented."""

from __future__ import annotations

import click

from strongroom.cli import cli


def _commands(group: click.Group, prefix: list[str]) -> list[tuple[list[str], click.Command]]:
    ctx = click.Context(group, info_name=" ".join(prefix))
    out = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        out.append((prefix + [name], command))
        if isinstance(command, click.Group):
            out += _commands(command, prefix + [name])
    return out


def _help(path: list[str], command: click.Command) -> str:
    parent = click.Context(cli, info_name="strongroom")
    for part in path[1:-1]:
        parent = click.Context(parent.command.get_command(parent, part), info_name=part, parent=parent)
    ctx = click.Context(command, info_name=path[-1], parent=parent, terminal_width=100, max_content_width=100,
                        **cli.context_settings)
    return command.get_help(ctx)


def render() -> str:
    lines = ["# strongroom command reference", "",
             "Generated from `--help` by `python -m strongroom.cli.reference > docs/cli.md`; "
             "do not edit by hand.", ""]
    root = click.Context(cli, info_name="strongroom", terminal_width=100, max_content_width=100,
                         **cli.context_settings)
    lines += ["## strongroom", "", "```", cli.get_help(root), "```", ""]
    for path, command in _commands(cli, ["strongroom"]):
        lines += [f"## {' '.join(path)}", "", "```", _help(path, command), "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(), end="")
