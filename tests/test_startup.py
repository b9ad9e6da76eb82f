"""Start-up cost: the CLI imports only what the command run needs (cli/lazy.py)."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from strongroom.cli import cli

NOT_AT_START = ("strongroom.cli.copy", "strongroom.cli.messages", "strongroom.cli.operations",
                "strongroom.commands.run", "strongroom.commands.copy", "strongroom.commands.check", "strongroom.commands.restore",
                "strongroom.commands.read_data", "strongroom.archives.store", "strongroom.messages.catalog_build")


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport json, sys; print(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True).stdout
    return set(json.loads(out.splitlines()[-1]))


# Imported by the command itself, most while the key derivation runs (cli/context.py, Location.open).
NOT_BEFORE_THE_COMMAND = ("strongroom.commands.backup", "strongroom.repository", "strongroom.chunker", "lmdb",
                          "zstandard", "fastcdc", "strongroom.storage.s3", "traceback")


def test_importing_the_cli_leaves_other_commands_unimported() -> None:
    loaded = _modules_after("import strongroom.cli")
    assert not loaded & set(NOT_AT_START), sorted(loaded & set(NOT_AT_START))
    assert not loaded & set(NOT_BEFORE_THE_COMMAND), sorted(loaded & set(NOT_BEFORE_THE_COMMAND))


def test_a_command_from_another_module_imports_only_that_module() -> None:
    others = {"strongroom.cli.copy", "strongroom.cli.messages", "strongroom.cli.retention", "strongroom.cli.keys"}
    for name, home in (("copy", "strongroom.cli.copy"), ("forget", "strongroom.cli.retention")):
        loaded = _modules_after("from strongroom.cli import cli\nimport click\n"
                                f"assert cli.get_command(click.Context(cli), {name!r}).name == {name!r}")
        assert loaded & others == {home}


def test_every_command_outside_the_core_is_mapped_to_the_module_that_adds_it() -> None:
    out = subprocess.run([sys.executable, "-c", "import json\nfrom strongroom.cli import cli\n"
                          "core = set(cli.commands)\ncli.list_commands(None)\n"
                          "print(json.dumps({n: c.callback.__module__ for n, c in cli.commands.items() if n not in core}))"],
                         capture_output=True, text=True, check=True).stdout
    added = json.loads(out)
    assert "forget" in added and "messages" in added
    assert added == cli.command_homes


def test_listing_the_commands_includes_every_module() -> None:
    names = cli.list_commands(None)
    for name in ("backup", "restore", "copy", "drill", "check", "key", "messages", "run", "forget", "prune"):
        assert name in names
    result = CliRunner().invoke(cli, ["no-such-command"])
    assert result.exit_code == 2 and "No such command" in result.output


def test_fastcdc_is_imported_at_start_only_for_commands_that_chunk() -> None:
    # fastcdc (Cython) is imported with Ctrl-C held (cli/__init__.py) by the commands that will
    # chunk anyway; --version does not pay for it
    run = "from strongroom.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass"
    assert "fastcdc" not in _modules_after(run.format(argv=["--version"]))
    assert "fastcdc" in _modules_after(run.format(argv=["snapshots", "-r", "/nonexistent/strongroom-repo"]))
