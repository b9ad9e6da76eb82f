"""The command line: parse arguments, call one use case, print its result.

``main`` is the one place where errors become a message on stderr and an exit code."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import NoReturn

from strongroom import interrupts
from strongroom.errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE, StrongroomError


def __getattr__(name: str):
    # The click group, imported on first use: main() starts the key derivation before (cli/early.py).
    if name == "cli":
        from strongroom.cli.commands import cli
        return cli
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _take_debug_flag(argv: list[str]) -> tuple[list[str], bool]:
    """Accept --debug anywhere before a literal `--` (click alone would take it only before the
    subcommand); return the remaining arguments and whether tracebacks were asked for."""
    end = argv.index("--") if "--" in argv else len(argv)
    debug = "--debug" in argv[:end] or bool(os.environ.get("STRONGROOM_DEBUG"))
    return [a for a in argv[:end] if a != "--debug"] + argv[end:], debug


#: Commands that make a repository or back up without opening one first: they import the chunker too.
_CREATING_COMMANDS = frozenset({"init", "demo", "run"})


def _interrupt(signum, frame) -> None:
    interrupts.requested.set()
    raise KeyboardInterrupt


@contextlib.contextmanager
def _interrupts_held():
    """Hold Ctrl-C and SIGTERM until the block ends, then raise KeyboardInterrupt if one came.

    A Cython module's import (fastcdc) runs Python source strings through PyRun_String. A
    KeyboardInterrupt raised inside one is either swallowed ("Exception ignored", and the command
    carries on as if Ctrl-C had not been pressed) or leaves CPython's "unhandled
    KeyboardInterrupt" flag set, so that `python -m strongroom` exits by SIGINT instead of 130.
    Start-up imports take ~0.1 s, so holding the signal that long still ends the command at once.
    """
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            if signal.getsignal(signum) is _interrupt:  # not SIG_IGN (a background job)
                previous[signum] = signal.signal(signum, lambda s, f: interrupts.requested.set())
        except ValueError:  # not the main thread (an embedding application): leave signals alone
            break
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    interrupts.check()


def _exit_interrupted() -> NoReturn:
    # Evaluating a source string resets CPython's "unhandled KeyboardInterrupt" flag (see
    # _interrupts_held), which a KeyboardInterrupt that passed through an extension module's
    # PyRun_String may have left set: exit code 130 either way, also under `python -m`.
    eval("0")
    sys.exit(EXIT_INTERRUPTED)


def main(argv: list[str] | None = None) -> None:
    try:
        _main(argv)
    finally:
        if argv is None:  # the program itself (not a test calling main): it exits next
            # Objects still alive are left to the process's end: the interpreter's last full
            # collection at exit then skips them (~30 ms of CPU per command). Files, LMDB and
            # temporary folders are closed by the commands; atexit handlers still run.
            import gc
            gc.freeze()


def _main(argv: list[str] | None) -> None:
    argv, debug = _take_debug_flag(sys.argv[1:] if argv is None else list(argv))
    interrupts.requested.clear()
    try:
        # SIGTERM (a service manager, `kill`, a container stopping) unwinds like Ctrl-C: locks are
        # released and temporary files removed on the way out, exit code 130, for every command.
        signal.signal(signal.SIGTERM, _interrupt)
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not SIG_IGN (a background job)
            signal.signal(signal.SIGINT, _interrupt)  # the same, and recorded (strongroom.interrupts)
    except ValueError:  # not the main thread (an embedding application): leave signals alone
        pass
    try:
        with _interrupts_held():
            from strongroom.cli import early
            early.start(argv)  # before click and the commands are imported: see cli/early.py
            import click
            from strongroom.cli.commands import cli
            if argv and argv[0] in early.OPENING_COMMANDS | _CREATING_COMMANDS:
                import fastcdc  # noqa: F401 - the one Cython module (see _interrupts_held), as they will
    except KeyboardInterrupt:
        print("strongroom: interrupted", file=sys.stderr)
        _exit_interrupted()
    try:
        code = cli.main(args=argv, prog_name="strongroom", standalone_mode=False)
        sys.exit(code or 0)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(EXIT_USAGE if isinstance(e, click.UsageError) else EXIT_ERROR)
    except (KeyboardInterrupt, click.exceptions.Abort):
        click.echo("strongroom: interrupted", err=True)
        _exit_interrupted()
    except StrongroomError as e:
        if debug:
            import traceback
            traceback.print_exc()
        click.echo(f"strongroom: {e}", err=True)
        sys.exit(e.exit_code)
    except BrokenPipeError:
        sys.stderr.close()
        sys.exit(EXIT_ERROR)
    except Exception as e:  # a bug or an unmapped OS error: still one line unless --debug
        if debug:
            import traceback
            traceback.print_exc()
        click.echo(f"strongroom: unexpected error: {type(e).__name__}: {e} (run with --debug for details)", err=True)
        sys.exit(EXIT_ERROR)
