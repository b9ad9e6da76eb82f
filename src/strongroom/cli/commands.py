"""The click commands. Each one opens the repository, calls one use case, prints the result.

Use cases and the repository layer are imported in the commands, most while the key derivation
runs (``Location.open(imports=...)``): importing them here would put every one of them before it
in every command's start-up."""

from __future__ import annotations

import dataclasses
import os
import sys

import click

from typing import TYPE_CHECKING

from strongroom import __version__
from strongroom.cli.context import (Location, from_password_options, human_bytes, json_option, no_lock_option,
                                    print_json, repo_options, source_location, warn)
from strongroom.cli.lazy import LazyGroup
from strongroom.cli.progress import byte_progress, progress_enabled
from strongroom.errors import EXIT_ERROR, EXIT_PARTIAL, UsageError

if TYPE_CHECKING:
    from strongroom.chunker import ChunkerParams


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="strongroom")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
def cli(debug: bool) -> None:
    """strongroom: deduplicating, encrypted backups for chat exports and knowledge bases."""


# They register their commands on cli when imported: a module once one of its commands is asked
# for, all when all are listed (cli/lazy.py).
cli.command_modules = tuple(f"strongroom.cli.{name}" for name in
                            ("copy", "drill", "integrity", "keys", "messages", "operations", "retention"))
cli.command_homes = {name: f"strongroom.cli.{module}" for module, names in {
    "copy": ["copy"], "drill": ["drill"], "integrity": ["repair"], "keys": ["key", "log", "receipt"],
    "messages": ["messages"], "operations": ["run", "schedule"],
    "retention": ["forget", "prune", "hold", "release", "holds", "stats", "diff", "tag"]}.items() for name in names}


def _size(text: str) -> int:
    units = {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = text[-1] if text and text[-1] in "KMG" else ""
    try:
        return int(float(text[: len(text) - len(unit)]) * units[unit])
    except ValueError:
        raise UsageError(f"invalid size {text!r}") from None


def _chunk_sizes(text: str | None, default: ChunkerParams) -> ChunkerParams:
    if text is None:
        return default
    parts = text.split(":")
    if len(parts) != 3:
        raise UsageError(f"chunk sizes must be MIN:AVG:MAX (e.g. 4K:16K:64K), not {text!r}")
    try:
        from strongroom.chunker import ChunkerParams
        return ChunkerParams(*(_size(p) for p in parts))
    except ValueError as e:
        raise UsageError(str(e)) from None


def _group_sizes(size: str | None, member_max: str | None) -> dict:
    """Config fields for --group-size/--group-member-max, checked as the config reader checks them."""
    from strongroom.config import DEFAULT_GROUP_MEMBER_MAX, MAX_GROUP_SIZE
    group = 0 if size is None else _size(size)
    if group == 0:
        if member_max is not None:
            raise UsageError("--group-member-max needs groups (--group-size above 0)")
        return {"group_size": 0, "group_member_max": 0}
    member = min(DEFAULT_GROUP_MEMBER_MAX, group) if member_max is None else _size(member_max)
    if not 1024 <= group <= MAX_GROUP_SIZE:
        raise UsageError(f"--group-size must be 0 or between 1K and {MAX_GROUP_SIZE // 1024}K")
    if not 64 <= member <= group:
        raise UsageError("--group-member-max must be between 64 bytes and --group-size")
    return {"group_size": group, "group_member_max": member}


@cli.command()
@repo_options
@click.option("--text-chunks", metavar="MIN:AVG:MAX",
              help="Chunk sizes for text content (default 4K:16K:64K; 2K:8K:32K with --group-size).")
@click.option("--binary-chunks", metavar="MIN:AVG:MAX", help="Chunk sizes for binary content (default 256K:1M:4M).")
@click.option("--compression-level", type=click.IntRange(0, 22), default=3, show_default=True,
              help="zstd level for blobs (0 stores them uncompressed).")
@click.option("--kdf-memory", type=click.IntRange(8, 4 * 1024 * 1024), default=65536, show_default=True,
              metavar="KIB", help="Argon2id memory for the key file, in KiB.")
@click.option("--kdf-iterations", type=click.IntRange(1, 100),
              help="Argon2id passes for the key file (default: calibrated to take about 0.5 s here).")
@click.option("--record-boundaries/--no-record-boundaries", default=None,
              help="End text chunks at message/record boundaries (JSONL lines, JSON array elements, "
                   "chat lines), spec 7.4. Default: off (or as the --copy-chunker-params-from repository).")
@click.option("--group-size", metavar="SIZE", help="Store new small text chunks in groups of about this many bytes, "
              "compressed and encrypted together (spec 24), e.g. 64K: a smaller repository for more backup and "
              "restore CPU. Default 0 (off).")
@click.option("--group-member-max", metavar="SIZE", help="Largest chunk put in a group (default 32K).")
@click.option("--copy-chunker-params-from", "chunker_source", metavar="URL",
              help="Chunk like this repository, so `copy` between the two deduplicates.")
@from_password_options
@json_option
def init(location: Location, text_chunks: str | None, binary_chunks: str | None, compression_level: int,
         kdf_memory: int, kdf_iterations: int | None, record_boundaries: bool | None, group_size: str | None,
         group_member_max: str | None, chunker_source: str | None, from_password_file: str | None,
         from_password_command: str | None, as_json: bool) -> None:
    """Create a new repository.

    An init that was interrupted (the location has no config yet) is completed by running it again;
    a location holding a repository or files of its own is refused and left untouched."""
    from strongroom.chunker import ChunkingProfiles
    from strongroom.config import GROUPED_TEXT_CHUNKS, Config
    from strongroom.repository import Repository
    groups = _group_sizes(group_size, group_member_max)
    defaults = ChunkingProfiles()
    if groups["group_size"]:  # small text chunks are what groups are for
        defaults = ChunkingProfiles(GROUPED_TEXT_CHUNKS, defaults.binary, defaults.records)
    if chunker_source:
        if text_chunks or binary_chunks:
            raise UsageError("--copy-chunker-params-from cannot be combined with --text-chunks/--binary-chunks")
        with source_location(chunker_source, from_password_file, from_password_command, location).open() as src:
            defaults = src.config.chunking
    config = Config(chunking=ChunkingProfiles(_chunk_sizes(text_chunks, defaults.text),
                                              _chunk_sizes(binary_chunks, defaults.binary),
                                              defaults.records if record_boundaries is None else record_boundaries),
                    compression_level=compression_level, **groups)
    from strongroom.cli.keys import DEFAULT_KDF_SECONDS, kdf_params
    kdf = kdf_params(kdf_memory, kdf_iterations, DEFAULT_KDF_SECONDS)
    with Repository.init(location.storage(), location.password(confirm=True), config=config, kdf=kdf) as repo:
        if as_json:
            print_json({"id": repo.config.id, "repository": location.url})
        else:
            click.echo(f"created repository {repo.config.id[:8]} at {location.url}")


@cli.command()
@repo_options
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--tag", "tags", multiple=True, help="Tag the snapshot (repeatable).")
@click.option("--host", help="Record this host name instead of the machine's.")
@click.option("--exclude", "excludes", multiple=True, metavar="GLOB", help="Skip matching paths (repeatable).")
@click.option("--exclude-file", "exclude_files", multiple=True, type=click.Path(dir_okay=False),
              help="Read exclude patterns from a file, one per line.")
@click.option("--parent", metavar="SNAPSHOT", help="Compare against this snapshot instead of the latest.")
@click.option("--force", is_flag=True, help="Re-read every file, even if its metadata is unchanged.")
@click.option("--dry-run", "-n", is_flag=True, help="Do everything but write to the repository.")
@click.option("--stdin", "use_stdin", is_flag=True, help="Back up standard input as one file.")
@click.option("--stdin-filename", default="stdin", show_default=True, help="File name for --stdin data.")
@click.option("--stdin-from-command", is_flag=True,
              help="Back up the output of the command given after `--`; it must exit 0.")
@click.option("--catalog/--no-catalog", default=True, show_default=True,
              help="Catalogue the messages of recognised chat exports (see `strongroom messages`).")
@click.option("--expand-archives", is_flag=True,
              help="Store zip, tar, tar.gz and tar.zst files member by member, so members deduplicate "
                   "across days; restore still gives back the original file.")
@json_option
def backup(location: Location, paths: tuple[str, ...], tags: tuple[str, ...], host: str | None,
           excludes: tuple[str, ...], exclude_files: tuple[str, ...], parent: str | None, force: bool,
           dry_run: bool, use_stdin: bool, stdin_filename: str, stdin_from_command: bool, catalog: bool,
           expand_archives: bool,
           as_json: bool) -> None:
    """Back up PATHS (or standard input, or a command's output) into a new snapshot.

    Exits 3 when the snapshot was written but some files could not be read."""
    from strongroom.globs import read_pattern_file
    patterns = list(excludes)
    for f in exclude_files:
        try:
            patterns += read_pattern_file(f)
        except OSError as e:
            raise UsageError(f"cannot read exclude file {f}: {e.strerror}") from None
    if use_stdin and stdin_from_command:
        raise UsageError("use either --stdin or --stdin-from-command")
    if stdin_from_command and not paths:
        raise UsageError("--stdin-from-command needs a command after `--`")
    if use_stdin and paths:
        raise UsageError("--stdin takes no paths")
    with (location.open(imports=("strongroom.commands.backup",)) as repo,
          byte_progress("backup", progress_enabled(as_json)) as progress):
        from strongroom.commands.backup import BackupOptions, run_backup  # imported while the key derived
        opts = BackupOptions(
            paths=[] if stdin_from_command else list(paths), tags=list(tags), hostname=host, excludes=patterns,
            parent=parent, force=force, dry_run=dry_run, stdin=sys.stdin.buffer if use_stdin else None,
            stdin_filename=stdin_filename, stdin_command=list(paths) if stdin_from_command else None,
            expand_archives=expand_archives, catalog=catalog)
        result = run_backup(repo, opts, progress=progress, warn=warn)
    s = result.summary
    if as_json:
        doc = {"dry_run": result.dry_run, "summary": s.__dict__, "warnings": result.warnings}
        if expand_archives:
            doc["archives"] = result.archives
        if result.snapshot:
            doc["snapshot"] = _snapshot_json(result.snapshot)
        print_json(doc)
    else:
        click.echo(f"files: {s.files_new} new, {s.files_changed} changed, {s.files_unchanged} unchanged; "
                   f"{s.dirs} directories")
        click.echo(f"read {human_bytes(s.bytes_read)} of {human_bytes(s.bytes_total)}, "
                   f"added {human_bytes(s.bytes_added)} in {s.blobs_added} blobs, {s.duration_s:.2f} s")
        for a in result.archives:
            if a["stored"] == "members":
                click.echo(f"archive {a['path']}: {a['format']}, {a['members']} members, restores {a['fidelity']}")
        if result.snapshot:
            click.echo(f"snapshot {result.snapshot.short_id} saved"
                       + (" with a message catalogue" if result.snapshot.catalog else ""))
        else:
            click.echo("dry run: nothing written")
    if result.partial:
        raise SystemExit(EXIT_PARTIAL)


@cli.command()
@repo_options
@no_lock_option
@click.argument("snapshot")
@click.option("--target", "-t", required=True, type=click.Path(file_okay=False), help="Directory to restore into.")
@click.option("--include", "includes", multiple=True, metavar="GLOB", help="Restore only matching paths.")
@click.option("--exclude", "excludes", multiple=True, metavar="GLOB", help="Do not restore matching paths.")
@click.option("--verify", is_flag=True, help="Read every restored file back and compare it with the snapshot.")
@click.option("--expand", is_flag=True,
              help="Restore archives stored member-wise as folders of their members instead of the original files.")
@json_option
def restore(location: Location, snapshot: str, target: str, includes: tuple[str, ...], excludes: tuple[str, ...],
            verify: bool, expand: bool, as_json: bool) -> None:
    """Restore SNAPSHOT (`latest` or an id prefix) under --target."""
    with location.open(imports=("strongroom.commands.restore",)) as repo:
        snap = repo.find_snapshot(snapshot)
        with byte_progress("restore", progress_enabled(as_json), snap.summary.bytes_total or None) as progress:
            from strongroom.commands.restore import run_restore
            result = run_restore(repo, snap, target, includes=list(includes), excludes=list(excludes),
                                 progress=progress, warn=warn, verify=verify, expand=expand)
    if as_json:
        doc = {"snapshot": snap.id, "target": target, "files": result.files, "dirs": result.dirs,
               "symlinks": result.symlinks, "bytes": result.bytes, "errors": result.errors}
        if verify:
            doc["verified"] = result.verified
        if result.archives:
            doc["archives"] = result.archives
        print_json(doc)
    else:
        click.echo(f"restored snapshot {snap.short_id} to {target}: {result.files} files, {result.dirs} directories, "
                   f"{human_bytes(result.bytes)}" + (f"; {result.verified} files verified" if verify else ""))
        for a in result.archives:
            how = {"identical": "byte-identical original", "expanded": "members, as a folder",
                   "equivalent": "equivalent (same members and tar stream; compressed bytes differ)"}[a["restored"]]
            click.echo(f"archive {a['path']}: {a['format']}, {how}")
    if result.errors:
        if not as_json:
            click.echo(f"strongroom: {len(result.errors)} item(s) could not be restored", err=True)
        raise SystemExit(EXIT_ERROR)


def _snapshot_json(snap) -> dict:
    doc = snap.to_json()
    doc.update(id=snap.id, short_id=snap.short_id)
    return doc


@cli.command()
@repo_options
@click.option("--tag", "tags", multiple=True, help="Only snapshots with this tag (repeatable: any of them).")
@click.option("--host", "hosts", multiple=True, help="Only snapshots from this host (repeatable).")
@json_option
def snapshots(location: Location, tags: tuple[str, ...], hosts: tuple[str, ...], as_json: bool) -> None:
    """List snapshots, oldest first."""
    with location.open() as repo:
        snaps = [s for s in repo.snapshots()
                 if (not tags or set(tags) & set(s.tags)) and (not hosts or s.hostname in hosts)]
    if as_json:
        print_json([_snapshot_json(s) for s in snaps])
        return
    click.echo(f"{'ID':8}  {'Time':19}  {'Host':16}  {'Tags':16}  Paths")
    for s in snaps:
        click.echo(f"{s.short_id:8}  {s.time[:19].replace('T', ' '):19}  {s.hostname[:16]:16}  "
                   f"{','.join(s.tags)[:16]:16}  {' '.join(s.paths)}")
    click.echo(f"{len(snaps)} snapshot(s)")


@cli.command(name="ls")
@repo_options
@click.argument("snapshot")
@click.argument("path", required=False)
@click.option("--long", "-l", "long_format", is_flag=True, help="Show mode, size and time.")
@json_option
def ls_command(location: Location, snapshot: str, path: str | None, long_format: bool, as_json: bool) -> None:
    """List the files in SNAPSHOT, or only below PATH."""
    with location.open(imports=("strongroom.commands.ls",)) as repo:
        snap = repo.find_snapshot(snapshot)
        from strongroom.commands.ls import list_snapshot  # imported while the key derivation ran
        entries = list_snapshot(repo, snap, path)
        if as_json:
            print_json([e.to_json() for e in entries])
            return
        for e in entries:
            name = os.fsdecode(e.path)
            if long_format:
                import stat
                from datetime import datetime
                kind = {"dir": "d", "symlink": "l", "archive": "a"}.get(e.node.type, "-")
                when = datetime.fromtimestamp(e.node.mtime_ns / 1e9).strftime("%Y-%m-%d %H:%M:%S")
                perms = stat.filemode(e.node.mode)[1:]
                suffix = f" -> {os.fsdecode(e.node.target)}" if e.node.target is not None else ""
                if e.node.archive is not None:
                    suffix = f"  [{e.node.archive.format}, {e.node.archive.members} members]"
                click.echo(f"{kind}{perms} {e.node.size:>12} {when} {name}{suffix}")
            else:
                click.echo(name)


@cli.command()
@repo_options
@no_lock_option
@click.option("--read-data", is_flag=True, help="Also read every pack and verify every blob (slow).")
@click.option("--read-data-subset", "subset", metavar="SPEC",
              help="Read only some packs: N% (random), n/t (part n of t, by pack name), or a size such as 2G.")
@click.option("--chain", is_flag=True, help="Instead: verify snapshot signatures, the snapshot chain and the audit log.")
@click.option("--receipt", metavar="HASH", help="Instead: prove the history a `strongroom receipt` covered is intact.")
@json_option
def check(location: Location, read_data: bool, subset: str | None, chain: bool, receipt: str | None,
          as_json: bool) -> None:
    """Check the repository: snapshots, trees, index and packs; with --read-data, all data."""
    if chain or receipt:
        from strongroom.cli.keys import check_history
        return check_history(location, chain, receipt, as_json)
    from strongroom.cli.integrity import data_progress, print_check
    spec = None
    if subset is not None:  # validated before the repository is opened
        from strongroom.commands.read_data import Subset
        spec = Subset.parse(subset)
    with location.open(imports=("strongroom.commands.check",)) as repo:
        with data_progress("check", progress_enabled(as_json) and (read_data or spec is not None)) as progress:
            from strongroom.commands.check import run_check
            result = run_check(repo, read_data=read_data, subset=spec, progress=progress)
    print_check(result, as_json)
    if not result.ok:
        raise SystemExit(EXIT_ERROR)


@cli.command()
@repo_options
@click.argument("kind", type=click.Choice(["config", "snapshot", "tree", "index", "key"]))
@click.argument("object_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="Accepted for uniformity: cat always prints JSON.")
def cat(location: Location, kind: str, object_id: str | None, as_json: bool) -> None:
    """Print a repository object as JSON (for debugging): config, snapshot ID, tree ID, index ID, key ID."""
    from strongroom.commands.cat import cat_object
    with location.open() as repo:
        print_json(cat_object(repo, kind, object_id))


@cli.command()
@repo_options
@click.option("--remove-all", is_flag=True, help="Remove every lock, not only stale ones (dangerous).")
@json_option
def unlock(location: Location, remove_all: bool, as_json: bool) -> None:
    """Remove stale locks (of dead processes, or not refreshed for 30 minutes)."""
    from strongroom.locking import remove_stale_locks
    with location.open() as repo:
        removed = remove_stale_locks(repo, remove_all=remove_all)
    if as_json:
        print_json({"removed": [dataclasses.asdict(lk) for lk in removed]})
        return
    click.echo(f"removed {len(removed)} lock(s)")
    for lk in removed:
        click.echo(f"  {lk.describe()}")


@cli.command()
@click.option("--dir", "workdir", type=click.Path(file_okay=False), default="strongroom-demo", show_default=True,
              help="Where to put the sample export, repository and restore.")
@click.option("--days", type=click.IntRange(1, 60), default=5, show_default=True, help="Nights to simulate.")
@json_option
def demo(workdir: str, days: int, as_json: bool) -> None:
    """Generate a sample chat export, back it up over several nights, restore and verify it."""
    from strongroom.commands.demo import run_demo
    report = run_demo(workdir, days, progress=None if as_json else click.echo)
    if as_json:
        print_json(report)
    if not report["verified"]:
        raise SystemExit(EXIT_ERROR)
