"""Click commands for copy (registered on the main group by importing this module)."""

from __future__ import annotations

import click

from strongroom.cli.commands import cli  # noqa: F401  (commands below attach to this group)
from strongroom.cli.context import (Location, from_password_options, json_option, print_json, repo_options,
                                    source_location)
from strongroom.cli.progress import byte_progress, progress_enabled
from strongroom.commands.copy import CopySelection, run_copy


@cli.command()
@repo_options
@click.option("--from-repo", required=True, metavar="URL", envvar="STRONGROOM_FROM_REPO",
              help="The source repository (a path or an S3 URL). Default: $STRONGROOM_FROM_REPO.")
@from_password_options
@click.argument("snapshots", nargs=-1, metavar="[SNAPSHOT]...")
@click.option("--host", "hosts", multiple=True, help="Only snapshots of this host (repeatable).")
@click.option("--tag", "tags", multiple=True, help="Only snapshots with this tag (repeatable: any of them).")
@json_option
def copy(location: Location, from_repo: str, from_password_file: str | None, from_password_command: str | None,
         snapshots: tuple[str, ...], hosts: tuple[str, ...],
         tags: tuple[str, ...], as_json: bool) -> None:
    """Copy snapshots from --from-repo into the repository (-r): all, or SNAPSHOT ids / `latest`,
    filtered by --host and --tag. Only chunks the destination lacks are stored, encrypted with the
    destination's keys; snapshots copied before are skipped."""
    source = source_location(from_repo, from_password_file, from_password_command, location)
    with source.open() as src, location.open() as dst, byte_progress("copy", progress_enabled(as_json)) as progress:
        result = run_copy(src, dst, CopySelection(list(snapshots), list(hosts), list(tags)), progress=progress)
    if as_json:
        print_json({"copied": [{"source": c.source, "copy": c.copy} for c in result.copied],
                    "skipped": [{"source": c.source, "copy": c.copy} for c in result.skipped],
                    "blobs_read": result.blobs_read, "blobs_added": result.blobs_added,
                    "bytes_added": result.bytes_added, "duration_s": result.duration_s})
        return
    for c in result.copied:
        click.echo(f"copied snapshot {c.source[:8]} to {c.copy[:8]}")
    for c in result.skipped:
        click.echo(f"skipped snapshot {c.source[:8]}: already copied as {c.copy[:8]}")
    click.echo(f"{len(result.copied)} copied, {len(result.skipped)} skipped; {result.blobs_added} new blobs "
               f"({result.bytes_added} bytes stored) in {result.duration_s:.1f}s")
