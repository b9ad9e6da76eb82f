"""The restore use case: write a snapshot's files under a target directory, safely."""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field
from typing import Iterator

from strongroom.archives.rebuild import rebuild
from strongroom.commands import Progress, ProgressCallback, WarningCallback, ignore_progress, ignore_warning
from strongroom.errors import MaliciousTree, StrongroomError
from strongroom.fetcher import BlobFetcher
from strongroom.globs import PathMatcher
from strongroom.repository import Repository
from strongroom.restore_target import RestoreTarget
from strongroom.snapshot import Snapshot
from strongroom.storage.local import LocalStorage
from strongroom.storage.memory import MemoryStorage
from strongroom.tree import ARCHIVE, DIR, FILE, SYMLINK, Node

MAX_DEPTH = 4096
#: Walk steps (files, directories, symlinks) planned ahead of the one being written, at most:
#: the fetcher's byte cap bounds the data in flight, this bounds the bookkeeping.
MAX_PLANNED = 1024
#: Bytes of blobs in flight (read and being decoded, or decoded and not yet written). Enough for
#: four 4 MiB runs at once; a larger window measured no faster and touched more fresh memory
#: (page faults: 10 k vs 4 k per text-heavy night restore at 64 vs 16 MiB).
IN_FLIGHT_BYTES = 16 * 1024 * 1024
#: Decoding threads when the repository is on a local disk (or in memory): the work is CPU
#: (decrypt, decompress, hash; they release the GIL) and the main thread keeps a core busy
#: writing, so one per remaining core. On 2 vCPUs one worker beat two and four in both CPU and
#: wall time (more threads contend for the GIL and the caches). Remote storage waits on
#: requests, so it gets ``REMOTE_WORKERS`` regardless of cores.
MAX_LOCAL_WORKERS = 4
REMOTE_WORKERS = 4


def decode_workers(storage: object) -> int:
    """How many threads decode blobs for a restore from ``storage`` (see MAX_LOCAL_WORKERS)."""
    if isinstance(storage, (LocalStorage, MemoryStorage)):
        return max(1, min(MAX_LOCAL_WORKERS, (os.cpu_count() or 2) - 1))
    return REMOTE_WORKERS


@dataclass(eq=False)
class _DirFrame:
    parts: list[bytes]
    node: Node | None
    nodes: Iterator[Node]
    created: bool  # selected, so created even if nothing below it is restored
    parent: _DirFrame | None = None
    restored_any: bool = False  # set as its contents are written, read when it is done


# The walk yields these steps; they are carried out in the order yielded.
@dataclass(eq=False)
class _Leaf:
    """A file, symlink or archive to restore. For a file, its chunks are requested from the
    fetcher ahead of time (``requested`` of them so far, ``taken`` written)."""
    frame: _DirFrame
    parts: list[bytes]
    node: Node
    chunks: Iterator[bytes] | None = None
    requested: int = 0
    taken: int = 0
    all_requested: bool = False
    error: Exception | None = None  # reading the chunk list failed after ``requested`` chunks


@dataclass(eq=False)
class _DirDone:
    """Everything below the directory is done: its metadata can be applied."""
    frame: _DirFrame


@dataclass(eq=False)
class _Failed:
    """The walk could not create or read something: recorded as an error at its turn."""
    path: bytes
    error: Exception


@dataclass(eq=False)
class _Expanded:
    """An archive restored as a folder (``--expand``): listed in the result at its turn."""
    path: bytes
    node: Node


@dataclass(eq=False)
class _Stop:
    """The tree tries to escape the target: the restore stops here (the walk stops first)."""
    error: MaliciousTree


@dataclass
class RestoreResult:
    snapshot: Snapshot
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    bytes: int = 0
    errors: list[str] = field(default_factory=list)
    verified: int = 0  # files read back and found identical (restore --verify)
    # One per archive node met: {"path", "format", "restored": "identical"|"equivalent"|"expanded"}
    archives: list[dict] = field(default_factory=list)


class _Restore:
    """Walks the snapshot's tree and writes it under the target.

    The walk (``_walk``) runs ahead of the writing: it creates directories and yields the steps
    to carry out, and the chunks of the files it meets are requested from one ``BlobStream``
    right away, so the fetcher's workers read and decode the next files (runs spanning file
    boundaries, each pack range read once) while the main thread writes this one. Steps are
    carried out strictly in walk order, so results, errors and metadata come out as in a
    sequential restore. At most ``MAX_PLANNED`` steps and the fetcher's byte cap are ahead."""

    def __init__(self, repo: Repository, target: RestoreTarget, includes: PathMatcher, excludes: PathMatcher,
                 fetcher: BlobFetcher, result: RestoreResult, progress: ProgressCallback,
                 warn: WarningCallback, verify: bool = False, expand: bool = False) -> None:
        self.verify = verify
        self.expand = expand
        self.repo = repo
        self.target = target
        self.includes = includes
        self.excludes = excludes
        self.fetcher = fetcher
        self.result = result
        self.progress = progress
        self.warn = warn
        self.stream = fetcher.stream()
        self.planned: deque = deque()  # steps yielded by the walk and not yet carried out
        self.steps: Iterator = iter(())
        self.feeding: _Leaf | None = None  # the file whose chunks are being requested
        self.walk_done = False

    def error(self, path: bytes, exc: Exception) -> None:
        # An OSError's own text repeats the errno and the bytes of the name: its reason suffices.
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        message = f"{os.fsdecode(path) or '/'}: {reason}"
        self.result.errors.append(message)
        self.warn(message)

    def selected(self, path: bytes) -> bool:
        if self.excludes.matches_or_ancestor(path):
            return False
        return not self.includes or self.includes.matches_or_ancestor(path)

    # -- carrying out the steps --------------------------------------------------------------

    def restore_tree(self, root: bytes) -> None:
        """Restore everything below the root tree; a directory's metadata is applied after its
        contents."""
        self.steps = self._walk(root)
        try:
            while True:
                if not self.planned:
                    if self.walk_done:
                        return
                    self.plan()
                    continue
                self.carry_out(self.planned.popleft())
        finally:
            self.stream.close()

    def carry_out(self, step) -> None:
        if isinstance(step, _Leaf):
            try:
                if self.guard(step.parts, lambda: self.restore_leaf(step)):
                    step.frame.restored_any = True
            finally:  # whatever failed (even before the file was opened), its chunks are dropped
                self.drain(step)
        elif isinstance(step, _DirDone):
            frame = step.frame
            if frame.created or frame.restored_any:
                if not frame.created:
                    self.result.dirs += 1
                self.guard(frame.parts, lambda: self.set_metadata(frame.parts, frame.node))
                frame.parent.restored_any = True
        elif isinstance(step, _Failed):
            self.error(step.path, step.error)
        elif isinstance(step, _Expanded):
            self.result.archives.append({"path": os.fsdecode(step.path), "format": step.node.archive.format,
                                         "restored": "expanded"})
        else:
            raise step.error

    def guard(self, parts: list[bytes], action) -> bool:
        """Run one filesystem action; record a failure against the path and carry on."""
        try:
            action()
            return True
        except MaliciousTree:
            raise
        except (StrongroomError, OSError, OverflowError) as e:
            self.error(b"/" + b"/".join(parts), e)
            return False

    def restore_leaf(self, leaf: _Leaf) -> None:
        parts, node = leaf.parts, leaf.node
        self.target.make_dir(leaf.frame.parts)
        if node.type == FILE:
            self.restore_file(leaf)
        elif node.type == ARCHIVE:
            self.restore_archive(parts, node)
        else:
            self.target.symlink(parts, node.target)
            self.result.symlinks += 1
        self.set_metadata(parts, node)

    def restore_file(self, leaf: _Leaf) -> None:
        parts, node = leaf.parts, leaf.node
        written = self.target.write_file(parts, self.file_chunks(leaf), size_hint=node.size)
        if self.verify:  # re-read what landed on disk and compare with the snapshot's chunk hashes
            from strongroom.commands.verify import verify_file
            verify_file(self.repo, os.path.join(self.target.root, *parts), node)
            self.result.verified += 1
        self.result.files += 1
        self.result.bytes += written
        self.progress(Progress(files=self.result.files, bytes=self.result.bytes, current=os.fsdecode(parts[-1])))

    def file_chunks(self, leaf: _Leaf) -> Iterator[bytes]:
        """The file's plaintext chunks in order, as the fetcher delivers them; planning goes on
        as they are taken, so the workers stay ahead."""
        stream = self.stream
        while True:
            if leaf.taken == leaf.requested:
                if leaf.all_requested:
                    if leaf.error is not None:
                        raise leaf.error
                    return
                self.plan()  # this file is the one being fed: request more of it
                continue
            tag, item = stream.take()
            assert tag is leaf, "blob stream out of step with the restore plan"
            leaf.taken += 1
            if isinstance(item, BaseException):
                raise item
            yield item
            if stream.wants_more:
                self.plan()

    def drain(self, leaf: _Leaf) -> None:
        """After a file failed part way: stop requesting its chunks and drop those in flight."""
        if self.feeding is leaf:
            self.feeding = None
        leaf.all_requested = True
        while leaf.taken < leaf.requested:
            self.stream.take()
            leaf.taken += 1

    def restore_archive(self, parts: list[bytes], node: Node) -> None:
        """The original archive file, rebuilt and checked against its SHA-256 (see archives.rebuild)."""
        path = b"/" + b"/".join(parts)
        info = node.archive
        written = self.target.write_file(parts, rebuild(self.repo, self.fetcher, info, os.fsdecode(path)),
                                         size_hint=node.size)
        if self.verify:
            from strongroom.commands.verify import verify_archive
            verify_archive(os.path.join(self.target.root, *parts), info)
            self.result.verified += 1
        self.result.archives.append({"path": os.fsdecode(path), "format": info.format, "restored": info.fidelity})
        self.result.files += 1
        self.result.bytes += written
        self.progress(Progress(files=self.result.files, bytes=self.result.bytes, current=os.fsdecode(parts[-1])))

    def set_metadata(self, parts: list[bytes], node: Node) -> None:
        mode = node.mode
        if node.type == ARCHIVE and self.expand:  # an archive restored as a folder: readable means searchable
            mode |= (mode & 0o444) >> 2
        self.target.set_metadata(parts, mode=None if node.type == SYMLINK else mode, mtime_ns=node.mtime_ns,
                                 uid=node.uid, gid=node.gid, is_symlink=node.type == SYMLINK)

    # -- planning ahead ----------------------------------------------------------------------

    def plan(self) -> None:
        """Request the chunks of the file being fed, then walk on, while the fetcher has room."""
        stream = self.stream
        while stream.wants_more:
            if self.feeding is not None:
                if not self.request(self.feeding):
                    return
                self.feeding = None
            elif self.walk_done or len(self.planned) >= MAX_PLANNED:
                return
            else:
                step = next(self.steps, None)
                if step is None:
                    self.walk_done = True
                    stream.flush()
                    return
                self.planned.append(step)
                if isinstance(step, _Leaf) and step.node.type == FILE:
                    step.chunks = self.repo.file_chunks(step.node)
                    self.feeding = step
        if not self.planned and not self.walk_done and self.feeding is None:
            # Nothing planned, nothing fed, and yet no room: the stream holds only requests of
            # steps already carried out, which cannot happen; fail loudly rather than spin.
            raise RuntimeError("restore plan stalled")

    def request(self, leaf: _Leaf) -> bool:
        """Request the file's next chunks until the stream is full; whether all are requested."""
        stream = self.stream
        try:
            for blob_id in leaf.chunks:
                stream.add(blob_id, leaf)
                leaf.requested += 1
                if not stream.wants_more:
                    return False
        except StrongroomError as e:  # a chunk-list blob could not be read: the file fails there
            leaf.error = e
        leaf.all_requested = True
        return True

    # -- the walk ------------------------------------------------------------------------------

    def _walk(self, root: bytes) -> Iterator:
        """Depth first with an explicit stack (no recursion limit). Creates the selected
        directories as it enters them and yields the steps that write everything else."""
        nodes = yield from self._load(b"/", root)
        if nodes is None:
            return
        top = _DirFrame([], None, iter(nodes), created=True)
        stack = [top]
        while stack:
            frame = stack[-1]
            node = next(frame.nodes, None)
            if node is None:
                stack.pop()
                if frame.node is not None:
                    yield _DirDone(frame)
                continue
            child_parts = frame.parts + [node.name]
            child = b"/" + b"/".join(child_parts)
            if self.excludes.matches_or_ancestor(child):
                continue
            if node.type == DIR or (node.type == ARCHIVE and self.expand):
                created = self.selected(child)
                if node.type == ARCHIVE and created:
                    yield _Expanded(child, node)
                if len(stack) > MAX_DEPTH:
                    yield _Stop(MaliciousTree(f"trees nested deeper than {MAX_DEPTH} levels"))
                    return
                if created:
                    try:
                        self.target.make_dir(child_parts)
                    except MaliciousTree as e:
                        yield _Stop(e)
                        return
                    except (StrongroomError, OSError, OverflowError) as e:
                        yield _Failed(child, e)
                        continue
                children = yield from self._load(child, node.subtree)
                if children is not None:
                    if created:
                        self.result.dirs += 1
                    stack.append(_DirFrame(child_parts, node, iter(children), created=created, parent=frame))
            elif self.selected(child):
                yield _Leaf(frame, child_parts, node)

    def _load(self, path: bytes, tree_id: bytes):
        """The tree's nodes, or None after yielding the failure to read it."""
        try:
            return self.repo.load_tree(tree_id)
        except StrongroomError as e:
            yield _Failed(path, e)
            return None


def run_restore(repo: Repository, snapshot: Snapshot, target: str, *, includes: list[str] = (),
                excludes: list[str] = (), progress: ProgressCallback = ignore_progress,
                warn: WarningCallback = ignore_warning, verify: bool = False, expand: bool = False) -> RestoreResult:
    """Restore ``snapshot`` under ``target``; each backed-up path lands at target/<absolute path>.

    Per-file failures are collected in ``result.errors`` (other files are still restored);
    a tree that tries to escape the target stops the restore with MaliciousTree. Archive nodes
    are rebuilt as the original file, or with ``expand`` restored as a folder of their members."""
    result = RestoreResult(snapshot)
    with repo.lock(exclusive=False), RestoreTarget(target) as dest, \
            BlobFetcher(repo, threads=decode_workers(repo.storage), max_bytes=IN_FLIGHT_BYTES) as fetcher:
        # The snapshot was listed before this sync, so the index files it needs (stored before it)
        # are seen even if a concurrent backup committed it after the repository was opened.
        repo.sync_index()
        job = _Restore(repo, dest, PathMatcher(includes), PathMatcher(excludes), fetcher, result, progress, warn, verify,
                       expand)
        job.restore_tree(bytes.fromhex(snapshot.tree))
    return result
