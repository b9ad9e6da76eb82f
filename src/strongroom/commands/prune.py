"""Prune: delete data no snapshot references, repacking partly used packs.

Phases, all under the exclusive lock (see spec/repository-format.md, "Prune"):

1. **mark** every blob reachable from every snapshot into an on-disk ScratchTable;
2. **plan** from the index files: each used blob is *placed* in exactly one pack (the first
   listing it, in a fixed order); a pack with no placed blob is deleted, partly used packs are
   repacked (most wasteful first) until unused space is within ``max_unused``, bounded by
   ``max_repack_size``; small packs are merged;
3. **execute**, in this order, so that a crash at any point leaves every snapshot readable:
   new packs → new index files (the last one lists the replaced index files in ``supersedes``)
   → delete replaced index files → delete packs no remaining index file lists.

Memory: the reachable and placement sets live in LMDB; per-pack counters (a few dozen bytes per
pack) and one pack being repacked (about 16 MiB) are in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from strongroom.commands import Progress, ProgressCallback, ignore_progress
from strongroom.errors import IntegrityError, ObjectNotFound, StorageError, StrongroomError, UsageError
from strongroom.index import ScratchTable
from strongroom.indexfile import WIDE_ENTRY, PackRecord, open_index, open_index_raw, open_index_supersedes, seal_index
from strongroom.pack import (DATA, TREE, BlobEntry, GroupMemo, PackWriter, decode_entry, pack_cipher, pack_name,
                             pack_path, parse_header)
from strongroom.repository import Repository, object_name
from strongroom.tree import ARCHIVE, DIR, FILE

INDEX_FILE_MAX_BLOBS = 100_000
SMALL_PACK_FRACTION = 4  # a pack below pack_size / 4 is small
SMALL_PACKS_WORTH_MERGING = 10


@dataclass(frozen=True)
class MaxUnused:
    """How much unused space may remain: a fraction of the repository, a byte count, or any."""

    percent: float | None = None
    size: int | None = None

    @classmethod
    def parse(cls, text: str, parse_size) -> MaxUnused:
        text = text.strip().lower()
        if text == "unlimited":
            return cls()
        if text.endswith("%"):
            try:
                value = float(text[:-1])
            except ValueError:
                raise UsageError(f"invalid --max-unused {text!r}") from None
            if not 0 <= value < 100:
                raise UsageError("--max-unused percentage must be at least 0 and below 100")
            return cls(percent=value)
        return cls(size=parse_size(text))

    def allows(self, unused: int, total: int) -> bool:
        if self.size is not None:
            return unused <= self.size
        if self.percent is not None:
            return unused <= self.percent / 100 * total
        return True

    def __str__(self) -> str:
        return f"{self.percent:g}%" if self.percent is not None else str(self.size) if self.size is not None \
            else "unlimited"


@dataclass
class PruneOptions:
    max_unused: MaxUnused = field(default_factory=lambda: MaxUnused(percent=5.0))
    max_repack_size: int | None = None
    repack_small: bool = False
    dry_run: bool = False


@dataclass
class PackUse:
    size: int
    used_blobs: int = 0
    used_bytes: int = 0
    unused_blobs: int = 0
    unused_bytes: int = 0
    stored: bool = True

    @property
    def blob_bytes(self) -> int:
        return self.used_bytes + self.unused_bytes


@dataclass
class PrunePlan:
    snapshots: int = 0
    used_blobs: int = 0
    packs_before: int = 0
    bytes_before: int = 0
    unused_bytes_before: int = 0
    delete_packs: list[str] = field(default_factory=list)
    delete_bytes: int = 0
    repack_packs: list[str] = field(default_factory=list)
    repack_bytes: int = 0
    repack_used_bytes: int = 0  # what repacking copies into new packs
    orphan_packs: list[str] = field(default_factory=list)  # stored, listed by no index file
    orphan_bytes: int = 0
    rewrite_index_files: list[str] = field(default_factory=list)
    superseded_index_files: list[str] = field(default_factory=list)  # left by an interrupted prune
    unused_bytes_after: int = 0
    bytes_after: int = 0  # estimate: new packs' overhead is not counted

    def to_json(self) -> dict:
        doc = {k: v for k, v in self.__dict__.items() if not isinstance(v, list)}
        doc.update(delete_packs=len(self.delete_packs), repack_packs=len(self.repack_packs),
                   orphan_packs=len(self.orphan_packs), rewrite_index_files=len(self.rewrite_index_files),
                   superseded_index_files=len(self.superseded_index_files))
        return doc


@dataclass
class PruneResult:
    plan: PrunePlan
    dry_run: bool
    packs_written: int = 0
    bytes_written: int = 0
    index_files_written: int = 0
    index_files_deleted: int = 0
    packs_deleted: int = 0
    bytes_deleted: int = 0
    temporaries_removed: int = 0  # files of writers killed mid-store (local backends)
    sweep_error: str | None = None
    added: list[str] = field(default_factory=list)  # storage names, for the audit log
    removed: list[str] = field(default_factory=list)


#: Age after which a temporary object left in the storage is certainly a killed writer's.
STALE_TEMPORARY_S = 3600.0


def run_prune(repo: Repository, options: PruneOptions = PruneOptions(), *,
              progress: ProgressCallback = ignore_progress) -> PruneResult:
    with repo.lock(exclusive=True):
        repo.sync_index()
        if repo.damaged_index_files:
            raise StrongroomError(f"refusing to prune: {len(repo.damaged_index_files)} index file(s) are damaged "
                                  f"({repo.damaged_index_files[0]}); their packs would look unused. Run `check`")
        with ScratchTable(repo.scratch_folder()) as used, ScratchTable(repo.scratch_folder()) as placed:
            plan = PrunePlan()
            _mark(repo, used, plan, progress)
            uses, index_packs = _account(repo, used, placed, plan)
            _choose(repo, uses, index_packs, plan, options)
            result = PruneResult(plan, options.dry_run)
            if not options.dry_run:
                _execute(repo, placed, uses, index_packs, plan, result, progress)
                # Under the exclusive lock no writer is in flight, but a lock being taken by another
                # process is written through a temporary too: sweep only old ones.
                try:
                    result.temporaries_removed = repo.storage.sweep_temporaries(STALE_TEMPORARY_S)
                except StorageError as exc:  # housekeeping only: the prune itself has succeeded
                    result.sweep_error = str(exc)
                if result.added or result.removed:
                    repo.audit("prune", {"max_unused": str(options.max_unused),
                                         "max_repack_size": options.max_repack_size},
                               added=result.added, removed=result.removed)
    if not options.dry_run:
        repo.sync_index()
    return result


# -- mark ------------------------------------------------------------------------------------

def _mark(repo: Repository, used: ScratchTable, plan: PrunePlan, progress: ProgressCallback) -> None:
    """Record every tree, chunk-list and data blob reachable from any snapshot."""
    for snapshot_id in repo.snapshot_ids():
        snap = repo.load_snapshot(snapshot_id)  # an unreadable snapshot stops the prune: nothing is lost
        plan.snapshots += 1
        pending = snap.root_trees()  # the file tree and the message catalogue
        while pending:
            tree_id = pending.pop()
            if not used.add(tree_id):
                continue  # this subtree was already walked
            for node in repo.load_tree(tree_id):
                if node.type in (DIR, ARCHIVE):  # an archive's members are a tree too
                    pending.append(node.subtree)
                if node.type in (FILE, ARCHIVE):
                    for blob_id in repo.file_blobs(node):
                        used.add(blob_id)
            progress(Progress(files=len(used), current=snap.short_id))
    plan.used_blobs = len(used)


# -- plan ------------------------------------------------------------------------------------

def _read_index_files(repo: Repository) -> tuple[list[str], set[str]]:
    """Names of the index files in storage, and those superseded by another one (§ Prune)."""
    names, superseded = [], set()
    for path, _ in repo.storage.list("index"):
        name = path.rsplit("/", 1)[1]
        names.append(name)
        superseded.update(_load_index(repo, name, open_index_supersedes))
    names.sort()
    return names, superseded & set(names)


def _load_index(repo: Repository, name: str, opener=open_index):
    """The index file, opened by ``opener`` (open_index: its pack records and supersedes)."""
    path = f"index/{name}"
    data = repo.storage.load(path)
    if object_name(data) != name:
        raise IntegrityError(f"{path}: content does not match its name (damaged); refusing to prune")
    return opener(repo.master, data, path)


def _live_index_files(repo: Repository, plan: PrunePlan) -> list[str]:
    names, superseded = _read_index_files(repo)
    plan.superseded_index_files = sorted(superseded)
    return [n for n in names if n not in superseded]


def _account(repo: Repository, used: ScratchTable, placed: ScratchTable,
             plan: PrunePlan) -> tuple[dict[str, PackUse], dict[str, list[str]]]:
    """Per pack: bytes of placed (kept) blobs and of everything else. Also which packs each live
    index file lists."""
    stored = dict(repo.stored_packs())
    uses: dict[str, PackUse] = {}
    index_packs: dict[str, list[str]] = {}
    for name in _live_index_files(repo, plan):
        records, _ = _load_index(repo, name, open_index_raw)  # no Python object per blob
        packs = index_packs[name] = [pack_key.hex() for pack_key, *_ in records]
        for pack, (pack_key, size, _, block) in zip(packs, records):
            if pack in uses:
                continue  # the same pack listed again: counted once
            use = uses[pack] = PackUse(size, stored=pack in stored)
            for members in _raw_ranges(block):
                # A group (spec "Grouped blobs") is one ciphertext: used while any member is
                # placed here; its other members then cost nothing extra and go along.
                placed_here = sum(1 for e in members if use.stored and e[0] in used and placed.add(e[0], pack_key))
                if placed_here:
                    use.used_blobs += placed_here
                    use.used_bytes += members[0][_LENGTH]
                else:
                    use.unused_blobs += len(members)
                    use.unused_bytes += members[0][_LENGTH]
    if len(placed) != len(used):
        missing = next(k for k, _ in used.items() if k not in placed)
        raise IntegrityError(f"refusing to prune: {len(used) - len(placed)} referenced blob(s) are in no stored, "
                             f"indexed pack (first: {missing.hex()[:16]}); run `check`")
    for pack, size in stored.items():
        if pack not in uses:
            plan.orphan_packs.append(pack)
            plan.orphan_bytes += size
    plan.packs_before = len(stored)
    plan.bytes_before = sum(stored.values())
    plan.unused_bytes_before = sum(u.unused_bytes for u in uses.values() if u.stored)
    return uses, index_packs


def _choose(repo: Repository, uses: dict[str, PackUse], index_packs: dict[str, list[str]], plan: PrunePlan,
            options: PruneOptions) -> None:
    partly_used = []
    for pack, use in uses.items():
        if use.used_blobs == 0:
            plan.delete_packs.append(pack)
            plan.delete_bytes += use.size if use.stored else 0
        elif use.unused_blobs:
            partly_used.append(pack)
    budget = options.max_repack_size if options.max_repack_size is not None else float("inf")
    kept_bytes = sum(u.size for p, u in uses.items() if u.stored and u.used_blobs)
    unused = sum(uses[p].unused_bytes for p in partly_used)

    def repack(pack: str) -> bool:
        nonlocal budget, kept_bytes, unused
        use = uses[pack]
        if use.size > budget:
            return False
        budget -= use.size
        kept_bytes -= use.size - use.used_bytes
        unused -= use.unused_bytes
        plan.repack_packs.append(pack)
        plan.repack_bytes += use.size
        plan.repack_used_bytes += use.used_bytes
        return True

    # Most wasteful first: each repack then frees the most space per byte copied.
    for pack in sorted(partly_used, key=lambda p: (-uses[p].unused_bytes / uses[p].size, p)):
        if options.max_unused.allows(unused, kept_bytes):
            break
        repack(pack)
    small_limit = repo.config.pack_size // SMALL_PACK_FRACTION
    chosen = set(plan.repack_packs)
    small = sorted((p for p, u in uses.items() if u.stored and u.used_blobs and u.size < small_limit
                    and p not in chosen), key=lambda p: (uses[p].size, p))
    if len(small) + len(plan.repack_packs) >= 2 and (options.repack_small or len(small) >= SMALL_PACKS_WORTH_MERGING):
        for pack in small:
            repack(pack)
    plan.unused_bytes_after = unused
    plan.bytes_after = kept_bytes
    gone = set(plan.delete_packs) | set(plan.repack_packs)
    plan.rewrite_index_files = sorted(n for n, packs in index_packs.items() if gone.intersection(packs))


# -- execute ---------------------------------------------------------------------------------

class _Repacker:
    """Copies placed blobs, still compressed, into new packs (one open pack per blob type)."""

    def __init__(self, repo: Repository, result: PruneResult, index: _IndexWriter) -> None:
        self._repo = repo
        self._result = result
        self._index = index
        self._packers: dict[int, PackWriter] = {}

    def copy_pack(self, pack: str, placed: ScratchTable) -> None:
        what = f"pack {pack[:16]}"
        data = self._repo.storage.load(pack_path(pack))
        if pack_name(data) != pack:
            raise IntegrityError(f"{what}: content does not match its name; refusing to repack it (run `check`)")
        envelope, entries = parse_header(self._repo.master, data, len(data), what)
        cipher = pack_cipher(self._repo.master, envelope, what)
        key = bytes.fromhex(pack)
        memo = GroupMemo()
        for members in _ranges(entries):
            if not any(placed.get(e.id) == key for e in members):
                continue
            # Every member is verified, and a live group is copied whole: its payload unchanged,
            # re-encrypted at its new offset (members no snapshot needs stay until all do).
            entry = members[0]
            sealed = memoryview(data)[entry.offset:entry.offset + entry.length]
            for member in members:
                blob_what = f"blob {member.id.hex()[:16]} in {what}"
                try:
                    payload, _ = decode_entry(cipher, member, sealed, blob_what, self._repo.dictionaries.get,
                                              self._repo.master.blob_id, memo)
                except IntegrityError as e:
                    raise IntegrityError(f"{e}; refusing to repack it") from None
            packer = self._packers.get(entry.type)
            if packer is None:
                packer = self._packers[entry.type] = PackWriter(self._repo.master)
            packer.add_group([(m.id, m.raw_length) for m in members], entry.type, entry.compression, payload,
                             entry.dictionary)
            if packer.size >= self._repo.config.pack_size:
                self._seal(entry.type)

    def _seal(self, blob_type: int) -> None:
        packer = self._packers.pop(blob_type)
        name, data = packer.finish()
        self._repo.store_pack(name, data)
        self._result.added.append(pack_path(name))
        self._index.add(PackRecord(name, len(data), packer.envelope, packer.entries))
        self._result.packs_written += 1
        self._result.bytes_written += len(data)

    def finish(self) -> None:
        for blob_type in (DATA, TREE):
            if blob_type in self._packers:
                self._seal(blob_type)


def _execute(repo: Repository, placed: ScratchTable, uses: dict[str, PackUse], index_packs: dict[str, list[str]],
             plan: PrunePlan, result: PruneResult, progress: ProgressCallback) -> None:
    # 1. New packs, and index files listing them (without `supersedes`: until step 2 completes
    #    they only duplicate blobs that the old packs still hold).
    index = _IndexWriter(repo, result)
    repacker = _Repacker(repo, result, index)
    for i, pack in enumerate(plan.repack_packs):
        repacker.copy_pack(pack, placed)
        progress(Progress(files=i + 1, bytes=result.bytes_written, current=pack[:16]))
    repacker.finish()

    # 2. The surviving packs of every rewritten index file; the last index file written carries
    #    `supersedes`, so it exists only once everything the replaced files still need is listed.
    gone = set(plan.delete_packs) | set(plan.repack_packs)
    replaced = plan.rewrite_index_files + plan.superseded_index_files
    listed: set[str] = set()
    for name in plan.rewrite_index_files:
        for record in _load_index(repo, name)[0]:
            if record.name not in gone and record.name not in listed:
                listed.add(record.name)
                index.add(record)
    index.finish(replaced)

    # 3. Replaced index files: after this, no index file lists a pack that is about to go.
    for name in replaced:
        _delete(repo, f"index/{name}")
        result.index_files_deleted += 1
        result.removed.append(f"index/{name}")

    # 4. Packs that no index file lists any more (deleted, repacked, or orphans).
    for pack in plan.delete_packs + plan.repack_packs + plan.orphan_packs:
        if pack in uses and not uses[pack].stored:
            continue
        _delete(repo, pack_path(pack))
        result.removed.append(pack_path(pack))
        result.packs_deleted += 1
        result.bytes_deleted += uses[pack].size if pack in uses else 0
    result.bytes_deleted += plan.orphan_bytes


class _IndexWriter:
    """Writes pack records into index files of at most INDEX_FILE_MAX_BLOBS entries as they come."""

    def __init__(self, repo: Repository, result: PruneResult) -> None:
        self._repo = repo
        self._result = result
        self._batch: list[PackRecord] = []
        self._count = 0

    def add(self, record: PackRecord) -> None:
        if self._batch and self._count + len(record.entries) > INDEX_FILE_MAX_BLOBS:
            self._write([])
        self._batch.append(record)
        self._count += len(record.entries)

    def _write(self, supersedes: list[str]) -> None:
        data = seal_index(self._repo.master, self._batch, supersedes)
        name = f"index/{object_name(data)}"
        self._repo.storage.store(name, data)
        self._result.index_files_written += 1
        self._result.added.append(name)
        self._batch, self._count = [], 0

    def finish(self, supersedes: list[str]) -> None:
        # The batch is empty only if nothing was added at all: then the replaced index files list
        # nothing that survives, and no marker is needed before deleting them.
        if self._batch:
            self._write(supersedes)


_OFFSET, _LENGTH, _MEMBER_OFFSET, _GROUP_LENGTH = 4, 5, 7, 8  # fields of a WIDE_ENTRY record


def _raw_ranges(block: bytes) -> list[list[tuple]]:
    """``_ranges`` of a block of packed WIDE_ENTRY records, as tuples of their fields."""
    out: list[list[tuple]] = []
    for e in WIDE_ENTRY.iter_unpack(block):
        if e[_GROUP_LENGTH] and e[_MEMBER_OFFSET] and out and out[-1][0][_OFFSET] == e[_OFFSET]:
            out[-1].append(e)
        else:
            out.append([e])
    return out


def _ranges(entries: list[BlobEntry]) -> list[list[BlobEntry]]:
    """Entries (in pack order) by ciphertext: a plain blob alone, a group's members together."""
    out: list[list[BlobEntry]] = []
    for e in entries:
        if e.group_length and e.member_offset and out and out[-1][0].offset == e.offset:
            out[-1].append(e)
        else:
            out.append([e])
    return out


def _delete(repo: Repository, path: str) -> None:
    try:
        repo.storage.delete(path)
    except ObjectNotFound:
        pass


