"""The check use case, in two levels.

Structural (always): every key file, index file and snapshot is intact (named by its content,
authentic, well-formed); every pack the index lists is stored with its recorded size; every
snapshot's trees are readable and every chunk its files use is in the index, in a stored pack.

``read_data`` (``--read-data``, optionally a subset): additionally read the chosen packs byte by
byte: BLAKE3 of the whole pack against its name, the header against the index, and every blob
authenticated, decrypted, decompressed and re-hashed (read_data.verify_packs, on two worker
threads). Blobs found damaged are then traced to the snapshots and files that use them; the
snapshot walk runs alongside the read and is redone after it only if the read found damage.

Memory: at most read_data.IN_FLIGHT_BYTES of packs are held; sets that grow with the repository
(damaged blobs, clean trees) are ScratchSets, which spill to a temporary LMDB file.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from strongroom import dictionary
from strongroom.commands import Progress, ProgressCallback, ignore_progress
from strongroom.commands.read_data import PackReport, Subset, verify_packs
from strongroom.crypto.keyfile import read_key_info
from strongroom.errors import IntegrityError, ObjectNotFound, StrongroomError
from strongroom.forked import available_cores
from strongroom.index import ScratchSet
from strongroom.indexfile import open_index_raw
from strongroom.repository import Repository, object_name
from strongroom.tree import ARCHIVE, DIR, FILE, decode_chunk_list

MAX_DEPTH = 4096
MAX_AFFECTED = 10_000  # reported individually; beyond this only counted
READ_THREADS = 2


@dataclass
class Affected:
    snapshot: str  # full id
    path: str
    reason: str

    def to_json(self) -> dict:
        return {"snapshot": self.snapshot, "path": self.path, "reason": self.reason}


@dataclass
class CheckResult:
    snapshots: int = 0
    trees: int = 0
    blobs: int = 0
    packs: int = 0
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # --read-data
    read_data: bool = False
    packs_read: int = 0
    packs_selected_of: int = 0
    bytes_read: int = 0
    blobs_read: int = 0
    seconds: float = 0.0
    damaged_packs: list[dict] = field(default_factory=list)  # {"pack", "problems", "bad_blobs"}
    affected: list[Affected] = field(default_factory=list)  # (snapshot, file) that cannot be restored
    affected_more: int = 0
    affected_snapshots: set[str] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def throughput(self) -> float:
        return self.bytes_read / self.seconds if self.seconds > 0 else 0.0


def run_check(repo: Repository, *, read_data: bool = False, subset: Subset | None = None,
              progress: ProgressCallback = ignore_progress) -> CheckResult:
    result = CheckResult(read_data=read_data or subset is not None)
    with repo.lock(exclusive=False), ScratchSet() as lost:
        # Snapshots are listed before the index is read: every snapshot's index files are stored
        # before it, so a backup committing meanwhile cannot make check see a false loss.
        snapshot_ids = repo.snapshot_ids()
        repo.sync_index()
        _check_key_files(repo, result)
        _check_index_files(repo, result)
        _check_dictionaries(repo, result)
        stored = _check_packs(repo, result, lost)
        if result.read_data:
            _read_and_walk(repo, result, stored, subset or Subset(), lost, progress, snapshot_ids)
        else:
            _check_snapshots(repo, result, lost, snapshot_ids)
    return result


def _check_key_files(repo: Repository, result: CheckResult) -> None:
    for name, _ in repo.storage.list("keys"):
        try:
            data = repo.storage.load(name)
            if object_name(data) != name.rsplit("/", 1)[1]:
                raise IntegrityError(f"{name}: content does not match its name (damaged)")
            read_key_info(data, name)  # either kind (full or write-only)
        except ObjectNotFound:
            continue
        except StrongroomError as e:
            result.errors.append(str(e))


def _check_dictionaries(repo: Repository, result: CheckResult) -> None:
    """Every compression dictionary must be authentic and match its id (spec §20); there are few."""
    for name, _ in repo.storage.list(dictionary.FOLDER):
        dict_id = dictionary.parse_name(name)
        if dict_id is None:
            result.errors.append(f"{name}: not a dictionary name")
            continue
        try:
            repo.dictionaries.get(dict_id)
        except StrongroomError as e:
            result.errors.append(str(e))


def _check_index_files(repo: Repository, result: CheckResult) -> None:
    """Every index file must be intact: named by its content, authentic, well-formed."""
    for name, _ in repo.storage.list("index"):
        try:
            data = repo.storage.load(name)
            if object_name(data) != name.rsplit("/", 1)[1]:
                raise IntegrityError(f"{name}: content does not match its name (damaged)")
            open_index_raw(repo.master, data, name)  # same checks, no object per blob
        except ObjectNotFound:
            continue
        except StrongroomError as e:
            result.errors.append(f"{e} (run `strongroom repair index`)")


def _check_packs(repo: Repository, result: CheckResult, lost: ScratchSet) -> dict[str, int]:
    """Compare the index with the stored packs; return the stored packs (name -> size).
    Blobs whose indexed copy is in a missing pack are added to ``lost``."""
    stored: dict[str, int] = {}
    for name, size in repo.storage.list("data"):
        stored[name.rsplit("/", 1)[1]] = size
    missing = []
    for pack, size in repo.index.iter_packs():
        result.packs += 1
        actual = stored.get(pack)
        if actual is None:
            missing.append(pack)
            result.errors.append(f"pack {pack}: listed in the index but missing from storage")
        elif actual != size:
            result.errors.append(f"pack {pack}: size {actual}, the index records {size}")
    for pack in sorted(repo.index.missing_packs()):  # already left out of the cache by a backup or read
        if pack not in stored:
            result.packs += 1
            result.errors.append(f"pack {pack}: listed in an index file but missing from storage")
            result.damaged_packs.append({"pack": pack, "problems": ["missing from storage"], "bad_blobs": []})
    if missing or repo.index.missing_packs():
        result.notes.append("indexed pack(s) missing: the next backup stores their chunks again wherever it "
                            "meets the same content; `strongroom repair index` drops them from the index files")
    for pack in missing:
        _mark_lost(repo, pack, (e.id for e in repo.index.pack_entries(pack)), lost)
        result.damaged_packs.append({"pack": pack, "problems": ["missing from storage"], "bad_blobs": []})
    for pack in stored:
        if repo.index.pack_info(pack) is None:
            result.notes.append(f"pack {pack}: not in any index (left by an interrupted backup or a "
                                "damaged index file; the next backup or `repair index` indexes it)")
    return stored


def _mark_lost(repo: Repository, pack: str, blob_ids, lost: ScratchSet) -> None:
    """A blob is lost when the copy the index uses is in this pack (another copy elsewhere that the
    index does not point to is only found again by `repair index`)."""
    for blob_id in blob_ids:
        location = repo.index.lookup(blob_id)
        if location is not None and location.pack == pack:
            lost.add(blob_id)


def _read_and_walk(repo: Repository, result: CheckResult, stored: dict[str, int], subset: Subset,
                   lost: ScratchSet, progress: ProgressCallback, snapshot_ids: list[str]) -> None:
    """Read the packs, then say which snapshots and files any damage found affects.

    The walk needs the damaged blobs, which only the read finds; but usually there are none. So,
    when nothing is known lost yet, the walk runs in a thread during the read (mostly Python, while
    the read is mostly in code that releases the GIL) as if nothing will be found, and its findings
    are kept if nothing was; otherwise it is stopped or discarded and the walk runs again after
    the read, with the damaged blobs known. Either way the result is that of walking after."""
    if len(lost):  # missing packs: the walk must know their blobs from the start
        _read_packs(repo, result, stored, subset, lost, progress)
        _check_snapshots(repo, result, lost, snapshot_ids)
        return
    early = CheckResult()
    stop = threading.Event()
    with ScratchSet() as nothing_lost, ThreadPoolExecutor(1, thread_name_prefix="check-walk") as side:
        walking = side.submit(_check_snapshots, repo, early, nothing_lost, snapshot_ids, stop)
        try:
            _read_packs(repo, result, stored, subset, lost, progress, stop)
        except BaseException:  # e.g. interrupted: do not wait for the whole walk
            stop.set()
            raise
        finally:
            if len(lost):
                stop.set()
            done = walking.exception() is None  # waits: the walk must not outlive nothing_lost
    if len(lost) or not done:
        _check_snapshots(repo, result, lost, snapshot_ids)
        return
    result.snapshots += early.snapshots
    result.trees += early.trees
    result.blobs += early.blobs
    result.errors += early.errors
    result.affected, result.affected_more, result.affected_snapshots = \
        early.affected, early.affected_more, early.affected_snapshots


def _read_packs(repo: Repository, result: CheckResult, stored: dict[str, int], subset: Subset,
                lost: ScratchSet, progress: ProgressCallback, stop: threading.Event | None = None) -> None:
    chosen = list(subset.select(stored))
    result.packs_selected_of = len(stored)
    total = sum(stored[p] for p in chosen)
    started = time.monotonic()
    done = 0

    def count(n: int) -> None:
        nonlocal done
        done += n  # only the main thread reports; races here only make progress approximate
    packs = ((p, stored[p]) for p in chosen)
    for report in verify_packs(repo, packs, threads=READ_THREADS, on_bytes=count, processes=available_cores()):
        _take(repo, result, report, lost)
        if stop is not None and len(lost):
            stop.set()  # the walk running alongside is of no use any more
        progress(Progress(files=result.packs_read, bytes=done, total_bytes=total))
    result.seconds = time.monotonic() - started


def _take(repo: Repository, result: CheckResult, report: PackReport, lost: ScratchSet) -> None:
    result.packs_read += 1
    result.bytes_read += report.size
    result.blobs_read += report.blobs_ok + len(report.bad_blobs)
    if report.ok:
        return
    indexed = repo.index.pack_info(report.name) is not None
    pack = f"pack {report.name}"
    if report.missing:
        if indexed:
            result.errors.append(f"{pack}: removed while being checked")
        return
    for problem in report.problems:
        (result.errors if indexed else result.notes).append(
            f"{pack}: {problem}" + ("" if indexed else " (not in any index: nothing uses it)"))
    for blob_id, why in report.bad_blobs:
        (result.errors if indexed else result.notes).append(f"{pack}: {why}")
    if indexed:
        _mark_lost(repo, report.name, (b for b, _ in report.bad_blobs), lost)
        result.damaged_packs.append({"pack": report.name, "problems": report.problems,
                                     "bad_blobs": [b.hex() for b, _ in report.bad_blobs]})


# -- snapshots, trees and files -------------------------------------------------------------------


class _Stopped(Exception):
    """The walk was stopped (its findings are not wanted)."""


@dataclass
class _Frame:
    tree_id: bytes
    path: str
    nodes: object  # iterator of Node
    bad: bool = False


class _SnapshotWalker:
    """Walks every snapshot, reading each distinct intact tree once overall: a tree found clean
    (everything below it available) is never entered again. Trees with damage below them are
    walked once per snapshot, so each affected snapshot gets its own list of affected files."""

    def __init__(self, repo: Repository, result: CheckResult, lost: ScratchSet,
                 stop: threading.Event | None = None) -> None:
        self.repo = repo
        self.result = result
        self.lost = lost
        self.clean = ScratchSet()
        self.stop = stop

    def close(self) -> None:
        self.clean.close()

    def affected(self, snap_id: str, path: str, reason: str) -> None:
        self.result.affected_snapshots.add(snap_id)
        if len(self.result.affected) < MAX_AFFECTED:  # memory stays bounded however much is lost
            self.result.errors.append(f"snapshot {snap_id[:8]} {path}: {reason}")
            self.result.affected.append(Affected(snap_id, path, reason))
        else:
            self.result.affected_more += 1

    def unavailable(self, blob_id: bytes) -> str | None:
        """Why a blob cannot be read, or None if it should be readable."""
        if blob_id in self.lost:
            return f"blob {blob_id.hex()[:16]} is damaged or its pack is missing"
        if not self.repo.index.has(blob_id):
            return f"blob {blob_id.hex()[:16]} is not in the index (missing data)"
        return None

    def load(self, tree_id: bytes):
        why = self.unavailable(tree_id)
        if why is not None:
            raise IntegrityError(why)
        nodes = self.repo.load_tree(tree_id)
        self.result.trees += 1
        return nodes

    def walk(self, snap_id: str, root: bytes, top: str = "/") -> None:
        if root in self.clean:
            return
        try:
            stack = [_Frame(root, top, iter(self.load(root)))]
        except StrongroomError as e:
            self.affected(snap_id, top, str(e))
            return
        bad_here: set[bytes] = set()  # trees with damage below, already reported in this snapshot
        while stack:
            if self.stop is not None and self.stop.is_set():
                raise _Stopped
            frame = stack[-1]
            node = next(frame.nodes, None)
            if node is None:
                stack.pop()
                if frame.bad:
                    bad_here.add(frame.tree_id)
                    if stack:
                        stack[-1].bad = True
                else:
                    self.clean.add(frame.tree_id)
                continue
            path = f"{frame.path.rstrip('/')}/{node.name.decode('utf-8', 'backslashreplace')}"
            if node.type == ARCHIVE:  # its layout and skeleton here; its members below, like a directory's
                why = self.check_file(node)
                if why is not None:
                    self.affected(snap_id, path, why)
                    frame.bad = True
            if node.type in (DIR, ARCHIVE):
                if node.subtree in self.clean:
                    continue
                if node.subtree in bad_here:  # a shared subtree: its files were listed already
                    frame.bad = True
                    continue
                if len(stack) >= MAX_DEPTH:
                    self.affected(snap_id, path, f"trees nested deeper than {MAX_DEPTH} levels")
                    frame.bad = True
                    continue
                try:
                    stack.append(_Frame(node.subtree, path, iter(self.load(node.subtree))))
                except StrongroomError as e:
                    self.affected(snap_id, path, f"directory unreadable: {e}")
                    frame.bad = True
            elif node.type == FILE:
                why = self.check_file(node)
                if why is not None:
                    self.affected(snap_id, path, why)
                    frame.bad = True

    def check_file(self, node) -> str | None:
        try:
            if node.type == ARCHIVE:
                for blob_id in self.repo.file_blobs(node):
                    self.result.blobs += 1
                    why = self.unavailable(blob_id)
                    if why is not None:
                        return why
                return None
            why = self.first_unavailable(node.content_lists, count=False)
            if why is None:
                why = self.first_unavailable(node.content)
            for list_id in node.content_lists:  # as Repository.file_chunks reads them, one at a time
                if why is not None:
                    break
                why = self.first_unavailable(decode_chunk_list(self.repo.load_blob(list_id),
                                                               f"chunk list {list_id.hex()[:16]}"))
            return why
        except StrongroomError as e:
            return str(e)

    def first_unavailable(self, blob_ids: list[bytes], *, count: bool = True) -> str | None:
        """``unavailable`` of the first of ``blob_ids`` that is, counting the blobs up to it; the
        index is asked about the whole list in one transaction (the usual answer: all there)."""
        if not blob_ids:
            return None
        lost = self.lost
        if (not lost or not any(b in lost for b in blob_ids)) and self.repo.index.has_all(blob_ids):
            self.result.blobs += len(blob_ids) if count else 0
            return None
        for blob_id in blob_ids:
            self.result.blobs += 1 if count else 0
            why = self.unavailable(blob_id)
            if why is not None:
                return why
        return None


def _check_snapshots(repo: Repository, result: CheckResult, lost: ScratchSet, snapshot_ids: list[str],
                     stop: threading.Event | None = None) -> None:
    walker = _SnapshotWalker(repo, result, lost, stop)
    try:
        for snapshot_id in snapshot_ids:
            try:
                snap = repo.load_snapshot(snapshot_id)
            except ObjectNotFound:
                continue  # removed (forget) while we listed
            except StrongroomError as e:
                result.errors.append(f"snapshot {snapshot_id[:8]}: {e}")
                continue
            result.snapshots += 1
            for root, top in zip(snap.root_trees(), ("/", "message catalogue:/")):  # files, then §23
                walker.walk(snap.id, root, top)
    finally:
        walker.close()
