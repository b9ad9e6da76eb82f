"""The restore use case: write a snapshot's files under a target directory, safely."""

from __future__ import annotations

import os
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
from strongroom.tree import ARCHIVE, DIR, FILE, SYMLINK, Node

MAX_DEPTH = 4096


@dataclass
class _DirFrame:
    parts: list[bytes]
    node: Node | None
    nodes: Iterator[Node]
    created: bool  # selected, so created even if nothing below it is restored
    restored_any: bool = False


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

    def error(self, path: bytes, exc: Exception) -> None:
        message = f"{os.fsdecode(path) or '/'}: {exc}"
        self.result.errors.append(message)
        self.warn(message)

    def selected(self, path: bytes) -> bool:
        if self.excludes.matches_or_ancestor(path):
            return False
        return not self.includes or self.includes.matches_or_ancestor(path)

    def restore_tree(self, root: bytes) -> None:
        """Restore everything below the root tree. Depth first with an explicit stack (no
        recursion limit); a directory's metadata is applied after its contents."""
        nodes = self.load(b"/", root)
        if nodes is None:
            return
        stack = [_DirFrame([], None, iter(nodes), created=True)]
        while stack:
            frame = stack[-1]
            node = next(frame.nodes, None)
            if node is None:
                stack.pop()
                if frame.node is not None and (frame.created or frame.restored_any):
                    if not frame.created:
                        self.result.dirs += 1
                    self.guard(frame.parts, lambda: self.set_metadata(frame.parts, frame.node))
                    stack[-1].restored_any = True
                continue
            child_parts = frame.parts + [node.name]
            child = b"/" + b"/".join(child_parts)
            if self.excludes.matches_or_ancestor(child):
                continue
            if node.type == DIR or (node.type == ARCHIVE and self.expand):
                if node.type == ARCHIVE and self.selected(child):
                    self.result.archives.append({"path": os.fsdecode(child), "format": node.archive.format,
                                                 "restored": "expanded"})
                if len(stack) > MAX_DEPTH:
                    raise MaliciousTree(f"trees nested deeper than {MAX_DEPTH} levels")
                created = self.selected(child)
                if created and not self.guard(child_parts, lambda: self.target.make_dir(child_parts)):
                    continue
                children = self.load(child, node.subtree)
                if children is not None:
                    if created:
                        self.result.dirs += 1
                    stack.append(_DirFrame(child_parts, node, iter(children), created=created))
            elif self.selected(child):
                if self.guard(child_parts, lambda: self.restore_leaf(frame.parts, child_parts, node)):
                    frame.restored_any = True

    def load(self, path: bytes, tree_id: bytes) -> list[Node] | None:
        try:
            return self.repo.load_tree(tree_id)
        except StrongroomError as e:
            self.error(path, e)
            return None

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

    def restore_leaf(self, parent: list[bytes], parts: list[bytes], node: Node) -> None:
        self.target.make_dir(parent)
        if node.type == FILE:
            self.restore_file(parts, node)
        elif node.type == ARCHIVE:
            self.restore_archive(parts, node)
        else:
            self.target.symlink(parts, node.target)
            self.result.symlinks += 1
        self.set_metadata(parts, node)

    def restore_file(self, parts: list[bytes], node: Node) -> None:
        written = self.target.write_file(parts, self.fetcher.fetch_all(self.repo.file_chunks(node)),
                                         size_hint=node.size)
        if self.verify:  # re-read what landed on disk and compare with the snapshot's chunk hashes
            from strongroom.commands.verify import verify_file
            verify_file(self.repo, os.path.join(self.target.root, *parts), node)
            self.result.verified += 1
        self.result.files += 1
        self.result.bytes += written
        self.progress(Progress(files=self.result.files, bytes=self.result.bytes, current=os.fsdecode(parts[-1])))

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


def run_restore(repo: Repository, snapshot: Snapshot, target: str, *, includes: list[str] = (),
                excludes: list[str] = (), progress: ProgressCallback = ignore_progress,
                warn: WarningCallback = ignore_warning, verify: bool = False, expand: bool = False) -> RestoreResult:
    """Restore ``snapshot`` under ``target``; each backed-up path lands at target/<absolute path>.

    Per-file failures are collected in ``result.errors`` (other files are still restored);
    a tree that tries to escape the target stops the restore with MaliciousTree. Archive nodes
    are rebuilt as the original file, or with ``expand`` restored as a folder of their members."""
    result = RestoreResult(snapshot)
    with repo.lock(exclusive=False), RestoreTarget(target) as dest, BlobFetcher(repo) as fetcher:
        # The snapshot was listed before this sync, so the index files it needs (stored before it)
        # are seen even if a concurrent backup committed it after the repository was opened.
        repo.sync_index()
        job = _Restore(repo, dest, PathMatcher(includes), PathMatcher(excludes), fetcher, result, progress, warn, verify,
                       expand)
        job.restore_tree(bytes.fromhex(snapshot.tree))
    return result
