"""Click command for restore drills (registered on the main group by importing this module)."""

from __future__ import annotations

import click

from strongroom.cli.commands import cli
from strongroom.cli.context import Location, human_bytes, json_option, print_json, repo_options
from strongroom.cli.progress import byte_progress, progress_enabled
from strongroom.commands.drill import DrillResult, Sample, run_drill
from strongroom.errors import EXIT_ERROR


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


@cli.command()
@repo_options
@click.argument("snapshot", default="latest")
@click.option("--sample", metavar="N%",
              help="Restore about N% of the snapshot's bytes, as whole files chosen at random "
                   "(default: 10%, but at least 64 MiB, so small snapshots restore fully).")
@click.option("--all", "everything", is_flag=True, help="Restore every file of the snapshot.")
@click.option("--seed", type=click.IntRange(0, 2 ** 128 - 1), metavar="S",
              help="Choose the sample from this seed (a drill with the same seed restores the same files; "
                   "default: random, printed with the result).")
@click.option("--tmp-dir", type=click.Path(file_okay=False, exists=True), metavar="DIR",
              help="Restore into a new directory under DIR (default: the system temporary directory); "
                   "it is removed afterwards.")
@json_option
def drill(location: Location, snapshot: str, sample: str | None, everything: bool, seed: int | None,
          tmp_dir: str | None, as_json: bool) -> None:
    """Restore drill: restore a random sample of SNAPSHOT (default `latest`) into a temporary
    directory, verify every byte and the metadata, and estimate the time to restore all of it.

    The estimate (RTO) is the time to walk the snapshot's trees plus its total size divided by the
    throughput measured while restoring the sample. Exits 1 if any file could not be restored or
    differs from the snapshot."""
    spec = Sample.parse(sample, everything=everything)
    with location.open() as repo:
        snap = repo.find_snapshot(snapshot)
        with byte_progress("drill", progress_enabled(as_json)) as progress:
            result = run_drill(repo, snap, sample=spec, seed=seed, tmp_dir=tmp_dir, progress=progress)
    if as_json:
        print_json(result.to_json())
    else:
        _print(result)
    if not result.ok:
        first = result.failures[0]
        more = f" (and {result.failed_files - 1} more)" if result.failed_files > 1 else ""
        click.echo(f"strongroom: drill FAILED: {first.path}: {first.error}{more}", err=True)
        raise SystemExit(EXIT_ERROR)


def _print(r: DrillResult) -> None:
    share = f"{100 * r.bytes_sampled / r.bytes_total:.1f}%" if r.bytes_total else "100%"
    click.echo(f"drill of snapshot {r.snapshot.short_id} (sample {r.sample.spec}, seed {r.seed}): "
               f"restored {r.files_restored} of {r.files_total} files, {human_bytes(r.bytes_restored)} of "
               f"{human_bytes(r.bytes_total)} ({share}); {r.files_verified} verified byte for byte")
    for f in r.failures:
        click.echo(f"error: {f.path}: {f.stage}: {f.error}", err=True)
    click.echo(f"tree walk {r.tree_walk_seconds:.2f} s, restore {r.restore_seconds:.2f} s "
               f"({human_bytes(r.throughput)}/s), verification {r.verify_seconds:.2f} s")
    estimate = r.estimated_restore_seconds
    if estimate is None:
        click.echo("estimated full restore time (RTO): unknown (nothing could be restored)")
    else:
        click.echo(f"estimated full restore time (RTO): {_duration(estimate)} "
                   f"(tree walk + {human_bytes(r.bytes_total)} at the measured throughput)")
