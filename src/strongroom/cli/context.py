"""Shared CLI plumbing: repository and password options, opening the repository, output."""

from __future__ import annotations

import functools
import json
import os
import shlex
import subprocess
import sys
from typing import Any, Callable

import click

from strongroom.errors import UsageError, StrongroomError
from strongroom.repository import Repository
from strongroom.storage import open_storage


def repo_options(func: Callable) -> Callable:
    """-r/--repo and the password sources, shared by every command that opens a repository."""

    @click.option("-r", "--repo", "repo_url", envvar="STRONGROOM_REPO", metavar="URL",
                  help="Repository location (a path). Default: $STRONGROOM_REPO.")
    @click.option("--password-file", type=click.Path(dir_okay=False), envvar="STRONGROOM_PASSWORD_FILE",
                  help="Read the password from the first line of this file.")
    @click.option("--password-command", metavar="CMD", envvar="STRONGROOM_PASSWORD_COMMAND",
                  help="Run CMD and use the first line it prints as the password.")
    @functools.wraps(func)
    def wrapper(*args: Any, repo_url: str | None, password_file: str | None, password_command: str | None,
                **kwargs: Any) -> Any:
        if not repo_url:
            raise UsageError("no repository given: use -r/--repo or set STRONGROOM_REPO")
        kwargs["location"] = Location(repo_url, password_file, password_command)
        return func(*args, **kwargs)

    return wrapper


class Location:
    """Where the repository is and how to get its password (asked for only when needed)."""

    def __init__(self, url: str, password_file: str | None, password_command: str | None) -> None:
        self.url = url
        self.password_file = password_file
        self.password_command = password_command

    def storage(self):
        return open_storage(self.url)

    def password(self, *, confirm: bool = False) -> bytes:
        if self.password_file:
            try:
                with open(self.password_file, "rb") as f:
                    return _first_line(f.read())
            except OSError as e:
                raise UsageError(f"cannot read password file {self.password_file}: {e.strerror}") from None
        if self.password_command:
            try:
                out = subprocess.run(shlex.split(self.password_command), stdout=subprocess.PIPE, check=True).stdout
            except (OSError, subprocess.CalledProcessError) as e:
                raise StrongroomError(f"password command failed: {e}") from None
            return _first_line(out)
        env = os.environ.get("STRONGROOM_PASSWORD")
        if env is not None:
            if not env:
                raise UsageError("STRONGROOM_PASSWORD is set but empty")
            return os.fsencode(env)
        if sys.stdin.isatty():
            pw = click.prompt("repository password", hide_input=True, confirmation_prompt=confirm, err=True)
            return pw.encode()
        raise UsageError("no password given: set STRONGROOM_PASSWORD, or use --password-file or --password-command")

    def open(self) -> Repository:
        storage = self.storage()
        if not storage.exists():
            from strongroom.errors import RepositoryNotFound
            raise RepositoryNotFound(f"no repository at {self.url} (run `strongroom init` to create one)")
        return Repository.open(storage, self.password())


def _first_line(data: bytes) -> bytes:
    line = data.split(b"\n", 1)[0].rstrip(b"\r")
    if not line:
        raise UsageError("the password source gave an empty password")
    return line


def json_option(func: Callable) -> Callable:
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")(func)


def print_json(doc: Any) -> None:
    click.echo(json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=True))


def warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
