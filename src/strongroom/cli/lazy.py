"""A click group whose commands from other modules are imported only when needed.

The core commands live in cli/commands.py with the group; the modules named in
``command_modules`` add theirs when imported. Importing them all costs a noticeable part of every
command's start-up (copy, drill, messages, run ... and what they import), so they are imported
only when a command is not among those already registered, or when all are listed (--help, the
CLI reference)."""

from __future__ import annotations

import importlib

import click


class LazyGroup(click.Group):
    command_modules: tuple[str, ...] = ()

    def _import_all(self) -> None:
        for module in self.command_modules:
            importlib.import_module(module)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and self.command_modules:
            self._import_all()
            command = super().get_command(ctx, cmd_name)
        return command

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._import_all()
        return super().list_commands(ctx)
