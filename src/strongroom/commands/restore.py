"""The restore use case: write a snapshot's files under a target directory, safely."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from strongroom.commands import Progress, ProgressCallback, WarningCallback, ignore_progress, ignore_warning
from strongroom.errors import MaliciousTree, StrongroomError
from strongroom.fetcher import BlobFetcher
from strongroom.globs import PathMatcher
from strongroom.repository import Repository
from strongroom.restore_target import RestoreTarget
from strongroom.snapshot import Snapshot
from strongroom.tree import DIR, FILE, SYMLINK, Node

MAX_DEPTH = 4096


@dataclass
class RestoreResult:
    snapshot: Snapshot
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    bytes: int = 0
    errors: list[str] = field(default_factory=list)


class _Restore:
    def __init__(self, repo: Repository, target: RestoreTarget, includes: PathMatcher, excludes: PathMatcher,
                 fetcher: BlobFetcher, result: RestoreResult, progress: ProgressCallback,
                 warn: WarningCallback) -> None:
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

    def restore_dir(self, parts: list[bytes], tree_id: bytes, depth: int) -> bool:
        """Restore the entries of one tree below ``parts``; return whether anything was restored."""
        if depth > MAX_DEPTH:
            raise MaliciousTree(f"trees nested deeper than {MAX_DEPTH} levels")
        path = b"/" + b"/".join(parts)
        try:
            nodes = self.repo.load_tree(tree_id)
        except StrongroomError as e:
            self.error(path, e)
            return False
        restored_any = False
        for node in nodes:
            child_parts = parts + [node.name]
            child = b"/" + b"/".join(child_parts)
            if self.excludes.matches_or_ancestor(child):
                continue
            try:
                if node.type == DIR:
                    if self.selected(child):
                        self.target.make_dir(child_parts)
                        self.result.dirs += 1
                        self.restore_dir(child_parts, node.subtree, depth + 1)
                    elif self.restore_dir(child_parts, node.subtree, depth + 1):
                        self.result.dirs += 1
                    else:
                        continue
                    self.set_metadata(child_parts, node)
                    restored_any = True
                elif self.selected(child):
                    self.target.make_dir(parts)
                    if node.type == FILE:
                        self.restore_file(child_parts, node)
                    elif node.type == SYMLINK:
                        self.target.symlink(child_parts, node.target)
                        self.result.symlinks += 1
                    self.set_metadata(child_parts, node)
                    restored_any = True
            except MaliciousTree:
                raise
            except (StrongroomError, OSError) as e:
                self.error(child, e)
        return restored_any

    def restore_file(self, parts: list[bytes], node: Node) -> None:
        written = self.target.write_file(parts, self.fetcher.fetch_all(self.repo.file_chunks(node)),
                                         size_hint=node.size)
        self.result.files += 1
        self.result.bytes += written
        self.progress(Progress(files=self.result.files, bytes=self.result.bytes, current=os.fsdecode(parts[-1])))

    def set_metadata(self, parts: list[bytes], node: Node) -> None:
        self.target.set_metadata(parts, mode=None if node.type == SYMLINK else node.mode, mtime_ns=node.mtime_ns,
                                 uid=node.uid, gid=node.gid, is_symlink=node.type == SYMLINK)


def run_restore(repo: Repository, snapshot: Snapshot, target: str, *, includes: list[str] = (),
                excludes: list[str] = (), progress: ProgressCallback = ignore_progress,
                warn: WarningCallback = ignore_warning) -> RestoreResult:
    """Restore ``snapshot`` under ``target``; each backed-up path lands at target/<absolute path>.

    Per-file failures are collected in ``result.errors`` (other files are still restored);
    a tree that tries to escape the target stops the restore with MaliciousTree."""
    result = RestoreResult(snapshot)
    with repo.lock(exclusive=False), RestoreTarget(target) as dest, BlobFetcher(repo) as fetcher:
        job = _Restore(repo, dest, PathMatcher(includes), PathMatcher(excludes), fetcher, result, progress, warn)
        job.restore_dir([], bytes.fromhex(snapshot.tree), 0)
    return result
