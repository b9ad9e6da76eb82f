"""Repair use cases.

- ``rebuild_index``: new index files from the stored packs' headers, written before the old
  index files are deleted (an interruption leaves both, which is harmless: the index is their
  union). Packs that are gone drop out of the index, so a later backup stores their chunks
  again instead of deduplicating against copies that no longer exist: the repository heals.
- ``salvage_packs``: copy every blob of damaged packs that still verifies into new packs, index
  them, rebuild the index without the damaged packs, and only then delete those.
- ``repair_snapshots``: write new snapshots without the files (and unreadable directories)
  whose data is gone; the originals stay unless ``forget``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from strongroom.commands import Progress, ProgressCallback, ignore_progress
from strongroom.commands.read_data import read_header, read_pack
from strongroom.compression import compress_blob_with
from strongroom.errors import IntegrityError, ObjectNotFound, StrongroomError, UnsupportedFormat, UsageError
from strongroom.index import ScratchSet
from strongroom.indexfile import PackRecord
from strongroom.pack import DATA, TREE, PackWriter, pack_path
from strongroom.repository import Repository
from strongroom.snapshot import Snapshot
from strongroom.tree import ARCHIVE, DIR, FILE, encode_tree
from strongroom.writer import BlobWriter

INDEX_BATCH_BLOBS = 100_000
REPAIRED_TAG = "repaired"

Warn = Callable[[str], None] | None


@dataclass
class RebuildResult:
    packs: int = 0
    blobs: int = 0
    written: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"packs": self.packs, "blobs": self.blobs, "index_files_written": self.written,
                "index_files_removed": self.removed, "unreadable_packs": self.unreadable}


def rebuild_index(repo: Repository, *, exclude: set[str] = frozenset(), progress: ProgressCallback = ignore_progress,
                  warn: Warn = None, locked: bool = False, audit: bool = True) -> RebuildResult:
    """Replace all index files by new ones built from the pack headers (packs in ``exclude``
    left out)."""
    if not locked:
        with repo.lock(exclusive=True):
            return rebuild_index(repo, exclude=exclude, progress=progress, warn=warn, locked=True, audit=audit)
    result = RebuildResult()
    old = [name for name, _ in repo.storage.list("index")]
    batch: list[PackRecord] = []
    batch_blobs = 0
    done = 0
    for name, size in repo.storage.list("data"):
        pack = name.rsplit("/", 1)[1]
        if pack in exclude:
            continue
        try:
            envelope, entries = read_header(repo, pack, size)
        except ObjectNotFound:
            continue
        except (IntegrityError, UnsupportedFormat) as e:
            result.unreadable.append(pack)
            if warn:
                warn(f"left out of the index: {e} (try `strongroom repair packs {pack[:16]}`)")
            continue
        batch.append(PackRecord(pack, size, envelope, entries))
        batch_blobs += len(entries)
        result.packs += 1
        result.blobs += len(entries)
        done += 1
        progress(Progress(files=done))
        if batch_blobs >= INDEX_BATCH_BLOBS:
            result.written.append(repo.save_index(batch))
            batch, batch_blobs = [], 0
    if batch:
        result.written.append(repo.save_index(batch))
    # Only now that every new index file is stored may the old ones go.
    for name in old:
        if name.rsplit("/", 1)[1] in result.written:
            continue
        try:
            repo.storage.delete(name)
        except ObjectNotFound:
            pass
        result.removed.append(name)
    repo.sync_index()  # the cache notices the removed files and rebuilds from the new ones
    if audit:
        repo.audit("repair index", {"left_out": sorted(exclude)}, added=[f"index/{n}" for n in result.written],
                   removed=result.removed)
    return result


# -- repair packs ---------------------------------------------------------------------------------


@dataclass
class SalvageResult:
    damaged: list[str] = field(default_factory=list)
    new_packs: list[str] = field(default_factory=list)
    blobs_salvaged: int = 0
    blobs_lost: int = 0
    lost: list[str] = field(default_factory=list)  # blob ids (hex), first 10 000
    removed: list[str] = field(default_factory=list)
    rebuild: RebuildResult | None = None

    def to_json(self) -> dict:
        return {"damaged_packs": self.damaged, "new_packs": self.new_packs, "blobs_salvaged": self.blobs_salvaged,
                "blobs_lost": self.blobs_lost, "lost_blobs": self.lost, "removed_packs": self.removed,
                "index": self.rebuild.to_json() if self.rebuild else None}


def _resolve_packs(repo: Repository, selectors: list[str]) -> dict[str, int]:
    stored = {name.rsplit("/", 1)[1]: size for name, size in repo.storage.list("data")}
    indexed = {name: size for name, size in repo.index.iter_packs()}
    chosen: dict[str, int] = {}
    for sel in selectors:
        sel = sel.strip().lower().rsplit("/", 1)[-1]
        if len(sel) < 4 or any(c not in "0123456789abcdef" for c in sel):
            raise UsageError(f"invalid pack name {sel!r}: give a hex name or a prefix of at least 4 digits")
        matches = sorted({p for p in (*stored, *indexed) if p.startswith(sel)})
        if not matches:
            raise UsageError(f"no pack named {sel}")
        if len(matches) > 1:
            raise UsageError(f"pack prefix {sel} is ambiguous ({len(matches)} matches)")
        chosen[matches[0]] = stored.get(matches[0], -1)  # -1: already missing
    return chosen


class _Salvager:
    """Re-packs verified blobs (re-encrypted under a new pack key at their new offsets)."""

    def __init__(self, repo: Repository, result: SalvageResult) -> None:
        self.repo = repo
        self.result = result
        self.writers: dict[int, PackWriter] = {}
        self.records: list[PackRecord] = []

    def add(self, entry, payload: bytes, plaintext: bytes) -> None:
        writer = self.writers.get(entry.type)
        if writer is None:
            writer = self.writers[entry.type] = PackWriter(self.repo.master)
        if entry.group_length:
            # A verified member of a group, salvaged on its own (its siblings may be damaged):
            # compressed again, alone, with the group's dictionary (spec "Grouped blobs": repair).
            zdict = self.repo.dictionaries.get(entry.dictionary) if entry.dictionary else None
            code, dict_id, payload = compress_blob_with(plaintext, self.repo.config.compression_level,
                                                        entry.dictionary, zdict)
            writer.add(entry.id, entry.type, code, payload, entry.raw_length, dict_id)
        else:
            writer.add(entry.id, entry.type, entry.compression, payload, entry.raw_length, entry.dictionary)
        self.result.blobs_salvaged += 1
        if writer.size >= self.repo.config.pack_size:
            self.seal(entry.type)

    def seal(self, blob_type: int) -> None:
        writer = self.writers.pop(blob_type)
        name, data = writer.finish()
        self.repo.store_pack(name, data)
        self.records.append(PackRecord(name, len(data), writer.envelope, writer.entries))
        self.result.new_packs.append(name)

    def finish(self) -> None:
        for blob_type in (DATA, TREE):
            if blob_type in self.writers and self.writers[blob_type].entries:
                self.seal(blob_type)
        if self.records:
            self.repo.save_index(self.records)  # the salvaged copies are indexed before anything is deleted


def salvage_packs(repo: Repository, selectors: list[str], *, warn: Warn = None) -> SalvageResult:
    result = SalvageResult()
    with repo.lock(exclusive=True):
        repo.sync_index()
        packs = _resolve_packs(repo, selectors)
        salvager = _Salvager(repo, result)
        for pack, size in packs.items():
            result.damaged.append(pack)
            if size < 0:
                lost_ids = [e.id for e in repo.index.pack_entries(pack)]
            else:
                report = read_pack(repo, pack, size, on_blob=salvager.add)
                lost_ids = [b for b, _ in report.bad_blobs]
                for problem in report.problems:
                    if warn:
                        warn(f"pack {pack[:16]}: {problem}")
            result.blobs_lost += len(lost_ids)
            result.lost += [b.hex() for b in lost_ids][: max(0, 10_000 - len(result.lost))]
        salvager.finish()
        result.rebuild = rebuild_index(repo, exclude=set(packs), warn=warn, locked=True, audit=False)
        for pack, size in packs.items():
            if size < 0:
                continue
            try:
                repo.storage.delete(pack_path(pack))
            except ObjectNotFound:
                pass
            result.removed.append(pack)
        repo.audit("repair packs", {"packs": sorted(packs), "blobs_lost": result.blobs_lost},
                   added=[pack_path(p) for p in result.new_packs] + [f"index/{n}" for n in result.rebuild.written],
                   removed=[pack_path(p) for p in result.removed] + result.rebuild.removed)
    return result


# -- repair snapshots -----------------------------------------------------------------------------


@dataclass
class SnapshotRepairResult:
    rewritten: dict[str, str | None] = field(default_factory=dict)  # old id -> new id (None: dry run)
    removed_paths: list[str] = field(default_factory=list)  # "<snapshot> <path>: why"
    unrepairable: list[str] = field(default_factory=list)
    forgotten: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)  # originals kept despite --forget: under legal hold

    def to_json(self) -> dict:
        return {"rewritten": self.rewritten, "removed": self.removed_paths, "unrepairable": self.unrepairable,
                "forgotten": self.forgotten, "held": self.held}


@dataclass
class _Frame:
    tree_id: bytes
    path: str
    nodes: list
    pos: int = 0
    kept: list = field(default_factory=list)
    changed: bool = False


class _TreeRepairer:
    def __init__(self, repo: Repository, writer: BlobWriter, stored_packs: set[str]) -> None:
        self.repo = repo
        self.writer = writer
        self.stored = stored_packs
        self.clean = ScratchSet()
        self.replaced: dict[bytes, bytes] = {}  # damaged tree id -> repaired tree id

    def available(self, blob_id: bytes) -> bool:
        location = self.repo.index.lookup(blob_id)
        return location is not None and location.pack in self.stored

    def file_ok(self, node) -> str | None:
        try:
            if node.type == ARCHIVE:  # all or nothing: a partial archive cannot be rebuilt
                for blob_id in self.repo.archive_all_blobs(node):
                    if not self.available(blob_id):
                        return f"archive blob {blob_id.hex()[:16]} lost"
                return None
            for list_id in node.content_lists:
                if not self.available(list_id):
                    return f"chunk list {list_id.hex()[:16]} lost"
            for blob_id in self.repo.file_chunks(node):
                if not self.available(blob_id):
                    return f"chunk {blob_id.hex()[:16]} lost"
        except StrongroomError as e:
            return str(e)
        return None

    def load(self, tree_id: bytes) -> list:
        if not self.available(tree_id):
            raise IntegrityError(f"tree {tree_id.hex()[:16]} lost")
        return self.repo.load_tree(tree_id)

    def repair(self, root: bytes, removed: list[str]) -> bytes | None:
        """The id of a repaired copy of ``root``, or None if nothing below it is lost."""
        if root in self.clean:
            return None
        if root in self.replaced:
            return self.replaced[root]
        stack = [_Frame(root, "/", self.load(root))]
        while True:
            frame = stack[-1]
            if frame.pos == len(frame.nodes):
                stack.pop()
                new_id = None
                if frame.changed:
                    new_id = self.writer.add(TREE, encode_tree(frame.kept))[0]
                    self.replaced[frame.tree_id] = new_id
                else:
                    self.clean.add(frame.tree_id)
                if not stack:
                    return new_id
                parent = stack[-1]
                node = parent.nodes[parent.pos]
                if new_id is not None:
                    node.subtree = new_id
                    parent.changed = True
                parent.kept.append(node)
                parent.pos += 1
                continue
            node = frame.nodes[frame.pos]
            path = f"{frame.path.rstrip('/')}/{node.name.decode('utf-8', 'backslashreplace')}"
            if node.type == DIR and node.subtree not in self.clean:
                if node.subtree in self.replaced:
                    node.subtree = self.replaced[node.subtree]
                    frame.changed = True
                else:
                    try:
                        stack.append(_Frame(node.subtree, path, self.load(node.subtree)))
                        continue  # the child frame appends this node when it is done
                    except StrongroomError as e:
                        removed.append(f"{path}: directory unreadable ({e})")
                        frame.changed = True
                        frame.pos += 1
                        continue
            elif node.type in (FILE, ARCHIVE):
                why = self.file_ok(node)
                if why is not None:
                    removed.append(f"{path}: {why}")
                    frame.changed = True
                    frame.pos += 1
                    continue
            frame.kept.append(node)
            frame.pos += 1

    def close(self) -> None:
        self.clean.close()


def _repair_catalog(fixer: _TreeRepairer, snap: Snapshot, removed: list[str]) -> str | None:
    """The snapshot's message catalogue without its lost parts (dropped whole if its root is
    lost: `messages index` builds it again from the snapshot's files)."""
    roots = snap.root_trees()[1:]
    if not roots:
        return None
    lost: list[str] = []
    try:
        fixed = fixer.repair(roots[0], lost)
    except StrongroomError as e:
        removed.append(f"message catalogue: unreadable, dropped ({e})")
        return None
    removed.extend(f"message catalogue {line}" for line in lost)
    return fixed.hex() if fixed is not None else snap.catalog


def repair_snapshots(repo: Repository, *, forget: bool = False, dry_run: bool = False,
                     warn: Warn = None) -> SnapshotRepairResult:
    result = SnapshotRepairResult()
    with repo.lock(exclusive=forget and not dry_run):
        repo.sync_index()
        stored = {name.rsplit("/", 1)[1] for name, _ in repo.storage.list("data")}
        with BlobWriter(repo, dry_run=dry_run) as writer:
            fixer = _TreeRepairer(repo, writer, stored)
            try:
                pending: list[tuple[Snapshot, bytes, str | None]] = []
                for snap in repo.snapshots():
                    removed: list[str] = []
                    try:
                        new_root = fixer.repair(bytes.fromhex(snap.tree), removed)
                    except StrongroomError as e:
                        result.unrepairable.append(f"snapshot {snap.short_id}: root tree unreadable ({e})")
                        if warn:
                            warn(result.unrepairable[-1])
                        continue
                    catalog = _repair_catalog(fixer, snap, removed)
                    if new_root is None and catalog == snap.catalog:
                        continue
                    result.removed_paths += [f"{snap.short_id} {line}" for line in removed]
                    pending.append((snap, new_root or bytes.fromhex(snap.tree), catalog))
                writer.flush()  # trees are in stored, indexed packs before any snapshot names them
            finally:
                fixer.close()
        existing = {(s.tree, s.time, s.hostname, tuple(s.paths)): s.id for s in repo.snapshots()
                    if REPAIRED_TAG in s.tags}
        from strongroom.commands.hold import load_holds
        holds = load_holds(repo) if forget else {}

        def forget_original(snap_id: str) -> None:
            if snap_id in holds:  # a legal hold outranks --forget: keep it, say so
                result.held.append(snap_id)
                if warn:
                    warn(f"snapshot {snap_id[:8]} is under legal hold: original kept")
                return
            repo.storage.delete(f"snapshots/{snap_id}")
            result.forgotten.append(snap_id)
        for snap, new_root, catalog in pending:
            if dry_run:
                result.rewritten[snap.id] = None
                continue
            done = existing.get((new_root.hex(), snap.time, snap.hostname, tuple(snap.paths)))
            if done is not None:  # repaired by an earlier run: do not write a duplicate
                result.rewritten[snap.id] = done
                if forget:
                    forget_original(snap.id)
                continue
            new = Snapshot(time=snap.time, hostname=snap.hostname, username=snap.username, paths=snap.paths,
                           tree=new_root.hex(), tags=sorted(set(snap.tags) | {REPAIRED_TAG}), parent=snap.parent,
                           summary=snap.summary, catalog=catalog)
            result.rewritten[snap.id] = repo.save_rewritten_snapshot(new, snap)  # keeps its chain position
            if forget:
                forget_original(snap.id)
        if not dry_run and (result.rewritten or result.forgotten):
            repo.audit("repair snapshots", {"forget": forget},
                       added=[f"snapshots/{i}" for i in result.rewritten.values() if i],
                       removed=[f"snapshots/{i}" for i in result.forgotten])
    return result
