"""Listing a snapshot's contents."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator

from strongroom.errors import MaliciousTree, UsageError
from strongroom.repository import Repository
from strongroom.snapshot import Snapshot
from strongroom.tree import ARCHIVE, DIR, Node

MAX_DEPTH = 4096


@dataclass
class Entry:
    path: bytes
    node: Node

    def to_json(self) -> dict:
        doc = {"path": os.fsdecode(self.path), "type": self.node.type, "size": self.node.size,
               "mode": oct(self.node.mode), "mtime_ns": self.node.mtime_ns, "uid": self.node.uid,
               "gid": self.node.gid}
        if self.node.target is not None:
            doc["target"] = os.fsdecode(self.node.target)
        if self.node.archive is not None:
            a = self.node.archive
            doc["archive"] = {"format": a.format, "fidelity": a.fidelity, "members": a.members}
        return doc


def walk(repo: Repository, tree_id: bytes, prefix: bytes = b"", *, into_archives: bool = True) -> Iterator[Entry]:
    """Every node below a tree, depth first, with its absolute path in the snapshot (and an
    archive's members below it, unless ``into_archives`` is false)."""
    descend = (DIR, ARCHIVE) if into_archives else (DIR,)
    stack = [(prefix, iter(repo.load_tree(tree_id)))]
    while stack:
        path, nodes = stack[-1]
        node = next(nodes, None)
        if node is None:
            stack.pop()
            continue
        child = path + b"/" + node.name
        yield Entry(child, node)
        if node.type in descend:  # an archive's members are listed below it, like a folder's
            if len(stack) > MAX_DEPTH:
                raise MaliciousTree(f"trees nested deeper than {MAX_DEPTH} levels")
            stack.append((child, iter(repo.load_tree(node.subtree))))


def list_snapshot(repo: Repository, snapshot: Snapshot, path: str | None = None) -> Iterator[Entry]:
    """Entries of a snapshot, or only those at or below ``path`` (an absolute path in it)."""
    root = bytes.fromhex(snapshot.tree)
    if not path or path == "/":
        yield from walk(repo, root)
        return
    parts = [p for p in os.fsencode(path).split(b"/") if p]
    tree, prefix = root, b""
    for i, part in enumerate(parts):
        node = next((n for n in repo.load_tree(tree) if n.name == part), None)
        if node is None:
            raise UsageError(f"{path}: not in snapshot {snapshot.short_id}")
        prefix += b"/" + part
        if i == len(parts) - 1:
            yield Entry(prefix, node)
            if node.type in (DIR, ARCHIVE):
                yield from walk(repo, node.subtree, prefix)
            return
        if node.type not in (DIR, ARCHIVE):
            raise UsageError(f"{path}: not in snapshot {snapshot.short_id}")
        tree = node.subtree
