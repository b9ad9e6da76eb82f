"""Diff: what changed between two snapshots.

The two trees are walked side by side; a subtree with the same id on both sides is identical
and skipped, so diffing two close snapshots reads only the directories that changed. Changes are
reported one at a time through a callback (a diff can be as large as the repository)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from strongroom.repository import Repository
from strongroom.snapshot import Snapshot
from strongroom.tree import ARCHIVE, DIR, FILE, Node

ADDED, REMOVED, MODIFIED, METADATA = "added", "removed", "modified", "metadata"


@dataclass
class Change:
    kind: str  # added | removed | modified (content, type or link target) | metadata (only mode/owner/times)
    path: bytes
    type: str  # the node type after the change (before, for removals)
    size_before: int | None
    size_after: int | None

    def to_json(self) -> dict:
        return {"kind": self.kind, "path": self.path.decode("utf-8", "backslashreplace"), "type": self.type,
                "size_before": self.size_before, "size_after": self.size_after}


@dataclass
class DiffTotals:
    added_files: int = 0
    removed_files: int = 0
    modified_files: int = 0
    metadata_changes: int = 0
    added_dirs: int = 0
    removed_dirs: int = 0
    added_bytes: int = 0  # sizes of added files
    removed_bytes: int = 0  # sizes of removed files
    size_change: int = 0  # restore size after minus before

    def count(self, change: Change) -> None:
        before, after = change.size_before or 0, change.size_after or 0
        is_dir = change.type == DIR
        if change.kind == ADDED:
            if is_dir:
                self.added_dirs += 1
            else:
                self.added_files += 1
                self.added_bytes += after
        elif change.kind == REMOVED:
            if is_dir:
                self.removed_dirs += 1
            else:
                self.removed_files += 1
                self.removed_bytes += before
        elif change.kind == MODIFIED:
            self.modified_files += 1
        else:
            self.metadata_changes += 1
        self.size_change += after - before


def run_diff(repo: Repository, a: Snapshot, b: Snapshot, on_change: Callable[[Change], None]) -> DiffTotals:
    totals = DiffTotals()

    def emit(change: Change) -> None:
        totals.count(change)
        on_change(change)

    with repo.lock(exclusive=False):
        # Work items: ("dir", path, left tree, right tree) or ("change", Change); a directory's
        # items are pushed in reverse so that everything comes out in path order.
        pending: list[tuple] = [("dir", b"", bytes.fromhex(a.tree), bytes.fromhex(b.tree))]
        while pending:
            item = pending.pop()
            if item[0] == "change":
                emit(item[1])
                continue
            _, path, left, right = item
            if left == right:
                continue
            before = {n.name: n for n in repo.load_tree(left)} if left else {}
            after = {n.name: n for n in repo.load_tree(right)} if right else {}
            items: list[tuple] = []
            for name in sorted(before.keys() | after.keys()):
                items += _compare(path + b"/" + name, before.get(name), after.get(name))
            pending += reversed(items)
    return totals


def _compare(path: bytes, old: Node | None, new: Node | None) -> list[tuple]:
    items: list[tuple] = []
    if old is not None and new is not None and old.type == new.type:
        if old.type == DIR:
            if _meta(old) != _meta(new):
                items.append(("change", Change(METADATA, path, DIR, None, None)))
            items.append(("dir", path, old.subtree, new.subtree))
        elif _content(old) != _content(new):
            items.append(("change", Change(MODIFIED, path, new.type, _size(old), _size(new))))
        elif _meta(old) != _meta(new):
            items.append(("change", Change(METADATA, path, new.type, _size(old), _size(new))))
        if old.type == ARCHIVE:  # and what changed inside it, member by member
            items.append(("dir", path, old.subtree, new.subtree))
        return items
    # Missing on one side, or replaced by an entry of another type: a removal and/or an addition.
    if old is not None:
        items.append(("change", Change(REMOVED, path, old.type, _size(old), None)))
        if old.type in (DIR, ARCHIVE):
            items.append(("dir", path, old.subtree, None))
    if new is not None:
        items.append(("change", Change(ADDED, path, new.type, None, _size(new))))
        if new.type in (DIR, ARCHIVE):
            items.append(("dir", path, None, new.subtree))
    return items


def _size(node: Node) -> int | None:
    return node.size if node.type in (FILE, ARCHIVE) else None


def _content(node: Node) -> tuple:
    if node.type == ARCHIVE:
        return node.archive.sha256, node.size
    return node.content, node.content_lists, node.target, node.size


def _meta(node: Node) -> tuple:
    return node.mode, node.uid, node.gid, node.user, node.group, node.mtime_ns
