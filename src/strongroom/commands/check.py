"""Structural check: every snapshot's trees and blobs reachable and indexed, every indexed pack
present with its recorded size. (Reading all data is a separate, deeper level.)"""

from __future__ import annotations

from dataclasses import dataclass, field

from strongroom.commands import Progress, ProgressCallback, ignore_progress
from strongroom.errors import IntegrityError, ObjectNotFound, StrongroomError
from strongroom.indexfile import open_index
from strongroom.repository import Repository, object_name
from strongroom.tree import DIR, FILE


@dataclass
class CheckResult:
    snapshots: int = 0
    trees: int = 0
    blobs: int = 0
    packs: int = 0
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def run_check(repo: Repository, *, progress: ProgressCallback = ignore_progress) -> CheckResult:
    result = CheckResult()
    with repo.lock(exclusive=False):
        repo.sync_index()
        _check_index_files(repo, result)
        _check_packs(repo, result)
        _check_snapshots(repo, result, progress)
    return result


def _check_index_files(repo: Repository, result: CheckResult) -> None:
    """Every index file must be intact: named by its content, authentic, well-formed."""
    for name, _ in repo.storage.list("index"):
        try:
            data = repo.storage.load(name)
            if object_name(data) != name.rsplit("/", 1)[1]:
                raise IntegrityError(f"{name}: content does not match its name (damaged)")
            open_index(repo.master, data, name)
        except ObjectNotFound:
            continue
        except StrongroomError as e:
            result.errors.append(str(e))


def _check_packs(repo: Repository, result: CheckResult) -> None:
    stored = {}
    for name, size in repo.storage.list("data"):
        stored[name.rsplit("/", 1)[1]] = size
    for pack, size in repo.index.iter_packs():
        result.packs += 1
        actual = stored.pop(pack, None)
        if actual is None:
            result.errors.append(f"pack {pack}: listed in the index but missing from storage")
        elif actual != size:
            result.errors.append(f"pack {pack}: size {actual}, the index records {size}")
    for pack in stored:
        result.notes.append(f"pack {pack}: not in any index (left by an interrupted backup; "
                            "the next backup indexes it)")


def _check_snapshots(repo: Repository, result: CheckResult, progress: ProgressCallback) -> None:
    seen_trees: set[bytes] = set()
    for snapshot_id in repo.snapshot_ids():
        try:
            snap = repo.load_snapshot(snapshot_id)
        except StrongroomError as e:
            result.errors.append(f"snapshot {snapshot_id[:8]}: {e}")
            continue
        result.snapshots += 1
        pending = [(bytes.fromhex(snap.tree), "/")]
        while pending:
            tree_id, path = pending.pop()
            if tree_id in seen_trees:
                continue
            seen_trees.add(tree_id)
            try:
                nodes = repo.load_tree(tree_id)
            except (StrongroomError, ObjectNotFound) as e:
                result.errors.append(f"snapshot {snap.short_id} {path}: {e}")
                continue
            result.trees += 1
            for node in nodes:
                child = f"{path.rstrip('/')}/{node.name.decode('utf-8', 'backslashreplace')}"
                if node.type == DIR:
                    pending.append((node.subtree, child))
                elif node.type == FILE:
                    _check_file(repo, node, child, snap.short_id, result)
            progress(Progress(files=result.trees, current=path))


def _check_file(repo: Repository, node, path: str, short_id: str, result: CheckResult) -> None:
    try:
        for blob_id in repo.file_chunks(node):
            result.blobs += 1
            if not repo.index.has(blob_id):
                result.errors.append(f"snapshot {short_id} {path}: chunk {blob_id.hex()[:16]} is not in the index")
                return
    except StrongroomError as e:
        result.errors.append(f"snapshot {short_id} {path}: {e}")
