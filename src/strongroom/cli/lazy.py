"""A click group whose commands from other modules are imported only when needed.

The core commands live in cli/commands.py with the group; the modules named in
``command_modules`` add theirs when imported. Importing them all costs more than the rest of a
command's start-up together (~0.5 s CPU: copy, drill, messages, run ... and what they import), so
a command outside the core imports only its own module (``command_homes``), and all are imported
only when all are listed (--help, the CLI reference) or a name is unknown."""

from __future__ import annotations

import importlib

import click


class LazyGroup(click.Group):
    command_modules: tuple[str, ...] = ()
    command_homes: dict[str, str] = {}  # command name -> the module (of command_modules) that adds it

    def _import_all(self) -> None:
        for module in self.command_modules:
            importlib.import_module(module)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in self.command_homes:
            importlib.import_module(self.command_homes[cmd_name])
            command = super().get_command(ctx, cmd_name)
        if command is None and self.command_modules:
            self._import_all()
            command = super().get_command(ctx, cmd_name)
        return command

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._import_all()
        return super().list_commands(ctx)
