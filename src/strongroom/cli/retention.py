"""Click commands for retention and space: forget, hold, release, prune, stats, diff, tag."""

from __future__ import annotations

import json

import click

from strongroom.cli.commands import _size, cli
from strongroom.cli.context import (Location, human_bytes, json_option, json_text, no_lock_option, print_json,
                                    repo_options, warn)
from strongroom.cli.progress import byte_progress, progress_enabled
from strongroom.commands.prune import MaxUnused, PruneOptions, PruneResult, run_prune
from strongroom.policy import Duration, Policy, parse_group_by


_COUNT = click.IntRange(min=-1)  # -1: unlimited


def _prune_options(max_unused: str, max_repack_size: str | None, repack_small: bool, dry_run: bool) -> PruneOptions:
    return PruneOptions(max_unused=MaxUnused.parse(max_unused, _size),
                        max_repack_size=_size(max_repack_size) if max_repack_size else None,
                        repack_small=repack_small, dry_run=dry_run)


def prune_options(func):
    func = click.option("--repack-small", is_flag=True, help="Merge small packs even if there are only a few.")(func)
    func = click.option("--max-repack-size", metavar="SIZE",
                        help="Read at most this much for repacking (e.g. 2G).")(func)
    func = click.option("--max-unused", default="5%", show_default=True, metavar="LIMIT",
                        help="Unused space to tolerate: a percentage, a size, or `unlimited`.")(func)
    return func


def _print_prune(result: PruneResult) -> None:
    p = result.plan
    dry = result.dry_run
    click.echo(f"{p.snapshots} snapshot(s) reference {p.used_blobs} blobs; "
               f"{p.packs_before} packs, {human_bytes(p.bytes_before)}, of which "
               f"{human_bytes(p.unused_bytes_before)} unused")
    click.echo(f"{'would delete' if dry else 'deleted'} {len(p.delete_packs)} unused pack(s) ({human_bytes(p.delete_bytes)})"
               + (f" and {len(p.orphan_packs)} unindexed pack(s) ({human_bytes(p.orphan_bytes)})"
                  if p.orphan_packs else ""))
    click.echo(f"{'would repack' if dry else 'repacked'} {len(p.repack_packs)} pack(s) ({human_bytes(p.repack_bytes)}, "
               f"copying {human_bytes(p.repack_used_bytes)})")
    click.echo(f"{'would rewrite' if dry else 'rewrote'} {len(p.rewrite_index_files) + len(p.superseded_index_files)} index file(s)")
    click.echo(f"repository after prune: about {human_bytes(p.bytes_after)}, "
               f"{human_bytes(p.unused_bytes_after)} unused")
    if not result.dry_run:
        click.echo(f"wrote {result.packs_written} pack(s) ({human_bytes(result.bytes_written)}) and "
                   f"{result.index_files_written} index file(s); deleted {result.packs_deleted} pack(s) "
                   f"({human_bytes(result.bytes_deleted)}) and {result.index_files_deleted} index file(s)")
        if result.temporaries_removed:
            click.echo(f"removed {result.temporaries_removed} temporary file(s) left by interrupted writes")
        if result.sweep_error:
            warn(f"could not remove temporary files: {result.sweep_error}")


def _prune_json(result: PruneResult) -> dict:
    return {"dry_run": result.dry_run, "plan": result.plan.to_json(), "packs_written": result.packs_written,
            "bytes_written": result.bytes_written, "index_files_written": result.index_files_written,
            "index_files_deleted": result.index_files_deleted, "packs_deleted": result.packs_deleted,
            "bytes_deleted": result.bytes_deleted, "temporaries_removed": result.temporaries_removed}


@cli.command()
@repo_options
@click.argument("snapshot_ids", nargs=-1)
@click.option("--keep-last", type=_COUNT, default=0, metavar="N", help="Keep the N newest snapshots.")
@click.option("--keep-hourly", type=_COUNT, default=0, metavar="N", help="Keep the newest snapshot of N hours.")
@click.option("--keep-daily", type=_COUNT, default=0, metavar="N", help="Keep the newest snapshot of N days.")
@click.option("--keep-weekly", type=_COUNT, default=0, metavar="N", help="Keep the newest snapshot of N ISO weeks.")
@click.option("--keep-monthly", type=_COUNT, default=0, metavar="N", help="Keep the newest snapshot of N months.")
@click.option("--keep-yearly", type=_COUNT, default=0, metavar="N", help="Keep the newest snapshot of N years.")
@click.option("--keep-within", metavar="DURATION", help="Keep all snapshots this close to the newest (e.g. 2y6m).")
@click.option("--keep-tag", "keep_tags", multiple=True, metavar="TAG", help="Keep snapshots with this tag.")
@click.option("--group-by", default="host,paths", show_default=True,
              help="Apply the policy per group: host, paths, tags (comma-separated), or '' for one group.")
@click.option("--dry-run", "-n", is_flag=True, help="Only show what would be removed, and why the rest is kept.")
@click.option("--prune", "then_prune", is_flag=True, help="Run prune afterwards.")
@prune_options
@json_option
def forget(location: Location, snapshot_ids: tuple[str, ...], keep_last: int, keep_hourly: int, keep_daily: int,
           keep_weekly: int, keep_monthly: int, keep_yearly: int, keep_within: str | None,
           keep_tags: tuple[str, ...], group_by: str, dry_run: bool, then_prune: bool, max_unused: str,
           max_repack_size: str | None, repack_small: bool, as_json: bool) -> None:
    """Remove snapshots by policy (--keep-*) or by id; held snapshots always stay. N=-1: unlimited."""
    from strongroom.commands.forget import run_forget
    policy = Policy(keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly,
                    Duration.parse(keep_within) if keep_within else None, list(keep_tags))
    prune_opts = _prune_options(max_unused, max_repack_size, repack_small, dry_run) if then_prune else None
    with location.open() as repo:
        result = run_forget(repo, policy=policy, snapshot_ids=list(snapshot_ids), group_by=parse_group_by(group_by),
                            dry_run=dry_run)
        pruned = None
        if prune_opts and not dry_run:
            with byte_progress("prune", progress_enabled(as_json), count_label="items") as progress:
                pruned = run_prune(repo, prune_opts, progress=progress)
    if as_json:
        doc = {"dry_run": dry_run, "policy": policy.to_json(),
               "snapshots": [{"id": d.snapshot.id, "time": d.snapshot.time, "host": d.snapshot.hostname,
                              "paths": d.snapshot.paths, "tags": d.snapshot.tags, "keep": d.keep,
                              "reasons": d.reasons, "group": [list(k) for k in d.group]} for d in result.decisions],
               "removed": result.removed,
               "holds": [h.to_json() for h in result.holds.values()]}
        if pruned:
            doc["prune"] = _prune_json(pruned)
        print_json(doc)
        return
    group = object()
    for d in result.decisions:
        if d.group != group and d.group:
            group = d.group
            click.echo("group " + ", ".join(f"{k}={','.join(v) if isinstance(v, tuple) else v}" for k, v in d.group))
        s = d.snapshot
        verdict = "keep  " if d.keep else ("would remove" if dry_run else "remove")
        why = f"  ({'; '.join(d.reasons)})" if d.reasons else ""
        click.echo(f"  {verdict} {s.short_id} {s.time[:19].replace('T', ' ')} {s.hostname}{why}")
    held = [h for h in result.holds.values()]
    if held:
        click.echo(f"{len(held)} snapshot(s) under legal hold:")
        for h in held:
            click.echo(f"  {h.snapshot[:8]} held since {h.time[:19]} by {h.username}@{h.hostname}: {h.reason}")
    removed = len(result.to_remove) if dry_run else len(result.removed)
    click.echo(f"{'would remove' if dry_run else 'removed'} {removed} snapshot(s), keeping {len(result.kept)}")
    if pruned:
        _print_prune(pruned)
    elif then_prune:
        click.echo("dry run: prune not run")


@cli.command()
@repo_options
@prune_options
@click.option("--dry-run", "-n", is_flag=True, help="Only print the plan.")
@json_option
def prune(location: Location, max_unused: str, max_repack_size: str | None, repack_small: bool, dry_run: bool,
          as_json: bool) -> None:
    """Delete data no snapshot uses; repack partly used packs (takes the exclusive lock)."""
    options = _prune_options(max_unused, max_repack_size, repack_small, dry_run)
    with location.open() as repo, byte_progress("prune", progress_enabled(as_json), count_label="items") as progress:
        result = run_prune(repo, options, progress=progress)
    if as_json:
        print_json(_prune_json(result))
    else:
        _print_prune(result)


@cli.command()
@repo_options
@click.argument("snapshots", nargs=-1, required=True)
@click.option("--reason", required=True, help="Why the snapshots must be kept (recorded with the hold).")
@json_option
def hold(location: Location, snapshots: tuple[str, ...], reason: str, as_json: bool) -> None:
    """Put SNAPSHOTS under legal hold: no policy or command removes them until released."""
    from strongroom.commands.hold import place_holds
    with location.open() as repo:
        placed = place_holds(repo, list(snapshots), reason)
    if as_json:
        print_json([h.to_json() for _, h in placed])
        return
    for snap, h in placed:
        click.echo(f"held {snap.short_id}: {h.reason}")


@cli.command()
@repo_options
@click.argument("snapshots", nargs=-1, required=True)
@json_option
def release(location: Location, snapshots: tuple[str, ...], as_json: bool) -> None:
    """Release the legal hold on SNAPSHOTS."""
    from strongroom.commands.hold import release_holds
    with location.open() as repo:
        released = release_holds(repo, list(snapshots))
    if as_json:
        print_json([{"snapshot": i, "released": r} for i, r in released])
        return
    for snapshot_id, was_held in released:
        click.echo(f"released {snapshot_id[:8]}" if was_held else f"{snapshot_id[:8]} was not held")


@cli.command()
@repo_options
@json_option
def holds(location: Location, as_json: bool) -> None:
    """List snapshots under legal hold."""
    from strongroom.commands.hold import load_holds
    with location.open() as repo:
        found = load_holds(repo)
    if as_json:
        print_json([h.to_json() for h in found.values()])
        return
    for h in found.values():
        click.echo(f"{h.snapshot[:8]} held since {h.time[:19]} by {h.username}@{h.hostname}: {h.reason}")
    click.echo(f"{len(found)} hold(s)")


@cli.command()
@repo_options
@no_lock_option
@click.argument("snapshots", nargs=-1)
@click.option("--mode", type=click.Choice(["restore-size", "raw-data"]), default="restore-size", show_default=True,
              help="restore-size: what a restore writes; raw-data: also the distinct stored blobs.")
@json_option
def stats(location: Location, snapshots: tuple[str, ...], mode: str, as_json: bool) -> None:
    """Sizes of SNAPSHOTS (default: all) and of the repository."""
    from strongroom.commands.stats import run_stats
    with location.open() as repo, byte_progress("stats", progress_enabled(as_json)) as progress:
        result = run_stats(repo, list(snapshots), mode=mode, progress=progress)
    if as_json:
        print_json(result.to_json())
        return
    click.echo(f"snapshots: {len(result.snapshots)}")
    click.echo(f"restore size: {human_bytes(result.restore_size)} in {result.files} files")
    if result.blobs is not None:
        click.echo(f"distinct blobs: {result.blobs} in {result.packs} packs, {human_bytes(result.raw_bytes)} raw, "
                   f"{human_bytes(result.stored_bytes)} stored")
        if result.compression_ratio:
            click.echo(f"compression ratio: {result.compression_ratio:.2f}x")
        if result.dedup_ratio:
            click.echo(f"deduplication ratio: {result.dedup_ratio:.2f}x")
    if result.repository_packs is not None:
        click.echo(f"repository: {result.repository_packs} packs, {human_bytes(result.repository_pack_bytes)}, "
                   f"{result.repository_blobs} blobs indexed")


@cli.command()
@repo_options
@no_lock_option
@click.argument("first")
@click.argument("second")
@json_option
def diff(location: Location, first: str, second: str, as_json: bool) -> None:
    """Show files added, removed and modified from snapshot FIRST to SECOND."""
    from strongroom.commands.diff import run_diff
    marks = {"added": "+", "removed": "-", "modified": "M", "metadata": "U"}
    with location.open() as repo:
        a, b = repo.find_snapshot(first), repo.find_snapshot(second)
        if as_json:
            # Streamed: a diff can be as large as the repository.
            click.echo(f'{{"first": "{a.id}", "second": "{b.id}", "changes": [', nl=False)
            sep = [""]

            def on_change(change) -> None:
                click.echo(sep[0] + json_text(change.to_json()), nl=False)
                sep[0] = ", "

            totals = run_diff(repo, a, b, on_change)
            click.echo(f'], "totals": {json.dumps(totals.__dict__, sort_keys=True)}}}')
            return

        def show(change) -> None:
            path = change.path.decode("utf-8", "backslashreplace") + ("/" if change.type == "dir" else "")
            sizes = ""
            if change.kind == "modified" and change.size_before is not None and change.size_after is not None:
                sizes = f"  ({change.size_after - change.size_before:+d} bytes)"
            click.echo(f"{marks[change.kind]}    {path}{sizes}")

        totals = run_diff(repo, a, b, show)
    t = totals
    click.echo(f"files: {t.added_files} added ({human_bytes(t.added_bytes)}), {t.removed_files} removed "
               f"({human_bytes(t.removed_bytes)}), {t.modified_files} modified, {t.metadata_changes} metadata only; "
               f"directories: {t.added_dirs} added, {t.removed_dirs} removed; size change {t.size_change:+d} bytes")


@cli.command()
@repo_options
@click.argument("snapshots", nargs=-1, required=True)
@click.option("--add", "add", multiple=True, metavar="TAG", help="Add this tag (repeatable).")
@click.option("--remove", "remove", multiple=True, metavar="TAG", help="Remove this tag (repeatable).")
@click.option("--set", "set_to", multiple=True, metavar="TAG", help="Replace all tags by these (repeatable; "
              "--set '' clears them).")
@json_option
def tag(location: Location, snapshots: tuple[str, ...], add: tuple[str, ...], remove: tuple[str, ...],
        set_to: tuple[str, ...], as_json: bool) -> None:
    """Change the tags of SNAPSHOTS (each changed snapshot gets a new id)."""
    from strongroom.commands.tag import run_tag
    target = None if not set_to else [t for t in set_to if t]
    with location.open() as repo:
        changes = run_tag(repo, list(snapshots), add=list(add), remove=list(remove), set_to=target)
    if as_json:
        print_json([{"old_id": c.old_id, "new_id": c.new_id, "tags": c.tags} for c in changes])
        return
    for c in changes:
        if c.new_id:
            click.echo(f"{c.old_id[:8]} -> {c.new_id[:8]}: tags {','.join(c.tags) or '(none)'}")
        else:
            click.echo(f"{c.old_id[:8]}: unchanged")
