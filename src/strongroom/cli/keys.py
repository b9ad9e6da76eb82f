"""Click commands for keys and access: `key list|add|remove|passwd`, `log`, `receipt`, and the
output of `check --chain/--receipt` (registered on the main group by importing this module)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from datetime import datetime, timezone

import click

from strongroom.cli.commands import cli
from strongroom.cli.context import Location, json_option, print_json, repo_options
from strongroom.crypto.keyfile import KdfParams, calibrate
from strongroom.errors import EXIT_ERROR, StrongroomError, UsageError

DEFAULT_KDF_SECONDS = 0.5


def _kdf_options(func):
    func = click.option("--kdf-time", type=click.FloatRange(0.01, 60), default=DEFAULT_KDF_SECONDS, show_default=True,
                        metavar="SECONDS", help="Calibrate Argon2id passes to take about this long here.")(func)
    func = click.option("--kdf-iterations", type=click.IntRange(1, 100),
                        help="Argon2id passes (default: calibrated to --kdf-time).")(func)
    func = click.option("--kdf-memory", type=click.IntRange(8, 4 * 1024 * 1024), default=65536, show_default=True,
                        metavar="KIB", help="Argon2id memory for the new key file, in KiB.")(func)
    return func


def kdf_params(memory: int, iterations: int | None, seconds: float) -> KdfParams:
    lanes = max(1, min(4, memory // 8))
    if iterations is not None:
        return KdfParams(memory_kib=memory, iterations=iterations, lanes=lanes)
    return calibrate(seconds, memory, lanes)


def _new_password_options(func):
    func = click.option("--new-password-command", metavar="CMD",
                        help="Run CMD and use the first line it prints as the new passphrase (KMS, vault).")(func)
    func = click.option("--new-password-file", type=click.Path(dir_okay=False),
                        help="Read the new passphrase from the first line of this file (default: prompt).")(func)
    return func


def _first_line(data: bytes) -> bytes:
    line = data.split(b"\n", 1)[0].rstrip(b"\r")
    if not line:
        raise UsageError("the new passphrase is empty")
    return line


def _new_password(path: str | None, command: str | None) -> bytes:
    if path and command:
        raise UsageError("use either --new-password-file or --new-password-command")
    if path:
        try:
            with open(path, "rb") as f:
                return _first_line(f.read())
        except OSError as e:
            raise UsageError(f"cannot read new password file {path}: {e.strerror}") from None
    if command:
        try:
            out = subprocess.run(shlex.split(command), stdout=subprocess.PIPE, check=True).stdout
        except (OSError, subprocess.CalledProcessError) as e:
            raise StrongroomError(f"new password command failed: {e}") from None
        return _first_line(out)
    env = os.environ.get("STRONGROOM_NEW_PASSWORD")
    if env:
        return os.fsencode(env)
    if sys.stdin.isatty():
        return click.prompt("new passphrase", hide_input=True, confirmation_prompt=True, err=True).encode()
    raise UsageError("no new passphrase: use --new-password-file, --new-password-command or a terminal")


@cli.group()
def key() -> None:
    """Manage keys: several passphrases for one repository, and write-only backup keys."""


@key.command(name="list")
@repo_options
@json_option
def key_list(location: Location, as_json: bool) -> None:
    """List the repository's keys; `*` marks the one in use."""
    from strongroom.commands.keys import list_keys
    with location.open() as repo:
        rows = list_keys(repo)
    if as_json:
        print_json([r.to_json() for r in rows])
        return
    click.echo(f"  {'ID':<12}  {'KIND':<10}  {'HOST':<20}  {'USER':<12}  CREATED")
    for r in rows:
        click.echo(f"{'*' if r.in_use else ' '} {r.id[:12]:<12}  {r.kind:<10}  {r.hostname[:20]:<20}  "
                   f"{r.username[:12]:<12}  {r.created[:19]}")


@key.command(name="add")
@repo_options
@_new_password_options
@click.option("--write-only", is_flag=True,
              help="A key that can back up (with deduplication) but cannot read, restore or delete anything.")
@_kdf_options
@json_option
def key_add(location: Location, new_password_file: str | None, new_password_command: str | None, write_only: bool,
            kdf_memory: int, kdf_iterations: int | None, kdf_time: float, as_json: bool) -> None:
    """Add a key: a new passphrase for the same repository (or, with --write-only, a backup-only key)."""
    from strongroom.commands.keys import add_key
    with location.open() as repo:
        repo.require_full_key("add keys")
        password = _new_password(new_password_file, new_password_command)
        row = add_key(repo, password, kdf_params(kdf_memory, kdf_iterations, kdf_time), write_only=write_only)
    if as_json:
        print_json(row.to_json())
    else:
        click.echo(f"added {row.kind} key {row.id[:12]}")


@key.command(name="remove")
@repo_options
@click.argument("key_id")
@json_option
def key_remove(location: Location, key_id: str, as_json: bool) -> None:
    """Remove the key KEY_ID (not the one in use, not the last full key)."""
    from strongroom.commands.keys import remove_key
    with location.open() as repo:
        row = remove_key(repo, key_id)
    if as_json:
        print_json(row.to_json())
    else:
        click.echo(f"removed {row.kind} key {row.id[:12]}")


@key.command(name="passwd")
@repo_options
@_new_password_options
@_kdf_options
@json_option
def key_passwd(location: Location, new_password_file: str | None, new_password_command: str | None,
               kdf_memory: int, kdf_iterations: int | None, kdf_time: float, as_json: bool) -> None:
    """Change the passphrase of the key in use (the old passphrase stops working)."""
    from strongroom.commands.keys import change_password
    with location.open() as repo:
        password = _new_password(new_password_file, new_password_command)
        row = change_password(repo, password, kdf_params(kdf_memory, kdf_iterations, kdf_time))
    if as_json:
        print_json(row.to_json())
    else:
        click.echo(f"changed passphrase: key {row.id[:12]} replaces the old key file")


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"invalid --since {text!r}: use an ISO 8601 date or time, e.g. 2026-11-01") from None
    return when if when.tzinfo else when.astimezone(timezone.utc)


@cli.command(name="log")
@repo_options
@click.option("--since", metavar="WHEN", help="Show entries from this ISO 8601 date or time on.")
@json_option
def log_command(location: Location, since: str | None, as_json: bool) -> None:
    """Print the audit log, verifying every signature and the hash chain (exit 1 if broken)."""
    from strongroom.audit import log_since, read_log
    with location.open() as repo:
        report = read_log(repo)
    when = _since(since)
    entries = log_since(report, when) if when else report.entries
    if as_json:
        print_json([e.to_json() for e in entries])
    else:
        for e in entries:
            d = e.doc
            mark = "ok " if not e.problems else "BAD"
            summary = f"+{len(d.get('added', []))} -{len(d.get('removed', []))}"
            click.echo(f"{mark} {e.seq:>5} {str(d.get('time', '?'))[:19]}  {d.get('user', '?')}@{d.get('host', '?')}"
                       f"  key {str(d.get('key', '?'))[:12]}  {d.get('command', '?')}  {summary}  {d.get('result', '')}")
            for p in e.problems:
                click.echo(f"    ALTERED: {p}")
    for p in report.problems:
        click.echo(f"GAP: {p}", err=True)
    if not report.ok:
        click.echo("strongroom: the audit log is not intact (see above)", err=True)
        raise SystemExit(EXIT_ERROR)


@cli.command()
@repo_options
@json_option
def receipt(location: Location, as_json: bool) -> None:
    """Print the current head of the audit log: keep it elsewhere, verify later with `check --receipt`."""
    from strongroom.chain import current_receipt
    with location.open() as repo:
        head = current_receipt(repo)
    if as_json:
        print_json({"receipt": head})
    else:
        click.echo(head)


def check_history(location: Location, chain: bool, receipt_hash: str | None, as_json: bool) -> None:
    """`check --chain` and `check --receipt HASH` (called by the check command)."""
    from strongroom.audit import read_log
    from strongroom.chain import verify_chain, verify_receipt
    doc: dict = {}
    ok = True
    with location.open() as repo:
        log = read_log(repo)
        if chain:
            c = verify_chain(repo, log)
            ok &= c.ok
            doc["chain"] = {"ok": c.ok, "snapshots": c.snapshots, "chained": c.chained, "unchained": c.unchained,
                            "groups": c.groups, "log_entries": len(log.entries), "problems": c.problems,
                            "notes": c.notes}
        if receipt_hash:
            r = verify_receipt(repo, receipt_hash)
            ok &= r.ok
            doc["receipt"] = {"ok": r.ok, "receipt": r.receipt, "entry": r.entry_seq,
                              "entries_covered": r.entries_covered, "snapshots_covered": r.snapshots_covered,
                              "problems": r.problems}
    doc["ok"] = ok
    if as_json:
        print_json(doc)
    else:
        if "chain" in doc:
            c = doc["chain"]
            for note in c["notes"]:
                click.echo(f"note: {note}")
            for p in c["problems"]:
                click.echo(f"error: {p}", err=True)
            click.echo(f"chain: {c['chained']} signed snapshot(s) in {c['groups']} group(s), {c['unchained']} "
                       f"unchained (older), {c['log_entries']} log entries: {'ok' if c['ok'] else 'BROKEN'}")
        if "receipt" in doc:
            r = doc["receipt"]
            for p in r["problems"]:
                click.echo(f"error: {p}", err=True)
            click.echo(f"receipt {r['receipt']}: {r['entries_covered']} log entries and {r['snapshots_covered']} "
                       f"snapshot(s) covered: {'intact' if r['ok'] else 'NOT INTACT'}")
    if not ok:
        raise SystemExit(EXIT_ERROR)
