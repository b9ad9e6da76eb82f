"""Click commands for integrity: output of `check`, and the `repair` group (registered on the
main group by importing this module)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from strongroom.cli.commands import cli
from strongroom.cli.context import Location, human_bytes, json_option, print_json, repo_options, warn
from strongroom.cli.progress import byte_progress, progress_enabled
from strongroom.errors import EXIT_ERROR

if TYPE_CHECKING:  # the check use case is imported by `check` itself, while the key derivation runs
    from strongroom.commands.check import CheckResult


def data_progress(desc: str, enabled: bool):
    """A byte progress bar whose total arrives with the first event (check, repair)."""
    return byte_progress(desc, enabled, count_label="packs")


def print_check(result: CheckResult, as_json: bool) -> None:
    if as_json:
        doc = {"ok": result.ok, "snapshots": result.snapshots, "trees": result.trees, "blobs": result.blobs,
               "packs": result.packs, "errors": result.errors, "notes": result.notes}
        if result.read_data:
            doc["read_data"] = {"packs_read": result.packs_read, "packs_stored": result.packs_selected_of,
                                "bytes_read": result.bytes_read, "blobs_read": result.blobs_read,
                                "seconds": round(result.seconds, 3),
                                "bytes_per_second": round(result.throughput)}
        doc["damaged_packs"] = result.damaged_packs
        doc["affected"] = [a.to_json() for a in result.affected]
        doc["affected_not_listed"] = result.affected_more
        doc["affected_snapshots"] = sorted(result.affected_snapshots)
        print_json(doc)
        return
    for note in result.notes:
        click.echo(f"note: {note}")
    for error in result.errors:
        click.echo(f"error: {error}", err=True)
    if result.affected_more:
        click.echo(f"error: ... and {result.affected_more} more affected files not listed", err=True)
    click.echo(f"checked {result.snapshots} snapshots, {result.trees} trees, {result.blobs} blob references, "
               f"{result.packs} packs: {'no errors' if result.ok else f'{len(result.errors)} error(s)'}")
    if result.read_data:
        click.echo(f"read {result.packs_read} of {result.packs_selected_of} packs, {result.blobs_read} blobs, "
                   f"{human_bytes(result.bytes_read)} in {result.seconds:.1f} s "
                   f"({human_bytes(result.throughput)}/s)")
    if result.affected_snapshots:
        click.echo(f"{len(result.affected_snapshots)} snapshot(s) affected: "
                   + " ".join(sorted(s[:8] for s in result.affected_snapshots)), err=True)


@cli.group()
def repair() -> None:
    """Repair a damaged repository: rebuild the index, salvage packs, rewrite snapshots."""


@repair.command(name="index")
@repo_options
@json_option
def repair_index(location: Location, as_json: bool) -> None:
    """Rebuild the index files from the headers of the stored packs."""
    from strongroom.commands.repair import rebuild_index
    with location.open() as repo:
        with data_progress("repair index", progress_enabled(as_json)) as progress:
            result = rebuild_index(repo, progress=progress, warn=None if as_json else warn)
    if as_json:
        print_json(result.to_json())
    else:
        click.echo(f"indexed {result.packs} packs ({result.blobs} blobs) in {len(result.written)} new index "
                   f"file(s); removed {len(result.removed)} old index file(s); "
                   f"{len(result.unreadable)} unreadable pack(s) left out")
    if result.unreadable:
        raise SystemExit(EXIT_ERROR)


@repair.command(name="packs")
@repo_options
@click.argument("packs", nargs=-1, required=True)
@json_option
def repair_packs(location: Location, packs: tuple[str, ...], as_json: bool) -> None:
    """Copy the readable blobs of damaged PACKS (names or unique prefixes) into new packs, then
    remove the damaged packs and rebuild the index."""
    from strongroom.commands.repair import salvage_packs
    with location.open() as repo:
        result = salvage_packs(repo, list(packs), warn=None if as_json else warn)
    if as_json:
        print_json(result.to_json())
    else:
        click.echo(f"salvaged {result.blobs_salvaged} blob(s) into {len(result.new_packs)} new pack(s); "
                   f"{result.blobs_lost} blob(s) lost; removed {len(result.removed)} damaged pack(s)")
        if result.blobs_lost:
            click.echo("run `strongroom backup` again to re-supply lost chunks that still exist at the source, "
                       "or `strongroom repair snapshots` to drop the files that use them", err=True)


@repair.command(name="snapshots")
@repo_options
@click.option("--forget", is_flag=True, help="Remove the damaged original snapshots after writing repaired ones.")
@click.option("--dry-run", "-n", is_flag=True, help="Only report what would be removed.")
@json_option
def repair_snapshots_command(location: Location, forget: bool, dry_run: bool, as_json: bool) -> None:
    """Write new snapshots without the files and directories whose data is lost."""
    from strongroom.commands.repair import repair_snapshots
    with location.open() as repo:
        result = repair_snapshots(repo, forget=forget, dry_run=dry_run, warn=None if as_json else warn)
    if as_json:
        print_json(result.to_json())
    else:
        for old, new in result.rewritten.items():
            click.echo(f"snapshot {old[:8]} -> {new[:8] if new else '(dry run)'}")
        for line in result.removed_paths[:200]:
            click.echo(f"  removed {line}")
        click.echo(f"{len(result.rewritten)} snapshot(s) repaired, {len(result.removed_paths)} item(s) dropped"
                   + (f", {len(result.forgotten)} original(s) forgotten" if result.forgotten else ""))
