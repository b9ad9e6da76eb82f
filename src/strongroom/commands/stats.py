"""Stats: how big snapshots are when restored, and what they cost in the repository.

- ``restore-size``: files and bytes a restore of each snapshot would write, summed over the
  selected snapshots (a file in two snapshots counts twice);
- ``raw-data``: additionally the distinct blobs they reference: count, plaintext bytes, stored
  bytes (compressed and encrypted) and the packs holding them, and from these the compression
  ratio (plaintext / stored) and the deduplication ratio (restore size / distinct plaintext).

Subtree totals are memoised and distinct blobs counted in on-disk ScratchTables, so memory does
not grow with the repository.
"""

from __future__ import annotations

import struct
from dataclasses import asdict, dataclass, field

from strongroom.commands import Progress, ProgressCallback, ignore_progress
from strongroom.index import ScratchTable
from strongroom.repository import Repository
from strongroom.snapshot import Snapshot
from strongroom.tree import ARCHIVE, DIR, FILE

MODES = ("restore-size", "raw-data")
_TOTALS = struct.Struct("<QQ")  # files, bytes


@dataclass
class StatsResult:
    mode: str
    snapshots: list[str] = field(default_factory=list)
    files: int = 0
    restore_size: int = 0
    blobs: int | None = None
    raw_bytes: int | None = None
    stored_bytes: int | None = None
    packs: int | None = None
    # The whole repository (only when no snapshot was selected):
    repository_packs: int | None = None
    repository_pack_bytes: int | None = None
    repository_blobs: int | None = None

    @property
    def compression_ratio(self) -> float | None:
        return self.raw_bytes / self.stored_bytes if self.stored_bytes else None

    @property
    def dedup_ratio(self) -> float | None:
        return self.restore_size / self.raw_bytes if self.raw_bytes else None

    def to_json(self) -> dict:
        doc = {k: v for k, v in asdict(self).items() if v is not None}
        if self.compression_ratio is not None:
            doc["compression_ratio"] = round(self.compression_ratio, 4)
        if self.dedup_ratio is not None:
            doc["dedup_ratio"] = round(self.dedup_ratio, 4)
        return doc


def run_stats(repo: Repository, selectors: list[str] = (), *, mode: str = "restore-size",
              progress: ProgressCallback = ignore_progress) -> StatsResult:
    if mode not in MODES:
        raise ValueError(mode)
    with repo.lock(exclusive=False):
        repo.sync_index()
        snaps = [repo.find_snapshot(s) for s in selectors] if selectors else repo.snapshots()
        result = StatsResult(mode, [s.id for s in snaps])
        with ScratchTable(repo.scratch_folder()) as subtree_totals, ScratchTable(repo.scratch_folder()) as blobs:
            counter = _BlobCounter(repo, blobs) if mode == "raw-data" else None
            for snap in snaps:
                files, size = _tree_totals(repo, bytes.fromhex(snap.tree), subtree_totals, counter)
                if counter:  # the message catalogue is stored data, though not restored files
                    for root in snap.root_trees()[1:]:
                        _tree_totals(repo, root, subtree_totals, counter)
                result.files += files
                result.restore_size += size
                progress(Progress(files=result.files, bytes=result.restore_size, current=snap.short_id))
            if counter:
                result.blobs, result.raw_bytes, result.stored_bytes = counter.count, counter.raw, counter.stored
                result.packs = len(counter.packs)
        if not selectors:
            packs = list(repo.stored_packs())
            result.repository_packs = len(packs)
            result.repository_pack_bytes = sum(size for _, size in packs)
            result.repository_blobs = repo.index.counts()[0]
    return result


class _BlobCounter:
    def __init__(self, repo: Repository, seen: ScratchTable) -> None:
        self._repo = repo
        self._seen = seen
        self.count = self.raw = self.stored = 0
        self.packs: set[str] = set()  # one entry per pack: bounded by the pack count, not the blob count

    def add(self, blob_id: bytes) -> None:
        if not self._seen.add(blob_id):
            return
        location = self._repo.locate(blob_id)
        self.count += 1
        self.raw += location.entry.raw_length
        entry = location.entry
        # A group member (spec §24) owns its share of the group's ciphertext, by plaintext size,
        # so the members of one group add up to the group's stored length (give or take rounding).
        self.stored += entry.length * entry.raw_length // entry.group_length if entry.group_length else entry.length
        self.packs.add(location.pack)


def _tree_totals(repo: Repository, root: bytes, memo: ScratchTable, counter: _BlobCounter | None) -> tuple[int, int]:
    """(files, bytes) below ``root``: an explicit post-order walk, each subtree computed once."""
    cached = memo.get(root)
    if cached is not None:
        return _TOTALS.unpack(cached)
    # Frames: [tree id, child subtrees still to total, files, bytes]
    stack: list[list] = []

    def enter(tree_id: bytes) -> None:
        if counter:
            counter.add(tree_id)
        files = size = 0
        children = []
        for node in repo.load_tree(tree_id):
            if node.type == DIR:
                children.append(node.subtree)
            elif node.type in (FILE, ARCHIVE):  # an archive counts as the one file it restores to
                files += 1
                size += node.size
                if counter:
                    blobs = repo.archive_all_blobs(node) if node.type == ARCHIVE else repo.file_blobs(node)
                    for blob_id in blobs:
                        counter.add(blob_id)
        stack.append([tree_id, children, files, size])

    enter(root)
    while True:
        frame = stack[-1]
        if frame[1]:
            child = frame[1].pop()
            cached = memo.get(child)
            if cached is None:
                enter(child)
            else:
                files, size = _TOTALS.unpack(cached)
                frame[2] += files
                frame[3] += size
            continue
        stack.pop()
        memo.put(frame[0], _TOTALS.pack(frame[2], frame[3]))
        if not stack:
            return frame[2], frame[3]
        stack[-1][2] += frame[2]
        stack[-1][3] += frame[3]


def snapshot_label(snap: Snapshot) -> str:
    return f"{snap.short_id} {snap.time[:19].replace('T', ' ')} {snap.hostname}"
