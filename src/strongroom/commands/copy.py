"""The copy use case: copy snapshots from one repository into another (off-site copies).

Blob ids are keyed per repository (spec §4), so the same chunk has different ids in the source
and the destination: every copied tree is rewritten with destination ids, and a chunk's
destination id needs its plaintext. To avoid reading the source again on the next copy, a
persistent map source id → destination id is kept in the destination's local cache. A mapping
is trusted only if the destination's index still has that blob (prune may have removed it), and
is recorded only after the blobs it names are stored and indexed (after ``flush``), so a subtree
whose mapped tree the destination has is complete there and need not be walked again.

Chunk boundaries do not depend on keys: with the same chunker sizes (``init
--copy-chunker-params-from``), a copy's chunks are the ones a direct backup would make, so copies
and backups deduplicate against each other in the destination.
"""

from __future__ import annotations

import dataclasses

import os
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from strongroom.commands import Progress, ProgressCallback, ignore_progress
from strongroom.errors import SnapshotNotFound, StrongroomError
from strongroom.fetcher import BlobFetcher
from strongroom.pack import DATA, TREE
from strongroom.repository import Repository
from strongroom.snapshot import Snapshot
from strongroom.archives.format import ArchiveInfo, MemberData, decode_layout, encode_layout
from strongroom.tree import ARCHIVE, DIR, FILE, MAX_INLINE_CHUNKS, Node, decode_chunk_list, encode_tree
from strongroom.writer import BlobWriter, FileContent


@dataclass
class CopySelection:
    snapshot_ids: list[str] = field(default_factory=list)  # id prefixes or "latest"; empty = all
    hosts: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)  # a snapshot needs at least one of them


@dataclass
class CopiedSnapshot:
    source: str  # the source snapshot id
    copy: str | None  # the new snapshot id in the destination; None if it was there already


@dataclass
class CopyResult:
    copied: list[CopiedSnapshot] = field(default_factory=list)
    skipped: list[CopiedSnapshot] = field(default_factory=list)
    blobs_read: int = 0  # blobs read from the source (not found via the id map)
    blobs_added: int = 0  # blobs the destination lacked
    bytes_added: int = 0  # their stored size in the destination
    duration_s: float = 0.0


class IdMap:
    """Persistent source blob id → destination blob id, in an SQLite file in the cache."""

    def __init__(self, path: str) -> None:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        try:
            self._db = sqlite3.connect(path, timeout=60)
            self._db.execute("CREATE TABLE IF NOT EXISTS ids (src BLOB PRIMARY KEY, dst BLOB NOT NULL)")
        except sqlite3.Error as e:
            raise StrongroomError(f"cannot open the copy id map {path}: {e}") from None
        self._pending: dict[bytes, bytes] = {}  # recorded by commit(), once the blobs are stored

    def get(self, src: bytes) -> bytes | None:
        dst = self._pending.get(src)
        if dst is not None:
            return dst
        row = self._db.execute("SELECT dst FROM ids WHERE src = ?", (src,)).fetchone()
        return None if row is None else bytes(row[0])

    def get_stored(self, src: bytes) -> bytes | None:
        """Only mappings recorded by a finished copy (whose blobs are complete)."""
        row = self._db.execute("SELECT dst FROM ids WHERE src = ?", (src,)).fetchone()
        return None if row is None else bytes(row[0])

    def put(self, src: bytes, dst: bytes) -> None:
        self._pending[src] = dst

    def commit(self) -> None:
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO ids VALUES (?, ?)", self._pending.items())
        self._pending.clear()

    def discard_pending(self) -> None:
        self._pending.clear()

    def close(self) -> None:
        self._db.close()


def select_snapshots(src: Repository, selection: CopySelection) -> list[Snapshot]:
    """The source snapshots to copy, oldest first."""
    if selection.snapshot_ids:
        found: dict[str, Snapshot] = {}
        for selector in selection.snapshot_ids:
            host = selection.hosts[0] if selector == "latest" and len(selection.hosts) == 1 else None
            snap = src.find_snapshot(selector, hostname=host)
            found[snap.id] = snap
        snaps = sorted(found.values(), key=lambda s: (s.datetime, s.id))
    else:
        snaps = src.snapshots()
    if selection.hosts:
        snaps = [s for s in snaps if s.hostname in selection.hosts]
    if selection.tags:
        snaps = [s for s in snaps if set(s.tags) & set(selection.tags)]
    if not snaps and (selection.snapshot_ids or selection.hosts or selection.tags):
        raise SnapshotNotFound("no snapshot in the source matches the selection")
    return snaps


def run_copy(src: Repository, dst: Repository, selection: CopySelection, *,
             progress: ProgressCallback = ignore_progress) -> CopyResult:
    started = time.monotonic()
    result = CopyResult()
    src.require_full_key("copy snapshots out of a repository")
    dst.require_full_key("copy snapshots into a repository (its snapshots are read to skip copies)")
    with src.lock(exclusive=False), dst.lock(exclusive=False):
        snaps = select_snapshots(src, selection)
        already = {s.original or s.id: s.id for s in dst.snapshots()}
        id_map = IdMap(os.path.join(dst.cache_dir, f"copy-from-{src.config.id}.sqlite"))
        try:
            for snap in snaps:
                origin = snap.original or snap.id
                if origin in already:
                    result.skipped.append(CopiedSnapshot(snap.id, already[origin]))
                    continue
                new_id = _copy_one(src, dst, snap, id_map, result, progress)
                already[origin] = new_id
                result.copied.append(CopiedSnapshot(snap.id, new_id))
        finally:
            id_map.close()
            if result.copied:  # recorded even when a later snapshot failed: these ones landed
                dst.audit("copy", {"from_repository": src.config.id, "snapshots": [c.source for c in result.copied]},
                          added=[f"snapshots/{c.copy}" for c in result.copied])
    result.duration_s = round(time.monotonic() - started, 3)
    return result


def _copy_one(src: Repository, dst: Repository, snap: Snapshot, id_map: IdMap, result: CopyResult,
              progress: ProgressCallback) -> str:
    with BlobWriter(dst) as writer, BlobFetcher(src) as fetcher:
        job = _TreeCopier(src, dst, writer, fetcher, id_map, result, progress)
        try:
            tree, *catalog = [job.copy_tree(root) for root in snap.root_trees()]  # files, then the catalogue
            writer.flush()
        except BaseException:
            id_map.discard_pending()
            raise
        id_map.commit()  # everything mapped is now stored and indexed
        result.blobs_added += writer.blobs_added
        result.bytes_added += writer.bytes_added
    copy = Snapshot(time=snap.time, hostname=snap.hostname, username=snap.username, paths=list(snap.paths),
                    tree=tree.hex(), tags=list(snap.tags), parent=None, summary=snap.summary,
                    original=snap.original or snap.id, catalog=catalog[0].hex() if catalog else None)
    return dst.save_snapshot(copy)


class _TreeCopier:
    def __init__(self, src: Repository, dst: Repository, writer: BlobWriter, fetcher: BlobFetcher, id_map: IdMap,
                 result: CopyResult, progress: ProgressCallback) -> None:
        self.src, self.dst, self.writer, self.fetcher = src, dst, writer, fetcher
        self.map, self.result, self.progress = id_map, result, progress
        self.files = 0

    def _mapped(self, src_id: bytes, *, finished_only: bool = False) -> bytes | None:
        dst_id = self.map.get_stored(src_id) if finished_only else self.map.get(src_id)
        if dst_id is not None and self.writer.known(dst_id):
            return dst_id
        return None

    def copy_tree(self, src_tree: bytes) -> bytes:
        # A tree mapped by an earlier, finished copy is complete in the destination: skip it whole.
        done = self._mapped(src_tree, finished_only=True)
        if done is not None:
            return done
        nodes: list[Node] = []
        for node in self.src.load_tree(src_tree):
            if node.type == DIR and node.subtree is not None:
                node.subtree = self.copy_tree(node.subtree)
            elif node.type == ARCHIVE:
                node.subtree = self.copy_tree(node.subtree)
                node.archive = self._copy_archive(node.archive)
                self.files += 1
            elif node.type == FILE:
                node.content, node.content_lists = self._copy_file(node)
                self.files += 1
                self.progress(Progress(files=self.files, current=os.fsdecode(node.name)))
            nodes.append(node)
        dst_tree, _ = self.writer.add(TREE, encode_tree(nodes))
        self.map.put(src_tree, dst_tree)
        return dst_tree

    def _copy_archive(self, info: ArchiveInfo) -> ArchiveInfo:
        """Chunk ids differ between repositories: the skeleton and every layout blob are rewritten."""
        skeleton, skeleton_lists = self._copy_file(Node(b"", FILE, content=info.skeleton,
                                                        content_lists=info.skeleton_lists))
        layout = []
        for layout_id in info.layout:
            segments = decode_layout(self.src.load_blob(layout_id), f"archive layout {layout_id.hex()[:16]}")
            for seg in segments:
                if isinstance(seg, MemberData):
                    seg.content, seg.content_lists = self._copy_file(Node(b"", FILE, content=seg.content,
                                                                          content_lists=seg.content_lists))
            layout.append(self.writer.add(TREE, encode_layout(segments))[0])
        return dataclasses.replace(info, skeleton=skeleton, skeleton_lists=skeleton_lists, layout=layout)

    def _copy_file(self, node: Node) -> tuple[list[bytes], list[bytes]]:
        """Map the file's chunks window by window (memory bounded for any file size)."""
        content = FileContent(self.writer)
        for window in _windows(self._source_chunks(node), MAX_INLINE_CHUNKS):
            for dst_id in self._copy_chunks(window):
                content.append(dst_id)
        return content.finish()

    def _source_chunks(self, node: Node) -> Iterator[bytes]:
        yield from node.content
        for list_id in node.content_lists:
            yield from decode_chunk_list(self.src.load_blob(list_id), f"chunk list {list_id.hex()[:16]}")

    def _copy_chunks(self, src_ids: list[bytes]) -> list[bytes]:
        out: list[bytes | None] = [self._mapped(i) for i in src_ids]
        missing = [i for i, d in zip(src_ids, out) if d is None]
        if missing:
            fresh: dict[bytes, bytes] = {}
            unique = list(dict.fromkeys(missing))
            for src_id, data in zip(unique, self.fetcher.fetch_all(unique)):
                # a no-op if the destination has it; text keeps its class (groups, dictionary)
                dst_id, _ = self.writer.add(DATA, data, text=self._was_text(src_id))
                self.map.put(src_id, dst_id)
                fresh[src_id] = dst_id
            self.result.blobs_read += len(unique)
            out = [d if d is not None else fresh[i] for i, d in zip(src_ids, out)]
        return out  # type: ignore[return-value]


    def _was_text(self, src_id: bytes) -> bool:
        """Whether the source stored the chunk as text: compressed with a dictionary or in a group,
        which only text chunks are (spec §20, §24). Text the source stored plainly (before it had
        a dictionary) is not told apart, and stays plain at the destination."""
        location = self.src.index.lookup(src_id)
        return location is not None and bool(location.entry.dictionary or location.entry.group_length)


def _windows(items: Iterable[bytes], size: int) -> Iterator[list[bytes]]:
    window: list[bytes] = []
    for item in items:
        window.append(item)
        if len(window) == size:
            yield window
            window = []
    if window:
        yield window
