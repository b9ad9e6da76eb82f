"""Export files read back from the repository: an :class:`ExportFiles` over a snapshot's tree.

The catalogue reads what the snapshot holds, not the live files (which may have changed since
they were backed up), so a snapshot's catalogue always describes exactly that snapshot.
"""

from __future__ import annotations

import bisect
import io
import os
from collections import OrderedDict
from typing import BinaryIO, Callable, Iterable, Iterator

from strongroom.errors import IntegrityError
from strongroom.fetcher import BlobFetcher
from strongroom.repository import Repository
from strongroom.tree import ARCHIVE, DIR, FILE, Node

_TREE_CACHE = 16
# The name endings any export reader (strongroom.messages.formats) looks at, zips included. Only
# such files are listed, so a snapshot of millions of other files costs a tree walk, not memory;
# a reader for another kind of file must be added here too.
CANDIDATE_SUFFIXES = (".json", ".jsonl", ".txt", ".zip")


class _BlobStream(io.RawIOBase):
    """A file's content as a readable stream of its chunks, fetched as they are needed."""

    def __init__(self, repo: Repository, chunk_ids: list[bytes]) -> None:
        self._repo = repo
        self._ids = chunk_ids
        self._fetcher: BlobFetcher | None = None
        self._blobs: Iterator[bytes] | None = None
        self._current = memoryview(b"")

    def _next_blob(self) -> bytes | None:
        # The first chunk alone (recognition reads only a file's head); the rest through a
        # fetcher, which reads runs of adjacent blobs ahead in the background.
        if self._blobs is None:
            if not self._ids:
                return None
            first = self._repo.load_blob(self._ids[0])
            self._fetcher = BlobFetcher(self._repo, threads=2, max_bytes=8 * 1024 * 1024)
            self._blobs = self._fetcher.fetch_all(self._ids[1:])
            return first
        return next(self._blobs, None)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._current:
            data = self._next_blob()
            if data is None:
                return 0
            self._current = memoryview(data)
        n = min(len(buffer), len(self._current))
        buffer[:n] = self._current[:n]
        self._current = self._current[n:]
        return n

    def close(self) -> None:
        if not self.closed and self._fetcher is not None:
            self._blobs.close()
            self._fetcher.close()
        super().close()


class TreeFiles:
    """The regular files of a snapshot tree, by POSIX path relative to the tree's root.

    Only the paths (of candidate export files, see CANDIDATE_SUFFIXES) and the id of each
    directory's tree are kept in memory; nodes are read again from their (small, cached) tree
    when a file is opened."""

    def __init__(self, repo: Repository, root: bytes, *, prefix: str = "",
                 suffixes: tuple[str, ...] | None = CANDIDATE_SUFFIXES, verdicts=None,
                 local_head: Callable[[str], bytes | None] | None = None) -> None:
        self._suffixes = suffixes
        self.repo = repo
        self._dirs: dict[str, bytes] = {}  # directory path -> tree id
        self._paths: list[str] = []
        self._trees: OrderedDict[bytes, dict[bytes, Node]] = OrderedDict()
        # a catalog_index.HeadVerdicts: recognition remembered per file content, found by the
        # content hashes the walk keeps (32 bytes a candidate file, only then)
        self.verdicts = verdicts
        self._hashes: dict[str, bytes] = {}
        # a file's first bytes read without the repository when that can be done and checked (the
        # backup's catalogue: a small source file just stored), else None; see formats.files.HeadCache
        self.local_head = local_head
        self._walk(root, prefix)
        self._paths.sort()

    def _walk(self, root: bytes, prefix: str) -> None:
        stack = [(prefix, root)]
        while stack:
            path, tree_id = stack.pop()
            self._dirs[path] = tree_id
            for node in self.repo.load_tree(tree_id):
                child = f"{path}/{os.fsdecode(node.name)}" if path else os.fsdecode(node.name)
                if node.type in (DIR, ARCHIVE):  # an archive stored member-wise: its members, as a folder
                    stack.append((child, node.subtree))
                elif node.type == FILE and (self._suffixes is None or child.lower().endswith(self._suffixes)):
                    self._paths.append(child)
                    if self.verdicts is not None and node.content_hash is not None:
                        self._hashes[child] = node.content_hash

    def paths(self) -> Iterable[str]:
        return self._paths

    def node(self, path: str) -> Node:
        folder, _, name = path.rpartition("/")
        tree_id = self._dirs.get(folder)
        nodes = self._trees.get(tree_id) if tree_id is not None else None
        if nodes is None and tree_id is not None:
            nodes = {n.name: n for n in self.repo.load_tree(tree_id)}
            self._trees[tree_id] = nodes
            if len(self._trees) > _TREE_CACHE:
                self._trees.popitem(last=False)
        node = nodes.get(os.fsencode(name)) if nodes is not None else None
        if node is None or node.type != FILE:
            raise IntegrityError(f"{path}: not a file in the snapshot")
        return node

    def size(self, path: str) -> int:
        return self.node(path).size

    def head_verdict(self, path: str, key: str, compute: Callable[[], bool]) -> bool:
        """A per-file recognition test's verdict (formats.common.head_test), remembered by the
        file's content hash when there is somewhere to remember it."""
        content_hash = self._hashes.get(path)
        if content_hash is None:
            return compute()
        return self.verdicts.file(content_hash, key, compute)

    def chunk_ids(self, path: str) -> Iterator[bytes]:
        return self.repo.file_chunks(self.node(path))

    def open(self, path: str) -> BinaryIO:
        return io.BufferedReader(_BlobStream(self.repo, list(self.chunk_ids(path))), buffer_size=1 << 20)

    def has(self, path: str) -> bool:
        i = bisect.bisect_left(self._paths, path)
        return i < len(self._paths) and self._paths[i] == path


class SubsetFiles:
    """A view of some of another tree's files (what a partial re-read of an export may see)."""

    def __init__(self, files, allowed: Iterable[str]) -> None:
        self._files = files
        self._allowed = set(allowed)
        self._paths = sorted(self._allowed)

    def paths(self) -> Iterable[str]:
        return self._paths

    def size(self, path: str) -> int:
        self._check(path)
        return self._files.size(path)

    def open(self, path: str) -> BinaryIO:
        self._check(path)
        return self._files.open(path)

    def _check(self, path: str) -> None:
        if path not in self._allowed:
            raise FileNotFoundError(path)
